"""The predictor: one tick every interval, with the lease, fallbacks and every output.

:meth:`InferenceService.tick` is one prediction round for all symbols;
:func:`~btcpred.inference.loop.run_loop` ticks on the wall-clock grid until the invocation's
time is nearly up, then :meth:`InferenceService.close` hands the waiting predictions over and
releases the lease so the next invocation takes over at the next grid point. The Lambda
handler, the local replay and the benchmark all drive this class.

Modes, as the health document reports them:

``stream``       fresh ``features:{S}:latest`` from the aggregator
``fallback``     stale stream features: ``features:{S}:fallback`` if fresh, else Binance REST
``direct-rest``  Redis unreachable: REST features, outputs other than Redis keep going; Redis is
                 retried every second and the lease is taken again once it is back
``standby``      another invocation holds the lease

Redis is reached only through :class:`~btcpred.inference.store.InferenceStore` and
:class:`~btcpred.inference.lease.RedisLease`, whose typed errors
(:mod:`btcpred.inference.errors`) say whether a failure is an outage (retryable: direct REST
mode) or a refused request (permanent: counted as ``RedisErrors``, that step skipped).

Freshness (:mod:`btcpred.inference.freshness`): not older than ``MAX_FEATURE_AGE_MS`` and not
more than ``CLOCK_SKEW_MS`` (1 s) in the future; future points are counted as
``FutureFeatures``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from btcpred.features import FeatureSnapshot
from btcpred.inference.accuracy import AccuracyTracker, ScoredPrediction
from btcpred.inference.errors import InferenceStoreError
from btcpred.inference.fallback import RestFeatures
from btcpred.inference.freshness import CLOCK_SKEW_MS, Freshness, freshness, without_future_history
from btcpred.inference.lease import LeaseState, RedisLease
from btcpred.inference.loop import LoopReport, run_loop
from btcpred.inference.outputs import Broadcaster, BroadcastReport, HistoryWriter, Metrics
from btcpred.inference.predictor import NoPriceError, Predictor, PredictOutcome, TickInput
from btcpred.inference.process import rss_mb
from btcpred.inference.reload import ModelSource
from btcpred.inference.result import PredictionResult
from btcpred.inference.store import InferenceStore, StoredFeatures, health_ttl_ms
from btcpred.inference.tickmetrics import count_broadcast, count_outcome, count_scoring
from btcpred.settings import InferenceSettings
from btcpred.sources.binance_rest import BinanceRestError

if TYPE_CHECKING:
    from btcpred.redisconn import RedisClient

__all__ = [
    "CLOCK_SKEW_MS",
    "InferenceService",
    "LoopReport",
    "RestFeatures",
    "TickReport",
    "rss_mb",
    "run_loop",
]

log = logging.getLogger("btcpred.inference")

REDIS_RETRY_MS = 1_000
HISTORY_POINTS = 10
"""Feature points read from ``features:{S}:history`` each tick (sequence windows, the trend)."""
METRICS_FLUSH_MS = 15_000


@dataclass
class TickReport:
    """What one tick did."""

    time_ms: int
    role: str
    """``active``, ``direct-rest`` or ``standby``."""
    outcomes: list[PredictOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    scored: list[ScoredPrediction] = field(default_factory=list)
    broadcasts: list[BroadcastReport] = field(default_factory=list)
    ms: float = 0.0

    @property
    def results(self) -> list[PredictionResult]:
        """The tick's predictions."""
        return [o.result for o in self.outcomes]


