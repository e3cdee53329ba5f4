"""The poller's loop: REST tickers → fallback features in Redis, every few seconds.

Every round (``interval_s``, on the wall-clock grid) each symbol is polled:

1. ``GET /api/v3/ticker/24hr`` (weight 2): everything the fallback features are made of. Its
   last price must be positive, or the answer is not used at all.
2. ``GET /api/v3/ticker/price`` (weight 2), asked right after: the last price, a moment
   fresher. A positive, finite answer replaces the 24-hour ticker's last price; a failed or
   unusable one leaves the 24-hour ticker's own last price in place (still a real trade).
3. :func:`~btcpred.inference.fallback.generate_fallback_features` (decision 32), stamped with
   the local clock when the answers arrived, written to ``features:{S}:fallback`` with a TTL,
   and the stream's ``features:{S}:latest`` read in the same pipeline: its price against the
   REST price gives ``PriceDivergenceBps``, its timestamp ``StreamFeatureAgeMs``.

No price is ever made up: a failed 24-hour request, a malformed answer or one without a
positive last price writes nothing, and the previous value ages out by its TTL.

Binance's limits are per IP, so a 429/418 stops every symbol until its ``Retry-After`` has
passed (the hold-back outlives the invocation in a warm container). 451 (restricted location)
is permanent: the invocation logs it once and stops polling. Other failures are counted and the
next round tries again.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import msgspec

from btcpred.features import FeatureSnapshot
from btcpred.inference.fallback import generate_fallback_features
from btcpred.poller.config import PollerConfig
from btcpred.poller.metrics import UNITS
from btcpred.poller.store import FallbackStore, FallbackStoreError
from btcpred.sources.binance_rest import (
    BinanceRestError,
    RateLimitedError,
    RestrictedLocationError,
    Ticker24hr,
)

__all__ = ["CountingMetrics", "PollReport", "Poller", "PollerMetrics", "TickerSource"]

log = logging.getLogger("btcpred.poller")
_T = TypeVar("_T")


class TickerSource(Protocol):
    """The two REST calls the poller makes (a ``BinanceRestClient`` has them)."""

    def ticker_24hr(self, symbol: str) -> Ticker24hr:
        """``GET /api/v3/ticker/24hr``; raises :class:`BinanceRestError`."""

    def ticker_price(self, symbol: str) -> float:
        """``GET /api/v3/ticker/price``; raises :class:`BinanceRestError`."""


class PollerMetrics(Protocol):
    """A metrics sink (``inference.aws.EmfMetrics`` on Lambda, :class:`CountingMetrics` here)."""

    def add(self, name: str, unit: str, value: float) -> None:
        """Record one value."""

    def flush(self) -> None:
        """Send what was recorded."""


@dataclass
class CountingMetrics:
    """:class:`PollerMetrics` kept in memory (``btcpred poll`` and the tests)."""

    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    flushes: int = 0

    def add(self, name: str, unit: str, value: float) -> None:
        self.values[name].append(value)

    def flush(self) -> None:
        self.flushes += 1

    def total(self, name: str) -> float:
        """Sum of a metric's values (0 when never recorded)."""
        return sum(self.values.get(name, ()))


