"""The feature engine against plain reference recomputes, on the recorded capture and klines."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from btcpred.events import BestBidAsk, Event, Trade, to_float
from btcpred.features import (
    FEATURE_NAMES,
    EngineStateError,
    FeatureEngine,
    FeatureSnapshot,
    FeatureSpec,
)
from btcpred.features.batch import snapshots_from_events, snapshots_from_klines
from btcpred.klines import Kline
from btcpred.sources.capture import Capture

REL = 1e-9


@dataclass
class Booked:
    second: int
    price: float
    qty: float


class Reference:
    """The window and quote features recomputed from scratch, the plain way (docs/features.md).

    Every trade is kept; a trade is booked at max(its time, the newest event time before it).
    """

    def __init__(self) -> None:
        self.trades: list[Booked] = []
        self.now_us = -1
        self.quote: tuple[float, float, float, float] | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, Trade):
            self.now_us = max(self.now_us, event.transact_time_us)
            self.trades.append(
                Booked(
                    self.now_us // 1_000_000,
                    to_float(event.price_mantissa, event.price_exponent),
                    to_float(event.qty_mantissa, event.qty_exponent),
                )
            )
        elif isinstance(event, BestBidAsk):
            self.now_us = max(self.now_us, event.event_time_us)
            self.quote = (event.bid_price, event.bid_qty, event.ask_price, event.ask_qty)

    def features(self) -> dict[str, float | None]:
        s, first = self.now_us // 1_000_000, self.trades[0].second
        inside = [t for t in self.trades if s - 60 < t.second <= s]
        last5 = [t for t in self.trades if s - 300 < t.second <= s]
        price = self.trades[-1].price
        out: dict[str, float | None] = {"price": price}
        covered = s - 60 + 1 >= first + 1
        qty = math.fsum(t.qty for t in inside)
        out["volume"] = qty if covered else None
        pq = math.fsum(t.price * t.qty for t in inside)
        out["vwap"] = (pq / qty if qty else price) if covered else None
        out["trade_intensity"] = len(inside) / 60 if covered else None
        out["volume_avg_1m"] = math.fsum(t.qty for t in last5) / 5 if s - 299 >= first + 1 else None
        for name, w in (("price_change_1m", 60), ("price_change_5m", 300)):
            before = [t.price for t in self.trades if t.second <= s - w]
            out[name] = price / before[-1] - 1 if before else None
        if self.quote is not None:
            bid, bid_qty, ask, ask_qty = self.quote
            out["bid_ask_spread"] = (ask - bid) / bid
            out["order_book_imbalance"] = (bid * bid_qty - ask * ask_qty) / (
                bid * bid_qty + ask * ask_qty
            )
        return out


def assert_same(ours: float | None, theirs: float | None, name: str) -> None:
    assert (ours is None) == (theirs is None), name
    if ours is not None and theirs is not None:
        assert math.isclose(ours, theirs, rel_tol=REL, abs_tol=1e-12), (name, ours, theirs)


def stream_events(capture: Capture) -> list[Event]:
    return [e for e in capture.events if isinstance(e, Trade | BestBidAsk)]


def test_window_and_quote_features_equal_a_plain_recompute_on_the_capture(
    capture: Capture,
) -> None:
    engine, reference = FeatureEngine("BTCUSDT"), Reference()
    compared = 0

    for i, event in enumerate(stream_events(capture)):
        engine.on_trade(event) if isinstance(event, Trade) else engine.on_quote(event)
        reference.add(event)
        if i % 997 == 0 and reference.trades:
            snap, expected = engine.snapshot(), reference.features()
            for name, value in expected.items():
                assert_same(getattr(snap, name), value, name)
            compared += 1

    assert compared > 90
    assert engine.snapshot().volume_avg_1m is not None  # the capture is long enough to warm up


def test_capture_minutes_equal_the_matching_klines(
    capture: Capture, warmup_klines: list[Kline]
) -> None:
    trades = [e for e in capture.events if isinstance(e, Trade)]
    first_full_ms = (trades[0].transact_time_us // 60_000_000 + 1) * 60_000
    from_trades = FeatureEngine("BTCUSDT")
    for kline in warmup_klines:
        if kline.open_time_ms < first_full_ms:
            from_trades.add_kline(kline)
    from_klines = FeatureEngine("BTCUSDT")
    by_close = {s.timestamp: s for s in snapshots_from_klines(warmup_klines, from_klines)}
    later = [t for t in trades if t.transact_time_us >= first_full_ms * 1000]

    minutes = list(snapshots_from_events(later, from_trades))

    assert len(minutes) == 10  # 2024-08-08 23:55 .. 2024-08-09 00:04 UTC: the full minutes
    for snap in minutes:
        expected = by_close[snap.timestamp]
        for name in FEATURE_NAMES:
            if name in {"vwap", "trade_intensity"}:  # a 6-column kline has no quote volume/count
                assert getattr(expected, name) is None
                assert getattr(snap, name) is not None
            else:
                assert_same(getattr(snap, name), getattr(expected, name), name)


def test_features_are_not_invented_before_warm_up() -> None:
    engine = FeatureEngine("BTCUSDT")
    engine.add_trade(1_723_161_600_000_000, 1, 61_000.0, 0.5)

    snap = engine.snapshot()

    assert snap.price == 61_000.0
    assert [n for n, warm in snap.warm.items() if warm] == ["price"]
    assert snap.to_document()["rsi_5m"] is None


def test_forming_bar_closes_at_the_last_price(warmup_klines: list[Kline]) -> None:
    engine = FeatureEngine("BTCUSDT")
    for kline in warmup_klines:
        engine.add_kline(kline)
    closed = engine.snapshot()
    t0 = warmup_klines[-1].close_time_ms * 1000 + 1000

    engine.add_trade(t0 + 5_000_000, 1, closed.price * 1.001 if closed.price else 0.0, 0.01)
    forming = engine.snapshot()

    assert forming.macd_signal != closed.macd_signal
    twin = FeatureEngine("BTCUSDT")
    for kline in warmup_klines:
        twin.add_kline(kline)
    last = warmup_klines[-1]
    twin.add_kline(
        Kline(
            last.open_time_ms + 60_000,
            last.close_time_ms + 60_000,
            1.0,
            1e9,
            0.0,
            forming.price or 0.0,
            0.01,
        )
    )
    assert forming.macd_signal == pytest.approx(twin.snapshot().macd_signal, rel=1e-12)


def test_duplicate_trade_ids_are_ignored_and_counted() -> None:
    engine = FeatureEngine("BTCUSDT")
    engine.add_trade(1_000_000, 5, 100.0, 1.0)
    engine.add_trade(2_000_000, 6, 101.0, 1.0)

    applied = [engine.add_trade(2_000_000, 6, 200.0, 1.0), engine.add_trade(1_000_000, 5, 1.0, 1.0)]

    assert applied == [False, False]
    assert engine.duplicates == 2
    assert engine.snapshot().price == 101.0


def test_an_id_behind_the_last_with_a_later_time_restarts_the_ids() -> None:
    engine = FeatureEngine("BTCUSDT")
    engine.add_trade(1_000_000, 10**15, 100.0, 1.0)  # an implausible id got through

    applied = [engine.add_trade(2_000_000 + i, 7 + i, 101.0 + i, 1.0) for i in range(3)]

    assert applied == [True, True, True]
    assert (engine.id_resets, engine.last_trade_id, engine.trades) == (1, 9, 4)
    assert engine.snapshot().price == 103.0


def test_quotes_without_update_id_keep_updating_spread_and_imbalance() -> None:
    engine = FeatureEngine("BTCUSDT")
    seen = []
    for i in range(5):
        engine.add_quote(1_000_000 + i * 1000, None, 100.0, 1.0 + i, 100.01 + i / 100, 1.0)
        snap = engine.snapshot()
        seen.append((snap.bid_ask_spread, snap.order_book_imbalance))

    assert len(set(seen)) == 5
    assert seen[-1][0] == pytest.approx((100.05 - 100.0) / 100.0)


def test_an_older_quote_never_replaces_a_newer_one() -> None:
    engine = FeatureEngine("BTCUSDT")
    engine.add_quote(2_000_000, None, 100.0, 1.0, 100.5, 1.0)

    applied = engine.add_quote(1_000_000, 10**18, 90.0, 1.0, 90.5, 1.0)

    assert not applied
    assert engine.snapshot().bid_ask_spread == pytest.approx(0.005)


def test_snapshot_is_read_only(capture: Capture) -> None:
    events = stream_events(capture)[:3000]
    probed, plain = FeatureEngine("BTCUSDT"), FeatureEngine("BTCUSDT")

    for event in events:
        for engine in (probed, plain):
            engine.on_trade(event) if isinstance(event, Trade) else engine.on_quote(event)
        probed.snapshot(probed.now_us + 400_000_000)  # look far ahead; must change nothing

    assert probed.state() == plain.state()


def test_state_of_another_version_or_spec_is_refused() -> None:
    engine = FeatureEngine("BTCUSDT")
    engine.add_trade(1_000_000, 1, 100.0, 1.0)
    good = engine.state()

    with pytest.raises(EngineStateError, match="not decodable"):
        FeatureEngine.from_state(b"\xc1garbage")
    with pytest.raises(EngineStateError, match="version"):
        FeatureEngine.from_state(b"\x93\x01\xa0\xa0")  # version 1: before quote times
    with pytest.raises(EngineStateError, match="another feature spec"):
        FeatureEngine.from_state(good, FeatureSpec(rsi_period=7))


def test_snapshot_document_round_trips_and_has_the_seed_fields() -> None:
    engine = FeatureEngine("BTCUSDT")
    engine.add_trade(1_723_161_600_000_000, 1, 61_000.0, 0.5)
    engine.add_quote(1_723_161_600_100_000, 9, 61_000.0, 2.0, 61_000.01, 1.0)
    snap = engine.snapshot()

    doc = snap.to_document()

    assert list(doc)[:2] == ["symbol", "timestamp"]
    assert set(FEATURE_NAMES) <= set(doc)
    assert doc["schema_version"] == 1
    assert doc["timestamp"] == 1_723_161_600_100
    assert FeatureSnapshot.from_json(snap.to_json()) == snap
