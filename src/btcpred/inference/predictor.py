"""Features in, PredictionResults out: validation, last-known filling, the model, the fallback.

One :class:`Predictor` serves every configured symbol with one warm :class:`OnnxModel`. Per
tick it takes each symbol's newest feature point (and history, for sequence models):

1. **Validate.** A feature the model uses must be present, finite and inside a plausible range
   (:data:`PLAUSIBLE`); anything else counts as missing.
2. **Fill.** A missing feature takes its last known good value for that symbol if that value is
   at most :data:`FILL_MAX_AGE_MS` (60 s of feature time) older than the point; the
   prediction's confidence is then multiplied by 0.8 (the seed's rule) and the outcome lists
   what was filled. An older value has expired: the feature counts as having no value.
3. **Predict.** Rows go through the model in batches of ``batch_size`` symbols. If a feature is
   still missing, the model raises, or its output is not finite, the price comes from
   :func:`~btcpred.inference.fallback.linear_trend` over the symbol's recent prices instead
   (those within :data:`TREND_MAX_AGE_MS` of the newest), with confidence 0.3.

Both limits keep a warm container's memory from speaking for the present: a container that sat
frozen between invocations resumes with fills and a trend that have aged out.

A point without a usable price cannot be predicted from at all; :class:`NoPriceError` says so
and the caller skips that symbol's tick.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from btcpred.features import FEATURE_NAMES, FeatureSnapshot
from btcpred.inference.fallback import linear_trend
from btcpred.inference.result import PredictionResult, Source
from btcpred.model import OnnxModel, serving_confidence

__all__ = [
    "FILL_MAX_AGE_MS",
    "PLAUSIBLE",
    "TREND_MAX_AGE_MS",
    "NoPriceError",
    "PredictOutcome",
    "Predictor",
    "TickInput",
]

FILL_MAX_AGE_MS: Final = 60_000
"""A last known feature value older than this (feature time, one horizon) is not used."""
TREND_MAX_AGE_MS: Final = 300_000
"""Prices older than this before the newest one leave the linear trend's window."""

_INF = math.inf
PLAUSIBLE: Final[dict[str, tuple[float, float]]] = {
    "price": (1e-9, 1e9),
    "volume": (0.0, _INF),
    "vwap": (1e-9, 1e9),
    "price_change_1m": (-0.5, 1.0),
    "price_change_5m": (-0.9, 10.0),
    "volume_avg_1m": (0.0, _INF),
    "trade_intensity": (0.0, 1e6),
    "bid_ask_spread": (0.0, 0.5),
    "order_book_imbalance": (-1.0, 1.0),
    "rsi_5m": (0.0, 100.0),
    "macd_signal": (-1e8, 1e8),
    "bollinger_position": (-50.0, 50.0),
}
"""Inclusive ranges outside which a feature value is treated as missing (a broken feed)."""

_PRICE = FEATURE_NAMES.index("price")


class NoPriceError(ValueError):
    """The feature point has no usable price, so nothing can be predicted from it."""


@dataclass(frozen=True, slots=True)
class TickInput:
    """One symbol's features for one tick; ``history`` newest first (sequence models)."""

    snapshot: FeatureSnapshot
    source: Source
    history: Sequence[FeatureSnapshot] = ()


@dataclass(frozen=True, slots=True)
class PredictOutcome:
    """A result and how it was reached."""

    result: PredictionResult
    filled: tuple[str, ...] = ()
    """Features that were missing or implausible and took their last known value."""
    implausible: tuple[str, ...] = ()
    """Features present but outside :data:`PLAUSIBLE` (also in ``filled`` when filled)."""
    linear_fallback: bool = False
    model_error: str | None = None
    """Why the model was not used (with ``linear_fallback``)."""


