"""The fallback poller: Binance's REST tickers → ``features:{S}:fallback`` in Redis.

:class:`Poller` is the loop (pure: the REST client, the Redis client, the clock and the sleep
are passed in); :class:`FallbackStore` its Redis side; :data:`UNITS` the metrics it emits.
Design: ``docs/poller.md``.
"""

from btcpred.poller.config import PollerConfig
from btcpred.poller.loop import CountingMetrics, Poller, PollerMetrics, PollReport, TickerSource
from btcpred.poller.metrics import SERVICE, UNITS
from btcpred.poller.store import FallbackStore, FallbackStoreError, fallback_document

__all__ = [
    "SERVICE",
    "UNITS",
    "CountingMetrics",
    "FallbackStore",
    "FallbackStoreError",
    "PollReport",
    "Poller",
    "PollerConfig",
    "PollerMetrics",
    "TickerSource",
    "fallback_document",
]
