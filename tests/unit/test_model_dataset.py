"""The dataset builder: labels, masks, drops and windows, checked against the raw inputs."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from btcpred.events import BestBidAsk, Trade
from btcpred.features import FEATURE_NAMES, FeatureEngine
from btcpred.features.batch import snapshots_from_klines
from btcpred.klines import Kline
from btcpred.model.dataset import (
    DatasetError,
    build_dataset,
    dataset_from_events,
    dataset_from_klines,
)
from btcpred.sources.capture import Capture

KLINE_MASK = ("vwap", "trade_intensity", "bid_ask_spread", "order_book_imbalance")


def test_label_is_the_log_return_to_the_next_close(warmup_klines: list[Kline]) -> None:
    closes = {k.close_time_ms: k.close for k in warmup_klines}

    data = dataset_from_klines(warmup_klines, source="fixture")

    assert len(data) > 200
    for t, price, label in zip(data.timestamps, data.prices, data.labels, strict=True):
        assert price == closes[int(t)]
        assert label == pytest.approx(math.log(closes[int(t) + 60_000] / closes[int(t)]), abs=1e-15)


def test_six_column_klines_mask_what_they_cannot_provide(warmup_klines: list[Kline]) -> None:
    data = dataset_from_klines(warmup_klines, source="fixture")

    assert data.masked == KLINE_MASK
    masked_cols = [FEATURE_NAMES.index(n) for n in KLINE_MASK]
    assert np.isnan(data.features[:, :, masked_cols]).all()
    assert not np.isnan(np.delete(data.features, masked_cols, axis=2)).any()


def test_twelve_column_klines_unmask_vwap_and_trade_intensity(warmup_klines: list[Kline]) -> None:
    full = [
        msgspec.structs.replace(k, quote_volume=k.volume * (k.high + k.low) / 2, trades=120)
        for k in warmup_klines
    ]

    data = dataset_from_klines(full, source="fixture")

    assert data.masked == ("bid_ask_spread", "order_book_imbalance")


def test_warm_up_and_the_last_bar_are_dropped_and_counted(warmup_klines: list[Kline]) -> None:
    data = dataset_from_klines(warmup_klines, source="fixture")

    assert data.drops.no_label == 1  # the last bar has no next close
    assert data.drops.not_warm > 0  # MACD/RSI need history first
    assert len(data) + data.drops.not_warm + data.drops.no_label == len(warmup_klines)


def test_a_gap_drops_the_sample_instead_of_mislabelling_it(warmup_klines: list[Kline]) -> None:
    gap_at = 300
    klines = warmup_klines[:gap_at] + warmup_klines[gap_at + 1 :]
    before_gap = warmup_klines[gap_at - 1].close_time_ms

    data = dataset_from_klines(klines, source="fixture")

    assert before_gap not in set(data.timestamps.tolist())
    assert data.drops.no_label == 2


def test_sequence_window_holds_the_five_points_up_to_t(warmup_klines: list[Kline]) -> None:
    snaps = {s.timestamp: s for s in snapshots_from_klines(warmup_klines, FeatureEngine("BTCUSDT"))}

    data = dataset_from_klines(warmup_klines, source="fixture", window=5)

    assert data.features.shape[1:] == (5, 12)
    t = int(data.timestamps[10])
    for k in range(5):
        expect = snaps[t - (4 - k) * 60_000].values()
        got = data.features[10, k]
        for name, e, g in zip(FEATURE_NAMES, expect, got, strict=True):
            assert (name in KLINE_MASK and math.isnan(g)) or g == e


def test_recorded_stream_gives_a_sample_per_second_labelled_60_s_later(capture: Capture) -> None:
    masked = ("rsi_5m", "macd_signal", "bollinger_position", "price_change_5m", "volume_avg_1m")
    events = [e for e in capture.events if isinstance(e, Trade | BestBidAsk)]

    data = dataset_from_events(events, source="capture", masked=masked)

    assert len(data) > 400
    assert set(np.diff(data.timestamps).tolist()) <= {1000, 2000, 3000}
    by_time = dict(zip(data.timestamps.tolist(), data.prices.tolist(), strict=True))
    for t, future in zip(data.timestamps.tolist(), data.future_prices.tolist(), strict=True):
        if t + 60_000 in by_time:
            assert future == by_time[t + 60_000]


def test_unusable_input_is_a_typed_error(warmup_klines: list[Kline]) -> None:
    with pytest.raises(DatasetError, match="no feature points"):
        dataset_from_klines([], source="empty")
    with pytest.raises(DatasetError, match="unknown masked"):
        dataset_from_klines(warmup_klines, source="x", masked=["colour"])
    with pytest.raises(DatasetError, match="price cannot be masked"):
        dataset_from_klines(warmup_klines, source="x", masked=["price"])
    snaps = list(snapshots_from_klines(warmup_klines[:3], FeatureEngine("BTCUSDT")))
    with pytest.raises(DatasetError, match="out of order"):
        build_dataset(reversed(snaps), source="x")
