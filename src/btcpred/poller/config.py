"""What one poller loop is told: symbols and timing (built from :class:`PollerSettings`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PollerConfig"]


@dataclass(frozen=True, slots=True)
class PollerConfig:
    """The loop's symbols and timing.

    Parameters
    ----------
    symbols
        Polled in this order every round.
    interval_s
        Seconds between rounds (``POLLER_INTERVAL_SECONDS``); rounds sit on the wall-clock grid
        (multiples of the interval since the epoch), the first one at once.
    stop_margin_ms
        A poll starts only while the invocation has at least this long left
        (``POLLER_STOP_MARGIN_MS``). It must exceed the longest a poll can take: two requests
        of one attempt each at the REST timeout, and one Redis round trip.
    default_hold_s
        How long to stop asking after a 429/418 that carries no ``Retry-After`` (Binance always
        sends one; this is the bound when it does not).
    flush_every_s
        Metrics are flushed this often during the loop (and at its end), so datapoints carry
        the time they were measured rather than the end of the invocation.
    """

    symbols: tuple[str, ...] = ("BTCUSDT",)
    interval_s: float = 5.0
    stop_margin_ms: int = 3_000
    default_hold_s: float = 60.0
    flush_every_s: float = 15.0

    def __post_init__(self) -> None:
        if not self.symbols or self.interval_s <= 0 or self.stop_margin_ms < 0:
            raise ValueError("need symbols, interval_s > 0 and stop_margin_ms >= 0")
