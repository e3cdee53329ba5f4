"""Bar indicators with TA-Lib's conventions, one close at a time.

Each indicator follows one protocol (after Nautilus Trader and talipp): ``update(close)`` commits
a finished bar, ``value`` is the value on the committed bars (``None`` until ``initialized``),
``peek(close)`` is the value *as if* one more bar closed at ``close`` without committing it (the
forming-bar rule), ``reset()`` returns to the fresh state, and ``state()`` / ``from_state()``
round-trip the complete state as plain lists. Memory is fixed by the period, never by history.

Seeding follows TA-Lib exactly, so values on completed bars equal TA-Lib's from the first output
on (see ``docs/features.md``):

* RSI(n), Wilder: the first average gain/loss is the plain mean of the first ``n`` changes; then
  ``avg = (avg * (n - 1) + x) / n``. The first value comes with close number ``n + 1``. When
  ``avg_gain + avg_loss`` is below 1e-8, TA-Lib reports 0 and so do we.
* MACD(12, 26, 9): both EMAs start at close number 26 — the slow one seeded with the mean of
  closes 1..26, the fast one with the mean of closes 15..26 (TA-Lib's MACD aligns them so) — with
  ``k = 2 / (n + 1)``. The signal EMA(9) is seeded with the mean of the first nine MACD values,
  so the first signal comes with close number 34.
* BBANDS(20, 2, 2, SMA): mean and population standard deviation of the last 20 closes. We compute
  the variance with the two-pass formula; TA-Lib uses E[x²] − E[x]², which agrees to ~1e-12
  relative at Bitcoin prices.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

__all__ = ["BollingerBands", "Macd", "Rsi"]

_TA_EPSILON = 1e-8  # TA-Lib's TA_IS_ZERO bound


class Rsi:
    """Wilder's relative strength index on closes, 0..100."""

    def __init__(self, period: int = 14) -> None:
        if period < 2:
            raise ValueError("RSI period must be at least 2")
        self.period = period
        self.reset()

    def reset(self) -> None:
        """Forget every close."""
        self._prev: float | None = None
        self._changes = 0
        self._gain = 0.0  # running sum while warming, then Wilder's average
        self._loss = 0.0

    @property
    def initialized(self) -> bool:
        """True once ``period`` changes (``period + 1`` closes) were seen."""
        return self._changes >= self.period

    def _step(self, close: float, prev: float) -> tuple[float, float, int]:
        change = close - prev
        gain, loss = (change, 0.0) if change > 0 else (0.0, -change)
        n, changes = self.period, self._changes + 1
        if changes < n:
            return self._gain + gain, self._loss + loss, changes
        if changes == n:
            return (self._gain + gain) / n, (self._loss + loss) / n, changes
        return (self._gain * (n - 1) + gain) / n, (self._loss * (n - 1) + loss) / n, changes

    @staticmethod
    def _rsi(gain: float, loss: float) -> float:
        total = gain + loss
        return 100.0 * gain / total if abs(total) >= _TA_EPSILON else 0.0

    def update(self, close: float) -> None:
        """Commit one finished bar's close."""
        if self._prev is not None:
            self._gain, self._loss, self._changes = self._step(close, self._prev)
        self._prev = close

    @property
    def value(self) -> float | None:
        """RSI on the committed closes, ``None`` until initialized."""
        return self._rsi(self._gain, self._loss) if self.initialized else None

    def peek(self, close: float) -> float | None:
        """RSI as if one more bar closed at ``close`` (nothing is committed)."""
        if self._prev is None:
            return None
        gain, loss, changes = self._step(close, self._prev)
        return self._rsi(gain, loss) if changes >= self.period else None

    def state(self) -> list[Any]:
        """The complete state as a plain list."""
        return [self.period, self._prev, self._changes, self._gain, self._loss]

    @classmethod
    def from_state(cls, state: list[Any]) -> Rsi:
        """Rebuild from :meth:`state`."""
        rsi = cls(int(state[0]))
        rsi._prev, rsi._changes, rsi._gain, rsi._loss = state[1], int(state[2]), state[3], state[4]
        return rsi


