"""UTC time bars built from prices, feeding bar indicators, with the forming-bar rule.

A :class:`BarSeries` of ``interval_s`` seconds puts time ``t`` in bar ``floor(t / interval_s)``.
The forming bar's close is the last price seen. When time moves into a later bar, the forming
bar is committed to the indicators, and every bar skipped without a trade is committed as a flat
bar at the same close (Binance reports such minutes the same way). A silence longer than
``max_gap_bars`` resets the indicators instead: they warm up again from fresh data.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol, TypeVar

__all__ = ["BarIndicator", "BarSeries"]


class BarIndicator(Protocol):
    """What a bar series needs from an indicator."""

    def update(self, close: float) -> None: ...

    def reset(self) -> None: ...


_I = TypeVar("_I", bound=BarIndicator)


class BarSeries:
    """Bars of ``interval_s`` seconds; commits closes to ``indicators`` as bars finish."""

    def __init__(
        self, interval_s: int, indicators: tuple[BarIndicator, ...], max_gap_bars: int
    ) -> None:
        self.interval_s = interval_s
        self.indicators = indicators
        self.max_gap_bars = max_gap_bars
        self.bar = -1  # index of the forming bar; -1 before any price
        self.close: float | None = None  # the forming bar's close (the last price)
        self.committed = 0  # bars committed since the last reset

    def reset(self) -> None:
        """Forget every bar and reset the indicators."""
        self.bar, self.close, self.committed = -1, None, 0
        for indicator in self.indicators:
            indicator.reset()

    def _commit(self, close: float, times: int) -> None:
        for _ in range(times):
            for indicator in self.indicators:
                indicator.update(close)
        self.committed += times

    def advance(self, sec: int) -> None:
        """Move to the bar holding second ``sec``, committing finished and skipped bars."""
        bar = sec // self.interval_s
        if bar <= self.bar:
            return
        if self.close is not None and self.bar >= 0:
            skipped = bar - self.bar - 1
            if skipped > self.max_gap_bars:
                for indicator in self.indicators:
                    indicator.reset()
                self.committed = 0
            else:
                self._commit(self.close, 1 + skipped)
        self.bar = bar

    def view_at(self, sec: int, indicator: _I) -> tuple[_I, float | None]:
        """``indicator`` (one of ours) as it would be at second ``sec``, and the forming close.

        Nothing is committed: when ``sec`` lies in a later bar, a copy is advanced instead.
        """
        bar = sec // self.interval_s
        if bar <= self.bar or self.close is None or self.bar < 0:
            return indicator, self.close
        ahead = copy.deepcopy(indicator)
        if bar - self.bar - 1 > self.max_gap_bars:
            ahead.reset()
        else:
            for _ in range(bar - self.bar):
                ahead.update(self.close)
        return ahead, self.close

    def update(self, sec: int, price: float) -> None:
        """A price at second ``sec``; a price for an already committed bar is ignored."""
        bar = sec // self.interval_s
        if bar > self.bar:
            self.advance(sec)
        elif bar < self.bar:
            return
        self.close = price

    def state(self) -> list[Any]:
        """Series position (the indicators save their own state)."""
        return [self.bar, self.close, self.committed]

    def restore(self, state: list[Any]) -> None:
        """Restore the series position saved by :meth:`state`."""
        self.bar, self.close, self.committed = int(state[0]), state[1], int(state[2])
