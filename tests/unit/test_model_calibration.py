"""Confidence calibration, Spearman and the evaluation metrics, against hand-built references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from btcpred.model.calibration import (
    Calibration,
    _non_increasing,
    fit_calibration,
    serving_confidence,
)
from btcpred.model.evaluate import spearman


def test_pava_pools_violators_into_their_weighted_mean() -> None:
    assert _non_increasing([0.9, 0.5, 0.7, 0.1], [1, 1, 1, 1]) == [0.9, 0.6, 0.6, 0.1]
    assert _non_increasing([0.2, 0.4], [3, 1]) == [0.25, 0.25]


def test_confidence_means_the_chance_of_landing_within_tolerance() -> None:
    rng = np.random.default_rng(7)
    scale = np.exp(rng.uniform(-10, -7, 40_000))  # each prediction's true error scale
    errors = np.abs(rng.normal(0, scale))
    fit_half, check_half = slice(0, 20_000), slice(20_000, None)
    calibration = fit_calibration(np.log(scale[fit_half]), errors[fit_half])

    confidence = calibration.many(np.log(scale[check_half]))
    within = errors[check_half] <= calibration.tolerance_log_return

    assert calibration.confidence == sorted(calibration.confidence, reverse=True)
    assert calibration.tolerance_log_return == pytest.approx(np.median(errors[fit_half]))
    for part in np.array_split(np.argsort(confidence), 5):  # realized rate tracks confidence
        assert within[part].mean() == pytest.approx(confidence[part].mean(), abs=0.03)
    assert spearman(confidence, errors[check_half]) < -0.5


def test_calibration_interpolates_and_clamps() -> None:
    cal = Calibration(
        tolerance_log_return=1e-4, knots_log_abs_error=[-10.0, -8.0], confidence=[0.8, 0.2]
    )
    assert cal(-9.0) == pytest.approx(0.5)
    assert cal(-20.0) == 0.8
    assert cal(0.0) == 0.2
    assert cal(math.nan) == 0.0
    np.testing.assert_allclose(cal.many(np.array([-9.0, -20.0, math.nan])), [0.5, 0.8, 0.0])


def test_seed_penalties_at_serving_time() -> None:
    assert serving_confidence(0.6) == 0.6
    assert serving_confidence(0.6, missing_features=True) == pytest.approx(0.48)
    assert serving_confidence(0.9, linear_fallback=True) == 0.3
    assert serving_confidence(0.9, linear_fallback=True, missing_features=True) == pytest.approx(
        0.24
    )


def test_spearman_matches_pandas_with_ties() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 20, 500).astype(float)
    b = a + rng.integers(-5, 5, 500)

    # Spearman = Pearson on average ranks; pandas ranks ties independently of our code
    expected = np.corrcoef(pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy())[0, 1]

    assert spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert math.isnan(spearman(np.ones(4), np.arange(4.0)))
