"""Indicators on completed bars against TA-Lib (the independent reference), on real closes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import talib

from btcpred.features import FeatureEngine
from btcpred.features.indicators import BollingerBands, Macd, Rsi
from btcpred.klines import Kline

REL = 1e-9


def close_enough(ours: float, theirs: float) -> bool:
    return math.isclose(ours, theirs, rel_tol=REL, abs_tol=REL)


def five_minute_closes(klines: list[Kline]) -> list[float]:
    """Closes of complete UTC 5-minute buckets (the last 1-minute close of each)."""
    buckets: dict[int, list[float]] = {}
    for k in klines:
        buckets.setdefault(k.open_time_ms // 300_000, []).append(k.close)
    return [closes[-1] for closes in buckets.values() if len(closes) == 5]


def test_rsi_equals_talib_from_its_first_value(warmup_klines: list[Kline]) -> None:
    closes = [k.close for k in warmup_klines]
    expected = talib.RSI(np.array(closes), timeperiod=14)
    rsi = Rsi(14)

    for close, theirs in zip(closes, expected, strict=True):
        rsi.update(close)
        assert (rsi.value is None) == bool(np.isnan(theirs))
        if rsi.value is not None:
            assert close_enough(rsi.value, theirs)


def test_macd_signal_equals_talib_from_its_first_value(warmup_klines: list[Kline]) -> None:
    closes = [k.close for k in warmup_klines]
    _, signal, _ = talib.MACD(np.array(closes), fastperiod=12, slowperiod=26, signalperiod=9)
    macd = Macd(12, 26, 9)

    for close, theirs in zip(closes, signal, strict=True):
        macd.update(close)
        assert (macd.value is None) == bool(np.isnan(theirs))
        if macd.value is not None:
            assert close_enough(macd.value, theirs)


def test_bollinger_bands_equal_talib_population_sigma(warmup_klines: list[Kline]) -> None:
    closes = [k.close for k in warmup_klines]
    upper, middle, lower = talib.BBANDS(np.array(closes), 20, 2.0, 2.0, matype=0)
    bands = BollingerBands(20, 2.0)

    for i, close in enumerate(closes):
        bands.update(close)
        ours = bands.bands
        assert (ours is None) == bool(np.isnan(upper[i]))
        if ours is not None:
            assert close_enough(ours[0], lower[i])
            assert close_enough(ours[1], middle[i])
            assert close_enough(ours[2], upper[i])
            position = (close - lower[i]) / (upper[i] - lower[i])
            assert bands.value is not None
            assert close_enough(bands.value, position)


def test_engine_indicators_at_bar_closes_equal_talib(warmup_klines: list[Kline]) -> None:
    engine = FeatureEngine("BTCUSDT")
    closes = np.array([k.close for k in warmup_klines])
    _, signal, _ = talib.MACD(closes, 12, 26, 9)
    upper, _, lower = talib.BBANDS(closes, 20, 2.0, 2.0, matype=0)
    rsi_5m = talib.RSI(np.array(five_minute_closes(warmup_klines)), 14)
    checked = 0

    for i, kline in enumerate(warmup_klines):
        engine.add_kline(kline)
        snap = engine.snapshot()
        if not np.isnan(signal[i]):
            assert snap.macd_signal is not None
            assert close_enough(snap.macd_signal, signal[i])
            position = (kline.close - lower[i]) / (upper[i] - lower[i])
            assert snap.bollinger_position is not None
            assert close_enough(snap.bollinger_position, position)
        if (kline.open_time_ms // 60_000) % 5 == 4:  # the 5-minute bar closes with this minute
            theirs = rsi_5m[(kline.open_time_ms - warmup_klines[0].open_time_ms) // 300_000]
            assert (snap.rsi_5m is None) == bool(np.isnan(theirs))
            if snap.rsi_5m is not None:
                assert close_enough(snap.rsi_5m, theirs)
                checked += 1
    assert checked > 50


def test_rsi_of_a_flat_series_is_zero_like_talib() -> None:
    closes = [100.0] * 20
    rsi = Rsi(14)
    for close in closes:
        rsi.update(close)

    assert rsi.value == pytest.approx(float(talib.RSI(np.array(closes), 14)[-1]))
    assert rsi.value == 0.0