class InferenceService:
    """One predictor process; see the module docstring."""

    def __init__(
        self,
        settings: InferenceSettings,
        *,
        predictor: Predictor,
        client: RedisClient,
        metrics: Metrics,
        owner: str,
        rest: RestFeatures | None = None,
        model_source: ModelSource | None = None,
        broadcaster: Broadcaster | None = None,
        history: HistoryWriter | None = None,
        on_result: Callable[[PredictOutcome], None] | None = None,
    ) -> None:
        self.settings = settings
        self.predictor = predictor
        self.metrics = metrics
        self.owner = owner
        self.rest = rest
        self.model_source = model_source
        self.broadcaster = broadcaster
        self.history = history
        self.on_result = on_result
        self.interval_ms = round(settings.interval_s * 1000)
        keys = settings.redis_keys
        self.store = InferenceStore(
            client,
            keys,
            history_length=settings.history_length,
            prediction_ttl_s=settings.prediction_ttl_s,
            health_ttl_ms=health_ttl_ms(settings.interval_s),
        )
        self.lease = RedisLease(client, keys.lease, owner, ttl_ms=3 * self.interval_ms)
        self.accuracy = AccuracyTracker(max_lag_ms=max(5_000, 2 * self.interval_ms))
        self.redis_up = True
        self.active = False
        self.holder_deadline_ms: int | None = None
        """The lease holder's announced deadline, when another holds it."""
        self.holder_seen_ms: int | None = None
        self._last_active_ms = 0
        """Grid time of the last tick predicted as the lease holder (handed on at release)."""
        """When Redis last said who holds the lease (this service's clock)."""
        self.last_error: str | None = None
        self._outage_since_ms: int | None = None
        self.model_loaded_ms = time.time_ns() // 1_000_000  # built right after the load
        self._redis_retry_ms = 0
        self._next_model_check_ms = 0
        self._next_flush_ms = 0
        self._last: dict[str, PredictionResult] = {}
        metrics.property("ModelVersion", predictor.model.version)

    # -- who predicts ---------------------------------------------------------------------
    def begin(self, now_ms: int) -> None:
        """Start of an invocation: trust nothing a warm container remembers about roles.

        A reused container may have sat frozen for minutes since its last invocation: it does
        not hold the lease (whatever it held then has expired or passed on), Redis is probed
        at once whatever it looked like then, and the last error and results are not
        reported again. What it knew about another holder is kept only while it is recent
        (see :meth:`_redis_down`).
        """
        self.active = False
        self.lease.forget()
        self._last_active_ms = 0
        self.redis_up = True
        self._redis_retry_ms = 0
        self._outage_since_ms = None
        self.last_error = None
        self._last.clear()

    def _redis_down(self, exc: Exception, now_ms: int) -> None:
        """Redis cannot be used: direct REST mode, retried after :data:`REDIS_RETRY_MS`.

        At the start of an outage, knowledge of another holder older than the lease's TTL is
        dropped: that holder's lease may have passed on since (the container froze, the tick
        stalled), so its announced deadline says nothing about who predicts now.
        """
        if self._outage_since_ms is None:
            self._outage_since_ms = now_ms
            seen = self.holder_seen_ms
            if seen is not None and now_ms - seen > self.lease.ttl_ms:
                self.holder_deadline_ms = self.holder_seen_ms = None
        if self.redis_up:
            log.warning("redis unusable, predicting in direct REST mode: %s", exc)
        self.redis_up = False
        self.last_error = f"redis: {exc}"
        self._redis_retry_ms = now_ms + REDIS_RETRY_MS
        self.lease.forget()
        self.metrics.add("RedisUnavailable", "Count", 1)

    def _store_failed(self, exc: InferenceStoreError, now_ms: int) -> None:
        """A read or write failed: an outage (retryable) or a refused request (permanent)."""
        if exc.retryable:
            self._redis_down(exc, now_ms)
            return
        self.last_error = f"redis: {exc}"
        self.metrics.add("RedisErrors", "Count", 1)
        log.error("redis refused a request, skipped for this tick: %s", exc)

    def _role(self, now_ms: int, deadline_ms: int, grid_ms: int) -> str:
        if not self.redis_up and now_ms >= self._redis_retry_ms:
            self.redis_up = True  # try again; the client reconnects on the next command
        if self.redis_up:
            try:
                state = self.lease.hold(deadline_ms, grid_ms)
            except InferenceStoreError as exc:
                if not exc.retryable:  # who predicts is unknown either way
                    self.metrics.add("RedisErrors", "Count", 1)
                self._redis_down(exc, now_ms)
            else:
                return self._lease_seen(state, now_ms, grid_ms)
        if not self.active and (
            self.holder_deadline_ms is None or now_ms >= self.holder_deadline_ms
        ):
            self.active = True  # the holder we last saw has stopped by now
        return "direct-rest" if self.active else "standby"

    def _lease_seen(self, state: LeaseState, now_ms: int, grid_ms: int) -> str:
        self._outage_since_ms = None
        if state.held:
            if not self.active:
                log.info("%s holds the lease: predicting", self.owner)
            self.active = True
            self._last_active_ms = grid_ms
            self.holder_deadline_ms = self.holder_seen_ms = None
            return "active"
        self.active = False
        self.holder_deadline_ms = state.holder_deadline_ms
        self.holder_seen_ms = now_ms
        return "standby"

    # -- one tick -------------------------------------------------------------------------
    def tick(self, now_ms: int, deadline_ms: int, grid_ms: int | None = None) -> TickReport:
        """One prediction round for every symbol (see the module docstring).

        ``grid_ms`` is the grid point the tick belongs to (``run_loop`` passes it; a tick that
        runs late has ``now_ms`` after it); the lease hand-over is decided by grid points, so
        two invocations never both predict one point. It defaults to ``now_ms``.
        """
        started = time.perf_counter()
        role = self._role(now_ms, deadline_ms, now_ms if grid_ms is None else grid_ms)
        report = TickReport(time_ms=now_ms, role=role)
        if role == "standby":
            return report
        m = self.metrics
        inputs = self._inputs(now_ms, report)
        outcomes = self.predictor.predict(inputs, now_ms=now_ms, started=started)
        for inp, outcome in zip(inputs, outcomes, strict=True):
            if isinstance(outcome, NoPriceError):
                report.skipped.append(str(outcome))
                m.add("SkippedPredictions", "Count", 1)
                log.error("%s", outcome)
                continue
            report.outcomes.append(outcome)
            self._observe(inp.snapshot, report)
            self.accuracy.add(outcome.result)
            count_outcome(m, outcome)
        self._publish(report, now_ms)
        report.ms = (time.perf_counter() - started) * 1000
        m.add("TickDuration", "Milliseconds", report.ms)
        return report

    def _inputs(self, now_ms: int, report: TickReport) -> list[TickInput]:
        """Read every symbol's features (Redis, else the fallbacks); note skipped symbols."""
        m = self.metrics
        stored: dict[str, StoredFeatures] = {}
        if self.redis_up:
            try:
                stored = self.store.read(self.settings.symbols, HISTORY_POINTS, take_pending=True)
            except InferenceStoreError as exc:
                self._store_failed(exc, now_ms)
        if not self.redis_up:
            m.add("DirectRestMode", "Count", 1)
        inputs: list[TickInput] = []
        for symbol in self.settings.symbols:
            found = stored.get(symbol)
            if found is not None:
                found = without_future_history(found, now_ms)
                self.accuracy.restore(found.pending)
                for point in reversed(found.history):  # oldest first: seeds the linear trend
                    self.predictor.remember(point, values=False)
                if found.bad_documents:
                    m.add("BadFeatureDocuments", "Count", found.bad_documents)
            chosen = self._choose(symbol, found, now_ms)
            if isinstance(chosen, str):
                report.skipped.append(chosen)
                m.add("SkippedPredictions", "Count", 1)
                log.error("%s", chosen)
            else:
                inputs.append(chosen)
        return inputs

    def _fresh(self, snap: FeatureSnapshot | None, now_ms: int) -> bool:
        if snap is None:
            return False
        age = freshness(snap, now_ms, self.settings.max_feature_age_ms)
        if age is Freshness.FUTURE:
            self.metrics.add("FutureFeatures", "Count", 1)
        return age is Freshness.FRESH

    def _choose(self, symbol: str, found: StoredFeatures | None, now_ms: int) -> TickInput | str:
        """The tick's features for ``symbol``, or why there are none."""
        if found is not None:
            latest = found.latest
            if latest is not None and self._fresh(latest, now_ms):
                return TickInput(latest, "redis", found.history)
            self.metrics.add("FallbackStaleFeatures", "Count", 1)
            fb = found.fallback
            if fb is not None and self._fresh(fb, now_ms):
                self.metrics.add("FallbackRedisFeatures", "Count", 1)
                return TickInput(fb, "fallback")
        if self.rest is None:
            return f"{symbol}: no fresh features and no REST fallback configured; tick skipped"
        try:
            snap = self.rest.features(symbol, now_ms)
        except BinanceRestError as exc:
            self.metrics.add("RestErrors", "Count", 1)
            self.last_error = f"rest: {type(exc).__name__}: {exc}"
            return f"{symbol}: no fresh features and REST fallback failed ({self.last_error})"
        self.metrics.add("FallbackRest", "Count", 1)
        return TickInput(snap, "fallback")

    def _observe(self, snap: FeatureSnapshot, report: TickReport) -> None:
        if snap.price is None:
            return
        seen = self.accuracy.observe(snap.symbol, snap.timestamp, snap.price)
        count_scoring(self.metrics, seen)
        report.scored.extend(seen.scored)

    def _publish(self, report: TickReport, now_ms: int) -> None:
        results = report.results
        for r in results:
            self._last[r.symbol] = r
        if self.redis_up:
            try:
                self.store.write(results, report.scored, self.health(now_ms, report.role))
            except InferenceStoreError as exc:
                self._store_failed(exc, now_ms)
        if self.broadcaster is not None:
            deadline = time.monotonic() + self.broadcaster.budget_s  # one budget per tick
            for r in results:
                b = self.broadcaster.broadcast(r.symbol, r.to_json(), now_ms, deadline=deadline)
                report.broadcasts.append(b)
                count_broadcast(self.metrics, b)
        if self.history is not None:
            self.history.add(report.scored)
        if self.on_result is not None:
            for outcome in report.outcomes:
                self.on_result(outcome)

    # -- between ticks --------------------------------------------------------------------
    def housekeeping(self, now_ms: int) -> None:
        """Between ticks: look for a new model when due; flush metrics now and then."""
        if self.model_source is not None and now_ms >= self._next_model_check_ms:
            self._next_model_check_ms = now_ms + round(self.settings.model_check_s * 1000)
            self.check_model(now_ms)
        if now_ms >= self._next_flush_ms:
            self._next_flush_ms = now_ms + METRICS_FLUSH_MS
            self.metrics.flush()

    def check_model(self, now_ms: int) -> bool:
        """Check the registry pointer now; return True when a new model was adopted."""
        if self.model_source is None:
            return False
        outcome = self.model_source.check(self.predictor.model)
        if outcome.rejected is not None:
            self.metrics.add("ModelReloadFailures", "Count", 1)
            self.last_error = f"model rejected: {outcome.rejected}"
            log.error(
                "new model rejected, still serving %s: %s",
                self.predictor.model.version,
                outcome.rejected,
            )
            return False
        if outcome.model is None:
            return False
        old = self.predictor.model.version
        self.predictor.model = outcome.model
        self.model_loaded_ms = now_ms
        self.metrics.add("ModelReloads", "Count", 1)
        self.metrics.property("ModelVersion", outcome.model.version)
        log.info("model reloaded: %s -> %s", old, outcome.model.version)
        return True

    def health(self, now_ms: int, role: str | None = None) -> dict[str, Any]:
        """The health document (also written to Redis each active tick)."""
        last = self._last
        sources = {s: r.source for s, r in last.items()}
        if not self.redis_up:
            mode = "direct-rest"
        elif role == "standby" or not self.active:
            mode = "standby"
        elif any(v == "fallback" for v in sources.values()):
            mode = "fallback"
        else:
            mode = "stream"
        return {
            "owner": self.owner,
            "mode": mode,
            "model_version": self.predictor.model.version,
            "model_loaded_ms": self.model_loaded_ms,
            "redis_reachable": self.redis_up,
            "features_age_ms": {s: r.features_age_ms for s, r in last.items()},
            "sources": sources,
            "last_prediction_ms": max((r.timestamp for r in last.values()), default=None),
            "rss_mb": round(rss_mb(), 1),
            "pending_predictions": self.accuracy.depth,
            "interval_s": self.settings.interval_s,
            "last_error": self.last_error,
            "updated_ms": now_ms,
        }

    def close(self, now_ms: int) -> None:
        """End of the invocation: hand over waiting predictions, release the lease, stop the
        broadcast (nothing queued or running is left for the next warm invocation), write
        the history."""
        self._hand_over(now_ms)
        if self.redis_up:
            try:
                self.lease.release(self._last_active_ms if self._last_active_ms else now_ms)
            except InferenceStoreError as exc:
                self._store_failed(exc, now_ms)
        self.lease.forget()
        if self.broadcaster is not None:
            stuck = self.broadcaster.finish()
            if stuck:
                self.metrics.add("BroadcastAbandoned", "Count", stuck)
                log.warning("%d WebSocket posts still running at the end of the invocation", stuck)
        if self.history is not None and self.history.buffered:
            try:
                keys = self.history.flush()
                log.info("prediction history written: %s", ", ".join(keys))
            except Exception as exc:  # S3/disk failure: say so, never crash the handover
                self.metrics.add("HistoryWriteFailures", "Count", 1)
                log.error("prediction history not written: %s", exc)
        self.active = False
        self.metrics.flush()

    def _hand_over(self, now_ms: int) -> None:
        """Predictions still waiting for their horizon go to ``prediction:{S}:pending``, or
        into the history unscored when they cannot (Redis down, not the holder)."""
        for symbol in self.settings.symbols:
            waiting = self.accuracy.drain(symbol)
            if not waiting:
                continue
            handed = False
            if self.redis_up and self.active:
                try:
                    self.store.save_pending(symbol, waiting)
                    handed = True
                except InferenceStoreError as exc:
                    self._store_failed(exc, now_ms)
            if not handed and self.history is not None:
                self.history.add(waiting)  # written unscored rather than lost