class Macd:
    """MACD(fast, slow, signal): ``value`` is the signal line, in price units."""

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        if not 1 < fast < slow or signal < 2:
            raise ValueError("MACD periods must satisfy 1 < fast < slow and signal >= 2")
        self.fast, self.slow, self.signal = fast, slow, signal
        self._kf, self._ks, self._kg = 2 / (fast + 1), 2 / (slow + 1), 2 / (signal + 1)
        self.reset()

    def reset(self) -> None:
        """Forget every close."""
        self._seed: list[float] = []  # the first `slow` closes, then the first `signal` MACDs
        self._fast_ema: float | None = None
        self._slow_ema: float | None = None
        self._signal: float | None = None

    @property
    def initialized(self) -> bool:
        """True once the signal line exists (``slow + signal - 1`` closes)."""
        return self._signal is not None

    def _step(self, close: float) -> tuple[float | None, float | None, float | None, list[float]]:
        fast, slow, signal, seed = self._fast_ema, self._slow_ema, self._signal, self._seed
        if slow is None or fast is None:
            seed = [*seed, close]
            if len(seed) < self.slow:
                return None, None, None, seed
            fast, slow = math.fsum(seed[-self.fast :]) / self.fast, math.fsum(seed) / self.slow
            return fast, slow, None, [fast - slow]
        fast = (close - fast) * self._kf + fast
        slow = (close - slow) * self._ks + slow
        if signal is None:
            seed = [*seed, fast - slow]
            if len(seed) == self.signal:
                return fast, slow, math.fsum(seed) / self.signal, []
            return fast, slow, None, seed
        return fast, slow, (fast - slow - signal) * self._kg + signal, seed

    def update(self, close: float) -> None:
        """Commit one finished bar's close."""
        self._fast_ema, self._slow_ema, self._signal, self._seed = self._step(close)

    @property
    def value(self) -> float | None:
        """The signal line on the committed closes, ``None`` until initialized."""
        return self._signal

    @property
    def macd(self) -> float | None:
        """The MACD line (fast EMA − slow EMA) on the committed closes."""
        if self._fast_ema is None or self._slow_ema is None:
            return None
        return self._fast_ema - self._slow_ema

    def peek(self, close: float) -> float | None:
        """The signal line as if one more bar closed at ``close``."""
        return self._step(close)[2]

    def state(self) -> list[Any]:
        """The complete state as a plain list."""
        return [
            [self.fast, self.slow, self.signal],
            list(self._seed),
            self._fast_ema,
            self._slow_ema,
            self._signal,
        ]

    @classmethod
    def from_state(cls, state: list[Any]) -> Macd:
        """Rebuild from :meth:`state`."""
        macd = cls(*(int(p) for p in state[0]))
        macd._seed = [float(x) for x in state[1]]
        macd._fast_ema, macd._slow_ema, macd._signal = state[2], state[3], state[4]
        return macd


class BollingerBands:
    """Bollinger bands (SMA ± k population σ); ``value`` is the position of the last close."""

    def __init__(self, period: int = 20, k: float = 2.0) -> None:
        if period < 2 or not k > 0:
            raise ValueError("Bollinger period must be >= 2 and k > 0")
        self.period, self.k = period, k
        self.reset()

    def reset(self) -> None:
        """Forget every close."""
        self._closes: deque[float] = deque(maxlen=self.period)

    @property
    def initialized(self) -> bool:
        """True once ``period`` closes were seen."""
        return len(self._closes) == self.period

    def update(self, close: float) -> None:
        """Commit one finished bar's close."""
        self._closes.append(close)

    def bands_of(self, closes: list[float]) -> tuple[float, float, float]:
        """``(lower, middle, upper)`` of exactly ``period`` closes."""
        mean = math.fsum(closes) / len(closes)
        variance = math.fsum((c - mean) ** 2 for c in closes) / len(closes)
        width = self.k * math.sqrt(variance)
        return mean - width, mean, mean + width

    @staticmethod
    def position(price: float, lower: float, upper: float) -> float:
        """``(price − lower) / (upper − lower)``; 0.5 when the bands coincide."""
        return 0.5 if upper <= lower else (price - lower) / (upper - lower)

    @property
    def bands(self) -> tuple[float, float, float] | None:
        """``(lower, middle, upper)`` on the committed closes."""
        return self.bands_of(list(self._closes)) if self.initialized else None

    @property
    def value(self) -> float | None:
        """Position of the last committed close within the bands."""
        if not self.initialized:
            return None
        lower, _, upper = self.bands_of(list(self._closes))
        return self.position(self._closes[-1], lower, upper)

    def peek(self, close: float, price: float | None = None) -> float | None:
        """Position of ``price`` (default ``close``) as if one more bar closed at ``close``."""
        closes = [*self._closes, close][-self.period :]
        if len(closes) < self.period:
            return None
        lower, _, upper = self.bands_of(closes)
        return self.position(close if price is None else price, lower, upper)

    def state(self) -> list[Any]:
        """The complete state as a plain list."""
        return [self.period, self.k, list(self._closes)]

    @classmethod
    def from_state(cls, state: list[Any]) -> BollingerBands:
        """Rebuild from :meth:`state`."""
        bands = cls(int(state[0]), float(state[1]))
        bands._closes.extend(float(c) for c in state[2])
        return bands
