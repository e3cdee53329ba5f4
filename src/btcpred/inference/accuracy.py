"""Online accuracy: each prediction is scored once its horizon has passed.

The realized price is the first observed price at or after the prediction's target time (the
features' time plus the horizon). Observations arrive once per tick, so the realized price is
at most one interval late; one more than ``max_lag_ms`` late (the feed was down) is not a
fair score and the prediction is dropped as unscorable instead.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import msgspec

from btcpred.inference.result import PredictionResult

__all__ = ["AccuracyTracker", "ObserveReport", "ScoredPrediction", "confidence_band"]


class ScoredPrediction(msgspec.Struct, frozen=True, kw_only=True):
    """A prediction next to what happened."""

    prediction: PredictionResult
    realized_price: float
    realized_time_ms: int
    abs_error: float
    """|predicted − realized| in quote currency."""
    naive_abs_error: float
    """|current − realized|: the random walk's error on the same prediction."""
    direction_hit: bool
    """The predicted and realized moves have the same sign (both zero counts as a hit)."""


def confidence_band(confidence: float) -> str:
    """``low`` (< 0.4), ``mid`` (< 0.6) or ``high``: the buckets error is reported by."""
    return "low" if confidence < 0.4 else "mid" if confidence < 0.6 else "high"


@dataclass(frozen=True, slots=True)
class ObserveReport:
    """What one observation settled."""

    scored: list[ScoredPrediction]
    unscorable: int = 0


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


@dataclass
class AccuracyTracker:
    """Pending predictions per symbol, oldest first; see the module docstring."""

    max_lag_ms: int = 5_000
    max_pending: int = 1_000
    _pending: dict[str, deque[PredictionResult]] = field(default_factory=dict)

    def add(self, result: PredictionResult) -> int:
        """Queue a prediction; return how many old ones fell off a full queue."""
        queue = self._pending.setdefault(result.symbol, deque())
        target = result.target_time_ms
        if not queue or queue[-1].target_time_ms <= target:
            queue.append(result)
        else:  # older features than the last prediction's (REST then stream): keep target order
            index = len(queue)
            while index > 0 and queue[index - 1].target_time_ms > target:
                index -= 1
            queue.insert(index, result)
        dropped = 0
        while len(queue) > self.max_pending:
            queue.popleft()
            dropped += 1
        return dropped

    def observe(self, symbol: str, time_ms: int, price: float) -> ObserveReport:
        """Score every pending prediction of ``symbol`` whose target time is ≤ ``time_ms``."""
        queue = self._pending.get(symbol)
        scored: list[ScoredPrediction] = []
        unscorable = 0
        while queue and queue[0].target_time_ms <= time_ms:
            p = queue.popleft()
            if time_ms - p.target_time_ms > self.max_lag_ms:
                unscorable += 1
                continue
            predicted_move = p.predicted_price - p.current_price
            realized_move = price - p.current_price
            scored.append(
                ScoredPrediction(
                    prediction=p,
                    realized_price=price,
                    realized_time_ms=time_ms,
                    abs_error=abs(p.predicted_price - price),
                    naive_abs_error=abs(realized_move),
                    direction_hit=_sign(predicted_move) == _sign(realized_move),
                )
            )
        return ObserveReport(scored, unscorable)

    @property
    def depth(self) -> int:
        """Predictions waiting for their horizon, all symbols."""
        return sum(len(q) for q in self._pending.values())

    def pending(self, symbol: str) -> list[PredictionResult]:
        """The symbol's waiting predictions, oldest first."""
        return list(self._pending.get(symbol, ()))

    def restore(self, results: list[PredictionResult]) -> None:
        """Take over waiting predictions (from the previous invocation), keeping time order."""
        for result in sorted(results, key=lambda r: r.target_time_ms):
            queue = self._pending.setdefault(result.symbol, deque())
            if not queue or queue[-1].target_time_ms <= result.target_time_ms:
                queue.append(result)
            else:  # interleaved with ours: rebuild in order
                merged = sorted([*queue, result], key=lambda r: r.target_time_ms)
                queue.clear()
                queue.extend(merged)

    def drain(self, symbol: str) -> list[PredictionResult]:
        """Remove and return the symbol's waiting predictions (handover at the end)."""
        queue = self._pending.pop(symbol, deque())
        return list(queue)
