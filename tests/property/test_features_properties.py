"""Hypothesis: the engine's result depends on the events only, never on how they were cut."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from btcpred.aggregator import Aggregator, DecodedRecord
from btcpred.aggregator.messages import Message, QuoteMessage, TradeMessage
from btcpred.aggregator.store import GroupCommit, StoreTransaction
from btcpred.events import Trade
from btcpred.features import FeatureEngine
from btcpred.features.batch import snapshots_from_events

START_US = 1_723_161_600_000_000


@st.composite
def updates(draw: st.DrawFn, max_size: int = 120) -> list[Message]:
    """Trades and quotes with gaps from 0 to 3 minutes, prices on a random walk."""
    n = draw(st.integers(1, max_size))
    gaps = draw(st.lists(st.integers(0, 180_000_000), min_size=n, max_size=n))
    moves = draw(st.lists(st.integers(-300, 300), min_size=n, max_size=n))
    kinds = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    out: list[Message] = []
    time_us, price, trade_id = START_US, 60_000.0, 0
    for gap, move, is_trade in zip(gaps, moves, kinds, strict=True):
        time_us += gap
        price = max(1.0, price + move / 100)
        if is_trade:
            trade_id += 1
            out.append(TradeMessage("BTCUSDT", time_us, trade_id, price, abs(move) / 1000 + 0.001))
        else:
            out.append(QuoteMessage("BTCUSDT", time_us, price, 1.5, price + 0.01, 2.0, trade_id))
    return out


def apply(engine: FeatureEngine, items: list[Message]) -> None:
    for m in items:
        if isinstance(m, TradeMessage):
            engine.add_trade(m.time_us, m.trade_id, m.price, m.quantity)
        elif isinstance(m, QuoteMessage):
            engine.add_quote(
                m.timestamp, m.update_id, m.bid_price, m.bid_quantity, m.ask_price, m.ask_quantity
            )


def as_trades(items: list[Message]) -> list[Trade]:
    return [
        Trade(
            "BTCUSDT",
            u.time_us,
            u.time_us,
            u.trade_id,
            round(u.price * 100),
            round(u.quantity * 1e8),
            -2,
            -8,
            False,
        )
        for u in items
        if isinstance(u, TradeMessage)
    ]


@settings(max_examples=60, deadline=None)
@given(updates(), st.data())
def test_state_saved_anywhere_continues_identically(
    items: list[Message], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(items)))
    whole = FeatureEngine("BTCUSDT")
    apply(whole, items)
    first = FeatureEngine("BTCUSDT")
    apply(first, items[:cut])

    resumed = FeatureEngine.from_state(first.state())
    apply(resumed, items[cut:])

    assert resumed.state() == whole.state()
    assert resumed.snapshot() == whole.snapshot()


@settings(max_examples=60, deadline=None)
@given(updates(), updates())
def test_reset_equals_a_fresh_engine(before: list[Message], after: list[Message]) -> None:
    used, fresh = FeatureEngine("BTCUSDT"), FeatureEngine("BTCUSDT")
    apply(used, before)

    used.reset()
    apply(used, after)
    apply(fresh, after)

    assert used.state() == fresh.state()
    assert used.snapshot() == fresh.snapshot()


@settings(max_examples=40, deadline=None)
@given(updates(max_size=200))
def test_streaming_snapshots_equal_the_batch_driver_at_bar_closes(items: list[Message]) -> None:
    trades = as_trades(items)
    batch = list(snapshots_from_events(trades, FeatureEngine("BTCUSDT")))
    streaming, engine = [], FeatureEngine("BTCUSDT")
    for trade in trades:
        close_us = (engine.now_us // 60_000_000 + 1) * 60_000_000 - 1
        while engine.now_us >= 0 and trade.transact_time_us > close_us:
            streaming.append(engine.snapshot(close_us))
            close_us += 60_000_000
        engine.on_trade(trade)
        engine.snapshot()  # the aggregator snapshots after every batch; it must not matter

    assert streaming == batch


class MemoryStore:
    """An in-memory FeatureStore (hand-written fake) for batch-splitting properties."""

    def __init__(self) -> None:
        self.states: dict[str, bytes] = {}
        self.sequences: dict[tuple[str, str], int] = {}

    def begin(self, symbol: str, shards: list[str]) -> StoreTransaction:
        store = self

        class Txn:
            state: bytes | None = store.states.get(symbol)
            checkpoints: dict[str, int | None] = {
                s: store.sequences.get((symbol, s)) for s in shards
            }

            def commit(self, commit: GroupCommit) -> None:
                if commit.state is not None:
                    store.states[symbol] = commit.state
                for shard, sequence in commit.checkpoints.items():
                    store.sequences[(symbol, shard)] = sequence

            def abort(self) -> None:
                pass

        return Txn()


@settings(max_examples=40, deadline=None)
@given(updates(), st.data())
def test_split_and_redelivered_batches_equal_one_batch(
    items: list[Message], data: st.DataObject
) -> None:
    records = [DecodedRecord("shard-0", 100 + i, "BTCUSDT", [u]) for i, u in enumerate(items)]
    one = MemoryStore()
    Aggregator(one).apply(records)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(records)), max_size=4)))
    split = MemoryStore()
    start = 0
    for cut in [*cuts, len(records)]:
        overlap = data.draw(st.integers(0, start))  # redeliver part of what came before
        Aggregator(split).apply(records[start - overlap : cut])
        start = max(start, cut)

    assert split.states == one.states
    assert split.sequences == one.sequences
