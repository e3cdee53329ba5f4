"""The predictor loop: one tick every interval, with the lease, fallbacks and every output.

:meth:`InferenceService.tick` is one prediction round for all symbols; :func:`run_loop` ticks
on the wall-clock grid (multiples of the interval since the epoch, so consecutive invocations
agree on tick times) until the invocation's time is nearly up, then :meth:`close` hands the
waiting predictions over and releases the lease so the next invocation takes over at the next
grid point. The Lambda handler, the local replay and the benchmark all drive this class.

Modes, as the health document reports them:

``stream``       fresh ``features:{S}:latest`` from the aggregator
``fallback``     stale stream features: ``features:{S}:fallback`` if fresh, else Binance REST
``direct-rest``  Redis unreachable: REST features, outputs other than Redis keep going; Redis is
                 retried every second and the lease is taken again once it is back
``standby``      another invocation holds the lease
"""

from __future__ import annotations

import logging
import math
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from btcpred.features import FeatureSnapshot
from btcpred.inference.accuracy import AccuracyTracker, ScoredPrediction, confidence_band
from btcpred.inference.fallback import generate_fallback_features
from btcpred.inference.lease import RedisLease
from btcpred.inference.outputs import Broadcaster, BroadcastReport, HistoryWriter, Metrics
from btcpred.inference.predictor import NoPriceError, Predictor, PredictOutcome, TickInput
from btcpred.inference.reload import ModelSource
from btcpred.inference.result import PredictionResult
from btcpred.inference.store import LEASE_KEY, InferenceStore, StoredFeatures
from btcpred.settings import InferenceSettings
from btcpred.sources.binance_rest import BinanceRestClient, BinanceRestError

__all__ = ["InferenceService", "LoopReport", "RestFeatures", "TickReport", "run_loop"]

log = logging.getLogger("btcpred.inference")

REDIS_RETRY_MS = 1_000
HISTORY_POINTS = 10
"""Feature points read from ``features:{S}:history`` each tick (sequence windows, the trend)."""
METRICS_FLUSH_MS = 15_000


