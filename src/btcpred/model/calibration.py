"""Confidence: the calibrated probability that a prediction lands within a tolerance.

The model's graph estimates ``log |error|`` of each prediction (a linear model on the same
inputs: mostly recent volume and volatility). On the validation split we choose the tolerance
``τ`` = the median absolute error of the model's log return, and fit, by binned isotonic
regression, the probability that the realized error is within ``τ`` as a non-increasing function
of the estimated error. So a confidence of 0.7 means: in validation, about 70 % of predictions
with this estimated error were within ``τ`` (about ``τ · price`` dollars) of the realized price.

Serving applies the seed's penalties on top (:func:`serving_confidence`).
"""

from __future__ import annotations

import bisect
import math
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

__all__ = [
    "LINEAR_FALLBACK_CONFIDENCE",
    "MISSING_FEATURES_FACTOR",
    "Calibration",
    "fit_calibration",
    "serving_confidence",
]

MISSING_FEATURES_FACTOR: Final = 0.8
"""The seed's penalty when missing features were replaced by their last known values."""
LINEAR_FALLBACK_CONFIDENCE: Final = 0.3
"""The seed's fixed confidence of the linear trend fallback used when the model fails."""


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    """A non-increasing, piecewise-linear map from estimated log |error| to confidence."""

    method: str = "binned isotonic regression on the validation split"
    tolerance_log_return: float
    """``τ``: confidence is the probability that |realized − predicted log return| ≤ τ."""
    knots_log_abs_error: list[float]
    confidence: list[float]

    def __call__(self, log_abs_error: float) -> float:
        """Confidence for one estimated log |error| (clamped at the end knots; NaN → 0)."""
        knots, values = self.knots_log_abs_error, self.confidence
        if math.isnan(log_abs_error):  #: no basis for any confidence
            return 0.0
        i = bisect.bisect_right(knots, log_abs_error)
        if i == 0:
            return values[0]
        if i == len(knots):
            return values[-1]
        x0, x1, y0, y1 = knots[i - 1], knots[i], values[i - 1], values[i]
        return y0 + (y1 - y0) * (log_abs_error - x0) / (x1 - x0)

    def many(self, log_abs_error: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Vectorised :meth:`__call__`."""
        out = np.interp(log_abs_error, self.knots_log_abs_error, self.confidence)
        return np.where(np.isnan(log_abs_error), 0.0, out)


def _non_increasing(values: list[float], weights: list[float]) -> list[float]:
    """Pool-adjacent-violators: the weighted least-squares non-increasing fit."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values, weights, strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    out: list[float] = []
    for mean, _, count in blocks:
        out += [mean] * int(count)
    return out


def fit_calibration(
    estimated_log_abs_error: npt.NDArray[np.float64],
    realized_abs_error: npt.NDArray[np.float64],
    bins: int = 20,
) -> Calibration:
    """Fit on validation data (see the module docstring)."""
    if estimated_log_abs_error.shape != realized_abs_error.shape or len(realized_abs_error) < 2:
        raise ValueError("need at least two (estimate, realized) pairs of equal length")
    tau = float(np.median(realized_abs_error))
    hit = (realized_abs_error <= tau).astype(np.float64)
    order = np.argsort(estimated_log_abs_error, kind="stable")
    knots: list[float] = []
    rates: list[float] = []
    weights: list[float] = []
    for part in np.array_split(order, min(bins, len(order))):
        if len(part) == 0:
            continue
        knots.append(float(np.median(estimated_log_abs_error[part])))
        rates.append(float(hit[part].mean()))
        weights.append(float(len(part)))
    fitted = _non_increasing(rates, weights)
    # equal knots (ties in the estimate) would make interpolation ill-defined: keep the first
    kept_k, kept_v = [knots[0]], [fitted[0]]
    for k, v in zip(knots[1:], fitted[1:], strict=True):
        if k > kept_k[-1]:
            kept_k.append(k)
            kept_v.append(v)
    return Calibration(tolerance_log_return=tau, knots_log_abs_error=kept_k, confidence=kept_v)


def serving_confidence(
    calibrated: float, *, missing_features: bool = False, linear_fallback: bool = False
) -> float:
    """The seed's serving-time rules on top of the calibrated confidence.

    The linear trend fallback has a fixed confidence of 0.3; features filled from their last
    known values multiply the confidence by 0.8. The result is clamped to 0..1.
    """
    value = LINEAR_FALLBACK_CONFIDENCE if linear_fallback else calibrated
    if missing_features:
        value *= MISSING_FEATURES_FACTOR
    return min(1.0, max(0.0, value))
