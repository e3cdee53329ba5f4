"""Honest evaluation: the model against the random walk and a linear baseline.

All MAEs are in price units (USDT) over the same samples:

* ``model_mae``: |price · exp(predicted log return) − realized price|;
* ``naive_mae``: the random walk, |price − realized price| (price unchanged in 60 s);
* ``linear_mae``: the linear baseline in the graph (least squares on the same inputs, fitted on
  the training split);
* ``mae_ratio`` = model / naive: below 1 beats the random walk;
* ``direction_accuracy``: share of samples whose predicted and realized moves have the same sign,
  over samples where both are non-zero;
* ``calibration_spearman``: Spearman rank correlation between confidence and absolute error
  (negative = higher confidence goes with smaller errors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btcpred.model.dataset import Dataset
from btcpred.model.metadata import Evaluation
from btcpred.model.runtime import ModelOutputs, OnnxModel

__all__ = ["Scored", "evaluate", "score", "spearman"]

FloatArray = npt.NDArray[np.float64]


def _ranks(values: FloatArray) -> FloatArray:
    """Ranks 1..n, ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1, dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    if (counts > 1).any():
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / counts)[inverse]
    return ranks


def spearman(a: FloatArray, b: FloatArray) -> float:
    """Spearman's rank correlation (NaN when either side is constant)."""
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


@dataclass(frozen=True)
class Scored:
    """Per-sample predictions and errors behind an :class:`Evaluation` (for reports)."""

    timestamps: npt.NDArray[np.int64]
    prices: FloatArray
    actual: FloatArray
    predicted: FloatArray
    linear: FloatArray
    confidence: FloatArray
    evaluation: Evaluation

    def paired_t(self) -> float:
        """t statistic of (model − random walk) absolute errors, sample by sample.

        Below −2 the model's lower MAE is unlikely to be luck; between −2 and 2 the two are
        indistinguishable on these samples. (It treats samples as independent, which holds
        roughly for non-overlapping 60-second horizons and flatters overlapping ones.)
        """
        diff = np.abs(self.predicted - self.actual) - np.abs(self.prices - self.actual)
        spread = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
        return float(diff.mean() / (spread / np.sqrt(len(diff)))) if spread > 0 else 0.0

    def verdict(self) -> str:
        """Plain words on the model against the random walk (see :meth:`paired_t`)."""
        t = self.paired_t()
        if t <= -2:
            return f"beats the random walk (paired t = {t:+.2f})"
        if t >= 2:
            return f"is WORSE than the random walk (paired t = {t:+.2f})"
        return f"does NOT beat the random walk: the difference is noise (paired t = {t:+.2f})"


def score(data: Dataset, outputs: ModelOutputs, model: OnnxModel) -> Scored:
    """Score the graph's ``outputs`` on ``data`` (same order)."""
    if len(data) == 0:
        raise ValueError("no samples to evaluate")
    price, actual = data.prices, data.future_prices
    predicted = price * np.exp(outputs.log_return)
    linear = price * np.exp(outputs.linear_log_return)
    confidence = model.metadata.calibration.many(outputs.log_abs_error)
    err = np.abs(predicted - actual)
    naive = float(np.abs(price - actual).mean())
    moved = np.sign(actual - price)
    guess = np.sign(outputs.log_return)
    both = (moved != 0) & (guess != 0)
    evaluation = Evaluation(
        n=len(data),
        model_mae=float(err.mean()),
        naive_mae=naive,
        mae_ratio=float(err.mean()) / naive if naive > 0 else float("nan"),
        linear_mae=float(np.abs(linear - actual).mean()),
        direction_accuracy=float((moved[both] == guess[both]).mean()) if both.any() else 0.0,
        calibration_spearman=spearman(confidence, err),
    )
    return Scored(
        timestamps=data.timestamps,
        prices=price,
        actual=actual,
        predicted=predicted,
        linear=linear,
        confidence=confidence,
        evaluation=evaluation,
    )


def evaluate(model: OnnxModel, data: Dataset, batch: int = 65_536) -> Scored:
    """Run the model over ``data`` in batches and score it."""
    if len(data) == 0:
        raise ValueError("no samples to evaluate")
    parts = [model.run(data.features[i : i + batch]) for i in range(0, len(data), batch)]
    outputs = ModelOutputs(
        log_return=np.concatenate([p.log_return for p in parts]),
        log_abs_error=np.concatenate([p.log_abs_error for p in parts]),
        linear_log_return=np.concatenate([p.linear_log_return for p in parts]),
    )
    return score(data, outputs, model)