@dataclass
class _SymbolState:
    last_good: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Feature name → (feature time in ms, last plausible value)."""
    prices: deque[tuple[int, float]] = field(default_factory=deque)


@dataclass
class _Row:
    symbol: str
    inp: TickInput
    price: float
    values: list[list[float]]
    filled: list[str]
    implausible: list[str]
    error: str | None = None


class Predictor:
    """See the module docstring. ``model`` may be swapped between ticks (hot reload)."""

    def __init__(
        self,
        model: OnnxModel,
        *,
        cache_size: int = 100,
        batch_size: int = 8,
        fill_max_age_ms: int = FILL_MAX_AGE_MS,
        trend_max_age_ms: int = TREND_MAX_AGE_MS,
    ) -> None:
        if cache_size < 2 or batch_size < 1 or fill_max_age_ms < 0 or trend_max_age_ms < 0:
            raise ValueError(
                "cache_size must be at least 2, batch_size at least 1, ages not negative"
            )
        self.model = model
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.fill_max_age_ms = fill_max_age_ms
        self.trend_max_age_ms = trend_max_age_ms
        self._states: dict[str, _SymbolState] = {}

    def _state(self, symbol: str) -> _SymbolState:
        state = self._states.get(symbol)
        if state is None:
            state = self._states[symbol] = _SymbolState(prices=deque(maxlen=self.cache_size))
        return state

    def recent_prices(self, symbol: str) -> list[tuple[int, float]]:
        """The ``(time_ms, price)`` points the linear fallback would use, oldest first: those
        within ``trend_max_age_ms`` of the newest."""
        prices = self._state(symbol).prices
        if not prices:
            return []
        oldest = prices[-1][0] - self.trend_max_age_ms
        return [p for p in prices if p[0] >= oldest]

    def remember(self, snapshot: FeatureSnapshot, *, values: bool = True) -> None:
        """Keep a point's price for the trend and, with ``values``, its plausible values as
        last known (:meth:`predict` does this for stream features, prices only for fallback
        features, whose neutral defaults must not stand in for the stream's values later)."""
        state = self._state(snapshot.symbol)
        if values:
            t = snapshot.timestamp
            for name, value in zip(FEATURE_NAMES, snapshot.values(), strict=True):
                if _plausible(name, value, snapshot.price):
                    known = state.last_good.get(name)
                    if known is None or t >= known[0]:
                        state.last_good[name] = (t, value)  # type: ignore[assignment]  # finite
        price = snapshot.price
        if _plausible("price", price, price) and price is not None:
            prices = state.prices
            if not prices or snapshot.timestamp > prices[-1][0]:
                prices.append((snapshot.timestamp, price))

    def predict(
        self, inputs: Sequence[TickInput], *, now_ms: int, started: float
    ) -> list[PredictOutcome | NoPriceError]:
        """One outcome per input, in order (:class:`NoPriceError` in place of unusable ones).

        ``started`` is the tick's ``time.perf_counter()`` start, for the measured latency.
        """
        rows: list[_Row | NoPriceError] = []
        for inp in inputs:
            try:
                rows.append(self._prepare(inp))
            except NoPriceError as exc:
                rows.append(exc)
        ready = [r for r in rows if isinstance(r, _Row) and r.error is None]
        outputs = self._run(ready)
        out: list[PredictOutcome | NoPriceError] = []
        for row in rows:
            if isinstance(row, NoPriceError):
                out.append(row)
            else:
                out.append(self._finish(row, outputs.get(id(row)), now_ms, started))
        return out

    def _prepare(self, inp: TickInput) -> _Row:
        snap = inp.snapshot
        state = self._state(snap.symbol)
        price = snap.price
        if price is None or not _plausible("price", price, price):
            raise NoPriceError(f"{snap.symbol} features at {snap.timestamp} have no usable price")
        masked = set(self.model.metadata.masked_features)
        filled: list[str] = []
        implausible: list[str] = []
        current: list[float] = []
        for name, value in zip(FEATURE_NAMES, snap.values(), strict=True):
            if name in masked:
                current.append(math.nan)
            elif _plausible(name, value, price):
                current.append(value)  # type: ignore[arg-type]  # checked finite
            else:
                if value is not None and math.isfinite(value):
                    implausible.append(name)
                filled.append(name)
                current.append(self._last_known(state, name, snap.timestamp))
        self.remember(snap, values=inp.source == "redis")
        row = _Row(snap.symbol, inp, price, [current], filled, implausible)
        unfilled = [
            n
            for n, v in zip(FEATURE_NAMES, current, strict=True)
            if math.isnan(v) and n not in masked
        ]
        if unfilled:
            row.error = f"no value, current or last known, for {', '.join(unfilled)}"
            return row
        window = self.model.metadata.window
        if window > 1:
            older = self._older_points(inp, window, self.model.metadata.window_step_ms, masked)
            if older is None:
                row.error = f"history has no {window}-point window"
            else:
                row.values = [*older, current]
        return row

    def _last_known(self, state: _SymbolState, name: str, time_ms: int) -> float:
        """The last known value of ``name`` if it has not expired at ``time_ms``, else NaN."""
        known = state.last_good.get(name)
        if known is None or time_ms - known[0] > self.fill_max_age_ms:
            return math.nan
        return known[1]

    def _older_points(
        self, inp: TickInput, window: int, step_ms: int, masked: set[str]
    ) -> list[list[float]] | None:
        """The ``window - 1`` older points, oldest first, each the newest at or before its slot."""
        out: list[list[float]] = []
        t = inp.snapshot.timestamp
        for k in range(window - 1, 0, -1):
            slot = t - k * step_ms
            point = next((h for h in inp.history if h.timestamp <= slot), None)
            if point is None:
                return None
            values = [
                math.nan if n in masked else (v if v is not None else math.nan)
                for n, v in zip(FEATURE_NAMES, point.values(), strict=True)
            ]
            if any(
                math.isnan(v) for n, v in zip(FEATURE_NAMES, values, strict=True) if n not in masked
            ):
                return None
            out.append(values)
        return out

    def _run(self, rows: list[_Row]) -> dict[int, tuple[float, float]]:
        """(log_return, log_abs_error) per row id; failed batches set the rows' error."""
        out: dict[int, tuple[float, float]] = {}
        model = self.model
        for lo in range(0, len(rows), self.batch_size):
            batch = rows[lo : lo + self.batch_size]
            x = np.array([r.values for r in batch], dtype=np.float32)
            try:
                outputs = model.run(x)
            except Exception as exc:  # onnxruntime raises its own untyped errors
                for r in batch:
                    r.error = f"model failed: {type(exc).__name__}: {exc}"
                continue
            for r, ret, err in zip(batch, outputs.log_return, outputs.log_abs_error, strict=True):
                if math.isfinite(ret) and math.isfinite(err) and abs(ret) < 1.0:
                    out[id(r)] = (float(ret), float(err))
                else:
                    r.error = f"model output is not usable (log return {ret!r})"
        return out

    def _finish(
        self,
        row: _Row,
        output: tuple[float, float] | None,
        now_ms: int,
        started: float,
    ) -> PredictOutcome:
        snap = row.inp.snapshot
        meta = self.model.metadata
        linear = output is None
        if output is None:
            predicted = linear_trend(self.recent_prices(row.symbol), meta.horizon_ms)
            confidence = serving_confidence(0.0, linear_fallback=True)
        else:
            log_return, log_err = output
            predicted = row.price * math.exp(log_return)
            confidence = serving_confidence(
                meta.calibration(log_err), missing_features=bool(row.filled)
            )
        result = PredictionResult(
            symbol=row.symbol,
            timestamp=now_ms,
            current_price=row.price,
            predicted_price=predicted,
            prediction_horizon_seconds=meta.horizon_ms // 1000,
            confidence=confidence,
            model_version=self.model.version,
            features_age_ms=max(0, now_ms - snap.timestamp),
            inference_latency_ms=(time.perf_counter() - started) * 1000.0,
            source=row.inp.source,
        )
        return PredictOutcome(
            result=result,
            filled=tuple(row.filled),
            implausible=tuple(row.implausible),
            linear_fallback=linear,
            model_error=row.error if linear else None,
        )


def _plausible(name: str, value: float | None, price: float | None) -> bool:
    if value is None or not math.isfinite(value):
        return False
    lo, hi = PLAUSIBLE[name]
    if not lo <= value <= hi:
        return False
    if name == "vwap" and price:
        return abs(value / price - 1.0) < 0.5
    return True