class RestFeatures:
    """Fallback features from ``GET /api/v3/ticker/24hr``, honouring ``Retry-After``.

    After a 429/418 the symbol is not asked again until the server's ``Retry-After`` has
    passed; those ticks are skipped with the same error instead of hammering the API.
    """

    def __init__(self, client: BinanceRestClient) -> None:
        self.client = client
        self.blocked_until_ms = 0
        self._blocked_by: BinanceRestError | None = None

    def features(self, symbol: str, now_ms: int) -> FeatureSnapshot:
        """Features derived from the ticker now.

        Raises
        ------
        BinanceRestError
            The request failed or is held back by an earlier ``Retry-After``.
        """
        if now_ms < self.blocked_until_ms and self._blocked_by is not None:
            raise self._blocked_by
        try:
            ticker = self.client.ticker_24hr(symbol)
        except BinanceRestError as exc:
            if exc.retry_after_s is not None:
                self.blocked_until_ms = now_ms + int(exc.retry_after_s * 1000)
                self._blocked_by = exc
            raise
        try:
            return generate_fallback_features(ticker, now_ms)
        except ValueError as exc:
            raise BinanceRestError(f"unusable 24hr ticker: {exc}", status=200) from None


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


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class InferenceService:
    """One predictor process; see the module docstring."""

    def __init__(
        self,
        settings: InferenceSettings,
        *,
        predictor: Predictor,
        client: redis.Redis,
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
        self.store = InferenceStore(
            client,
            settings.prediction_keys,
            features_prefix=settings.features_prefix,
            history_length=settings.history_length,
            prediction_ttl_s=settings.prediction_ttl_s,
        )
        self.lease = RedisLease(client, LEASE_KEY, owner, ttl_ms=3 * self.interval_ms)
        self.accuracy = AccuracyTracker(max_lag_ms=max(5_000, 2 * self.interval_ms))
        self.redis_up = True
        self.active = False
        self.holder_deadline_ms: int | None = None
        self.last_error: str | None = None
        self.model_loaded_ms = time.time_ns() // 1_000_000  # built right after the load
        self._redis_retry_ms = 0
        self._next_model_check_ms = 0
        self._next_flush_ms = 0
        self._last: dict[str, PredictionResult] = {}
        metrics.property("ModelVersion", predictor.model.version)

    # -- who predicts ---------------------------------------------------------------------
    def _redis_down(self, exc: Exception, now_ms: int) -> None:
        if self.redis_up:
            log.warning("redis unreachable, predicting in direct REST mode: %s", exc)
        self.redis_up = False
        self.last_error = f"redis: {exc}"
        self._redis_retry_ms = now_ms + REDIS_RETRY_MS
        self.lease.forget()
        self.metrics.add("RedisUnavailable", "Count", 1)

    def _role(self, now_ms: int, deadline_ms: int) -> str:
        if not self.redis_up and now_ms >= self._redis_retry_ms:
            self.redis_up = True  # try again; redis-py reconnects on the next command
        if self.redis_up:
            try:
                state = self.lease.hold(deadline_ms)
            except redis.RedisError as exc:
                self._redis_down(exc, now_ms)
            else:
                if state.held:
                    if not self.active:
                        log.info("%s holds the lease: predicting", self.owner)
                    self.active = True
                    return "active"
                self.active = False
                self.holder_deadline_ms = state.holder_deadline_ms
                return "standby"
        if not self.active and (
            self.holder_deadline_ms is None or now_ms >= self.holder_deadline_ms
        ):
            self.active = True  # the holder we last saw has stopped by now
        return "direct-rest" if self.active else "standby"

    # -- one tick -------------------------------------------------------------------------
    def tick(self, now_ms: int, deadline_ms: int) -> TickReport:
        """One prediction round for every symbol (see the module docstring)."""
        started = time.perf_counter()
        role = self._role(now_ms, deadline_ms)
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
            self._count(outcome)
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
            except redis.RedisError as exc:
                self._redis_down(exc, now_ms)
        if not self.redis_up:
            m.add("DirectRestMode", "Count", 1)
        inputs: list[TickInput] = []
        for symbol in self.settings.symbols:
            found = stored.get(symbol)
            if found is not None:
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

    def _choose(self, symbol: str, found: StoredFeatures | None, now_ms: int) -> TickInput | str:
        """The tick's features for ``symbol``, or why there are none."""
        max_age = self.settings.max_feature_age_ms
        if found is not None:
            latest = found.latest
            if latest is not None and now_ms - latest.timestamp <= max_age:
                return TickInput(latest, "redis", found.history)
            self.metrics.add("FallbackStaleFeatures", "Count", 1)
            fb = found.fallback
            if fb is not None and now_ms - fb.timestamp <= max_age:
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
        m = self.metrics
        if seen.unscorable:
            m.add("UnscorablePredictions", "Count", seen.unscorable)
        for s in seen.scored:
            m.add("AbsError", "None", s.abs_error)
            m.add("NaiveAbsError", "None", s.naive_abs_error)
            m.add("DirectionHit", "Count", 1.0 if s.direction_hit else 0.0)
            band = confidence_band(s.prediction.confidence).capitalize()
            m.add(f"AbsError{band}Confidence", "None", s.abs_error)
        report.scored.extend(seen.scored)

    def _count(self, outcome: PredictOutcome) -> None:
        m, r = self.metrics, outcome.result
        m.add("Predictions", "Count", 1)
        m.add(
            "PredictionsFromRedis" if r.source == "redis" else "PredictionsFromFallback", "Count", 1
        )
        m.add("InferenceLatency", "Milliseconds", r.inference_latency_ms)
        m.add("FeatureAge", "Milliseconds", r.features_age_ms)
        m.add("Confidence", "None", r.confidence)
        if outcome.filled:
            m.add("FallbackMissingFeatures", "Count", 1)
            log.warning(
                "%s: filled %s from last known values (confidence x0.8)",
                r.symbol,
                ", ".join(outcome.filled),
            )
        if outcome.linear_fallback:
            m.add("FallbackLinearTrend", "Count", 1)
            log.warning("%s: linear trend fallback: %s", r.symbol, outcome.model_error)

    def _publish(self, report: TickReport, now_ms: int) -> None:
        results = report.results
        for r in results:
            self._last[r.symbol] = r
        if self.redis_up:
            try:
                self.store.write(results, report.scored, self.health(now_ms, report.role))
            except redis.RedisError as exc:
                self._redis_down(exc, now_ms)
        if self.broadcaster is not None:
            for r in results:
                b = self.broadcaster.broadcast(r.symbol, r.to_json(), now_ms)
                report.broadcasts.append(b)
                if b.sent + b.gone + b.failed + b.timed_out:
                    self._count_broadcast(b)
        if self.history is not None:
            self.history.add(report.scored)
        if self.on_result is not None:
            for outcome in report.outcomes:
                self.on_result(outcome)

    def _count_broadcast(self, b: BroadcastReport) -> None:
        m = self.metrics
        m.add("BroadcastSent", "Count", b.sent)
        m.add("BroadcastGone", "Count", b.gone)
        m.add("BroadcastFailed", "Count", b.failed)
        m.add("BroadcastTimedOut", "Count", b.timed_out)
        m.add("BroadcastDuration", "Milliseconds", b.ms)

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
        """End of the invocation: hand over waiting predictions, write history, release."""
        for symbol in self.settings.symbols:
            waiting = self.accuracy.drain(symbol)
            if not waiting:
                continue
            handed = False
            if self.redis_up and self.active:
                try:
                    self.store.save_pending(symbol, waiting)
                    handed = True
                except redis.RedisError as exc:
                    self._redis_down(exc, now_ms)
            if not handed and self.history is not None:
                self.history.add(waiting)  # written unscored rather than lost
        if self.redis_up:
            try:
                self.lease.release()
            except redis.RedisError as exc:
                self._redis_down(exc, now_ms)
        if self.history is not None and self.history.buffered:
            try:
                keys = self.history.flush()
                log.info("prediction history written: %s", ", ".join(keys))
            except Exception as exc:  # S3/disk failure: say so, never crash the handover
                self.metrics.add("HistoryWriteFailures", "Count", 1)
                log.error("prediction history not written: %s", exc)
        self.active = False
        self.metrics.flush()


@dataclass(frozen=True, slots=True)
class LoopReport:
    """A loop's ticks by role, and grid points missed because a tick ran late."""

    ticks: int
    active_ticks: int
    missed: int


def run_loop(
    service: InferenceService,
    *,
    clock_ms: Callable[[], int],
    deadline_ms: int,
    sleep: Callable[[float], None] = time.sleep,
    on_tick: Callable[[TickReport], None] | None = None,
) -> LoopReport:
    """Tick on the interval grid until the next tick would pass ``deadline_ms``, then close."""
    interval = service.interval_ms
    next_ms = math.ceil(clock_ms() / interval) * interval
    ticks = active = missed = 0
    try:
        while next_ms <= deadline_ms:
            now = clock_ms()
            if now < next_ms:
                sleep((next_ms - now) / 1000)
                now = clock_ms()
            if now - next_ms >= interval:  # ran late: skip to the current grid point
                late = (now - next_ms) // interval
                missed += late
                next_ms += late * interval
            report = service.tick(now, deadline_ms)
            ticks += 1
            active += report.role != "standby"
            if on_tick is not None:
                on_tick(report)
            service.housekeeping(clock_ms())
            next_ms += interval
    finally:
        service.close(clock_ms())
    return LoopReport(ticks=ticks, active_ticks=active, missed=missed)
