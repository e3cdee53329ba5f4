"""Trailing trade windows over one-second UTC buckets: fixed memory, O(1) per trade.

A window of ``w`` seconds at time ``t`` covers the ``w`` one-second buckets ending with the
bucket that holds ``t`` — the seconds ``(s(t) − w, s(t)]`` where ``s(t) = floor(t / 1 s)``.
At a bar close (``t`` = the last microsecond of a UTC minute) the 60-second window is exactly
that minute, which is what makes 1-minute klines and trades give the same features. Each bucket
keeps Σqty, Σprice·qty, the trade count and the last price at or before its end (carried
forward through empty seconds), in a ring of ``long_window + 1`` buckets.

A finished kline is booked whole into its last second: exact at bar closes, and documented as an
approximation for windows that cut through such a bar.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["TradeWindows"]

_NAN = math.nan


class TradeWindows:
    """Σqty, Σprice·qty, trade counts and reference prices over trailing windows."""

    def __init__(self, max_window_s: int = 300) -> None:
        self.size = max_window_s + 1
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        size = self.size
        self._qty = [0.0] * size
        self._pq = [0.0] * size
        self._count = [0.0] * size  # float so that an unknown count (NaN) propagates through sums
        self._close = [_NAN] * size
        self._sec = -1  # the current (newest) bucket's second; -1 before any data
        self.coverage_start_s = -1  # the first second whose data were fully observed

    def advance(self, sec: int) -> None:
        """Move the newest bucket forward to ``sec`` (never backwards), opening empty seconds."""
        old = self._sec
        if sec <= old:
            return
        size = self.size
        if old < 0:
            self._sec = sec
            return
        carried = self._close[old % size]
        for s in range(max(old + 1, sec - size + 1), sec + 1):
            i = s % size
            self._qty[i] = 0.0
            self._pq[i] = 0.0
            self._count[i] = 0.0
            self._close[i] = carried
        self._sec = sec

    def add_trade(self, sec: int, price: float, qty: float) -> None:
        """Book one trade into second ``sec`` (a second before the newest goes into the newest)."""
        if self._sec < 0:
            self.coverage_start_s = sec + 1
        if sec > self._sec:
            self.advance(sec)
        i = self._sec % self.size
        self._qty[i] += qty
        self._pq[i] += price * qty
        self._count[i] += 1.0
        self._close[i] = price

    def add_bar(
        self,
        seconds: tuple[int, int],
        close: float,
        volume: float,
        quote: float | None,
        trades: int | None,
    ) -> None:
        """Book a finished bar covering ``seconds = (first, last)``; unknown totals are NaN."""
        first_sec, last_sec = seconds
        if self._sec < 0:
            self.coverage_start_s = first_sec
        self.advance(last_sec)
        i = self._sec % self.size
        self._qty[i] += volume
        self._pq[i] += _NAN if quote is None else quote
        self._count[i] += _NAN if trades is None else float(trades)
        self._close[i] = close

    def _slice(self, values: list[float], first: int, last: int) -> list[float]:
        """Values of the buckets for seconds ``first..last`` (within the ring, ``last`` current)."""
        if first > last:
            return []
        size = self.size
        start, end = first % size, last % size
        return values[start : end + 1] if start <= end else values[start:] + values[: end + 1]

    def covered(self, window_s: int, at_sec: int) -> bool:
        """True when every second of the window ending at ``at_sec`` was observed."""
        return self._sec >= 0 and at_sec - window_s + 1 >= self.coverage_start_s

    def totals(self, window_s: int, at_sec: int) -> tuple[float, float, float]:
        """``(Σqty, Σprice·qty, trades)`` over the window ending at ``at_sec`` (NaN = unknown).

        ``at_sec`` may lie after the newest bucket (time passed without trades); nothing moves.
        """
        first, last = max(at_sec - window_s + 1, self._sec - self.size + 1), self._sec
        return (
            sum(self._slice(self._qty, first, last)),
            sum(self._slice(self._pq, first, last)),
            sum(self._slice(self._count, first, last)),
        )

    def price_before(self, window_s: int, at_sec: int) -> float | None:
        """The last price at or before the end of second ``at_sec − window_s``, if known."""
        target = at_sec - window_s
        if self._sec < 0 or target < self.coverage_start_s - 1:
            return None
        price = self._close[min(target, self._sec) % self.size]
        return None if math.isnan(price) else price

    def state(self) -> list[Any]:
        """The complete state as plain lists."""
        return [
            self.size,
            self._sec,
            self.coverage_start_s,
            self._qty,
            self._pq,
            self._count,
            self._close,
        ]

    @classmethod
    def from_state(cls, state: list[Any]) -> TradeWindows:
        """Rebuild from :meth:`state`."""
        windows = cls(int(state[0]) - 1)
        windows._sec, windows.coverage_start_s = int(state[1]), int(state[2])
        for target, values in zip(
            (windows._qty, windows._pq, windows._count, windows._close), state[3:7], strict=True
        ):
            if len(values) != windows.size or not all(type(v) is float for v in values):
                raise ValueError("window state has the wrong length or type")
            target[:] = values
        return windows
