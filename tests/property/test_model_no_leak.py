"""No sample sees the future: changing anything after a sample's time never changes its features,
and changing anything after ``t + horizon`` never changes its label.

Masks are passed explicitly: which features a *source* provides is a property of the whole
source, decided once, not information about any sample's future.
"""

from __future__ import annotations

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from btcpred.events import Trade
from btcpred.klines import Kline
from btcpred.model.dataset import Dataset, dataset_from_events, dataset_from_klines

KLINE_MASK = ["vwap", "trade_intensity", "bid_ask_spread", "order_book_imbalance"]
STREAM_MASK = [
    *KLINE_MASK,
    *("rsi_5m", "macd_signal", "bollinger_position", "price_change_5m", "volume_avg_1m"),
]
START_MS = 1_754_000_000_000 // 300_000 * 300_000


def _klines(moves: list[int], volumes: list[int]) -> list[Kline]:
    out, price = [], 60_000.0
    for i, (move, volume) in enumerate(zip(moves, volumes, strict=False)):
        open_ = price
        price = max(1.0, price + move / 100)
        out.append(
            Kline(
                open_time_ms=START_MS + i * 60_000,
                close_time_ms=START_MS + i * 60_000 + 59_999,
                open=open_,
                high=max(open_, price) + 1,
                low=min(open_, price) - 1,
                close=price,
                volume=volume / 1000,
                quote_volume=None,
                trades=None,
            )
        )
    return out


def _perturbed_after(klines: list[Kline], after_ms: int, seed: int) -> list[Kline]:
    rng = np.random.default_rng(seed)
    out = []
    for k in klines:
        if k.close_time_ms > after_ms:
            close = k.close * float(rng.uniform(0.9, 1.1))
            k = Kline(
                open_time_ms=k.open_time_ms,
                close_time_ms=k.close_time_ms,
                open=k.open,
                high=max(k.high, close) + 5,
                low=min(k.low, close) - 5,
                close=close,
                volume=k.volume * float(rng.uniform(0.1, 10)),
                quote_volume=None,
                trades=None,
            )
        out.append(k)
    return out


def _sample(data: Dataset, t: int) -> tuple[np.ndarray, float] | None:
    hit = np.nonzero(data.timestamps == t)[0]
    if len(hit) == 0:
        return None
    return data.features[hit[0]], float(data.labels[hit[0]])


@settings(max_examples=25, deadline=None)
@given(
    moves=st.lists(st.integers(-5_000, 5_000), min_size=100, max_size=110),
    volumes=st.lists(st.integers(1, 50_000), min_size=110, max_size=110),
    pick=st.floats(0, 1),
    window=st.sampled_from([1, 5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_kline_samples_never_see_after_their_time(
    moves: list[int], volumes: list[int], pick: float, window: int, seed: int
) -> None:
    klines = _klines(moves, volumes)
    full = dataset_from_klines(klines, source="t", window=window, masked=KLINE_MASK)
    assert len(full) > 0  # the strategies are sized so that every example has samples
    t = int(full.timestamps[int(pick * (len(full) - 1))])
    features, label = _sample(full, t)  # type: ignore[misc]

    after_label = dataset_from_klines(
        _perturbed_after(klines, t + 60_000, seed), source="t", window=window, masked=KLINE_MASK
    )
    after_features = dataset_from_klines(
        _perturbed_after(klines, t, seed), source="t", window=window, masked=KLINE_MASK
    )

    same = _sample(after_label, t)
    assert same is not None
    np.testing.assert_array_equal(same[0], features)
    assert same[1] == label
    moved = _sample(after_features, t)
    assert moved is not None
    np.testing.assert_array_equal(moved[0], features)


def _trades(gaps_ms: list[int], moves: list[int], price_scale: float = 1.0) -> list[Trade]:
    out, t, price = [], START_MS * 1000, 6_000_000
    for i, (gap, move) in enumerate(zip(gaps_ms, moves, strict=False)):
        t += gap * 1000
        price = max(1, price + move)
        out.append(
            Trade(
                symbol="BTCUSDT",
                event_time_us=t,
                transact_time_us=t,
                trade_id=i + 1,
                price_mantissa=int(price * price_scale),
                qty_mantissa=1_000 + i % 7,
                price_exponent=-2,
                qty_exponent=-8,
                is_buyer_maker=False,
                receive_time_ns=t * 1000,
            )
        )
    return out


@settings(max_examples=20, deadline=None)
@given(
    gaps=st.lists(st.integers(600, 1_500), min_size=250, max_size=300),
    moves=st.lists(st.integers(-300, 300), min_size=300, max_size=300),
    pick=st.floats(0, 1),
)
def test_stream_samples_never_see_after_their_time(
    gaps: list[int], moves: list[int], pick: float
) -> None:
    trades = _trades(gaps, moves)
    full = dataset_from_events(trades, source="t", masked=STREAM_MASK)
    assert len(full) > 0  # the strategies are sized so that every example has samples
    t = int(full.timestamps[int(pick * (len(full) - 1))])
    features, label = _sample(full, t)  # type: ignore[misc]
    cut_us = (t + 1) * 1000  # the sample at t covers events up to t's last microsecond

    def changed_after(limit_us: int) -> list[Trade]:
        return [
            tr
            if tr.transact_time_us < limit_us
            else msgspec.structs.replace(
                tr, price_mantissa=tr.price_mantissa * 2, qty_mantissa=tr.qty_mantissa * 3
            )
            for tr in trades
        ]

    same = _sample(
        dataset_from_events(changed_after(cut_us + 60_000_000), source="t", masked=STREAM_MASK), t
    )
    moved = _sample(dataset_from_events(changed_after(cut_us), source="t", masked=STREAM_MASK), t)

    assert same is not None
    assert moved is not None
    np.testing.assert_array_equal(same[0], features)
    assert same[1] == label
    np.testing.assert_array_equal(moved[0], features)