@dataclass
class PollReport:
    """What one :meth:`Poller.run` did."""

    rounds: int = 0
    polls: int = 0
    """Symbol polls that sent requests."""
    writes: int = 0
    errors: int = 0
    rate_limited: int = 0
    """429/418 answers received."""
    held_back: int = 0
    """Symbol polls not made because an earlier ``Retry-After`` had not passed."""
    restricted: bool = False
    """A 451 ended the invocation's polling."""

    def summary(self) -> dict[str, int]:
        """The handler's return value."""
        return {
            "rounds": self.rounds,
            "polls": self.polls,
            "writes": self.writes,
            "errors": self.errors,
            "rate_limited": self.rate_limited,
            "held_back": self.held_back,
            "restricted": int(self.restricted),
        }


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Poller:
    """Polls every symbol each round and keeps ``features:{S}:fallback`` fresh.

    Build one per process (a Lambda container) and call :meth:`run` once per invocation; a
    ``Retry-After`` hold-back carries over from one run to the next.

    Parameters
    ----------
    rest
        The REST client, with one attempt per request (the loop does its own waiting) and a
        short timeout (see :class:`~btcpred.poller.config.PollerConfig`'s stop margin).
    store
        Where the features go.
    config
        Symbols and timing.
    metrics
        The sink for :data:`btcpred.poller.metrics.UNITS`.
    clock_ms, sleep, perf
        Wall clock (ms since the epoch; feature timestamps and the grid), sleep (seconds) and
        a monotonic clock (seconds; request latency). Tests pass a fake clock and sleep.
    """

    def __init__(
        self,
        rest: TickerSource,
        store: FallbackStore,
        config: PollerConfig,
        *,
        metrics: PollerMetrics,
        clock_ms: Callable[[], int] = _wall_ms,
        sleep: Callable[[float], None] = time.sleep,
        perf: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.rest = rest
        self.store = store
        self.config = config
        self.metrics = metrics
        self.clock_ms = clock_ms
        self.sleep = sleep
        self.perf = perf
        self.blocked_until_ms = 0
        """No request is sent before this time (a 429/418 ``Retry-After``)."""

    def run(self, remaining_ms: Callable[[], int]) -> PollReport:
        """Poll until fewer than ``stop_margin_ms`` of the invocation remain (or a 451).

        ``remaining_ms`` is the Lambda context's ``get_remaining_time_in_millis``.
        """
        report = PollReport()
        interval_ms = round(self.config.interval_s * 1000)
        flush_ms = round(self.config.flush_every_s * 1000)
        next_flush = self.clock_ms() + flush_ms
        try:
            while not report.restricted:
                if remaining_ms() < self.config.stop_margin_ms:
                    break
                self._round(report, remaining_ms)
                now = self.clock_ms()
                if now >= next_flush:
                    self.metrics.flush()
                    next_flush = now + flush_ms
                wait_ms = interval_ms - now % interval_ms  # the next grid point
                if report.restricted or remaining_ms() - wait_ms < self.config.stop_margin_ms:
                    break
                self.sleep(wait_ms / 1000)
        finally:
            self.metrics.flush()
        return report

    def _round(self, report: PollReport, remaining_ms: Callable[[], int]) -> None:
        report.rounds += 1
        for symbol in self.config.symbols:
            if report.restricted or remaining_ms() < self.config.stop_margin_ms:
                return
            if self.clock_ms() < self.blocked_until_ms:
                report.held_back += 1
                self._emit("PollerRateLimited")
                continue
            self._poll(symbol, report)

    def _emit(self, name: str, value: float = 1) -> None:
        self.metrics.add(name, UNITS[name], value)

    def _poll(self, symbol: str, report: PollReport) -> None:
        report.polls += 1
        self._emit("PollerPolls")
        ticker = self._request(symbol, "ticker/24hr", self.rest.ticker_24hr, report)
        if ticker is None:
            return
        if not (math.isfinite(ticker.last_price) and ticker.last_price > 0):
            self._error(
                report, "%s: 24hr ticker without a positive last price; nothing written", symbol
            )
            return
        price = ticker.last_price
        fresher = self._request(symbol, "ticker/price", self.rest.ticker_price, report)
        if fresher is not None and math.isfinite(fresher) and fresher > 0:
            price = fresher
        snapshot = generate_fallback_features(
            msgspec.structs.replace(ticker, last_price=price), self.clock_ms()
        )
        try:
            stream = self.store.write(snapshot)
        except FallbackStoreError as exc:
            self._error(report, "%s: fallback features not written: %s", symbol, exc)
            return
        report.writes += 1
        self._emit("PollerFallbackWrites")
        self._compare(price, snapshot.timestamp, stream)

    def _compare(self, rest_price: float, now_ms: int, stream: FeatureSnapshot | None) -> None:
        """Divergence of the stream's price from REST's, and the stream features' age."""
        if stream is None:
            return
        self._emit("StreamFeatureAgeMs", now_ms - stream.timestamp)
        if stream.price is not None and stream.price > 0:
            self._emit("PriceDivergenceBps", abs(rest_price - stream.price) / rest_price * 1e4)

    def _request(
        self, symbol: str, what: str, call: Callable[[str], _T], report: PollReport
    ) -> _T | None:
        started = self.perf()
        try:
            return call(symbol)
        except BinanceRestError as exc:
            self._failed(symbol, what, exc, report)
            return None
        finally:
            self._emit("PollerRestLatencyMs", (self.perf() - started) * 1000)

    def _failed(self, symbol: str, what: str, exc: BinanceRestError, report: PollReport) -> None:
        if exc.retry_after_s is not None or isinstance(exc, RateLimitedError):
            hold_s = (
                exc.retry_after_s if exc.retry_after_s is not None else self.config.default_hold_s
            )
            until = self.clock_ms() + math.ceil(hold_s * 1000)
            self.blocked_until_ms = max(self.blocked_until_ms, until)
        if isinstance(exc, RateLimitedError):
            report.rate_limited += 1
            self._emit("PollerRateLimited")
            log.warning(
                "%s: %s refused (HTTP %s); no requests for %.1f s",
                symbol,
                what,
                exc.status,
                (self.blocked_until_ms - self.clock_ms()) / 1000,
            )
            return
        if isinstance(exc, RestrictedLocationError):
            report.restricted = True
            self._error(
                report,
                "%s: %s: HTTP 451, Binance refuses this location; polling stops for this "
                "invocation (deploy in another region)",
                symbol,
                what,
                level=logging.ERROR,
            )
            return
        self._error(report, "%s: %s failed: %s: %s", symbol, what, type(exc).__name__, exc)

    def _error(
        self, report: PollReport, msg: str, *args: object, level: int = logging.WARNING
    ) -> None:
        report.errors += 1
        self._emit("PollerErrors")
        log.log(level, msg, *args)
