"""Property tests: the SBE encoder and decoder are inverse over the whole value space.

Symbols are 1-255 UTF-8 bytes (non-ASCII included), ids, times and mantissas cover the full
int64 range, exponents the full int8 range, depth messages carry 0-50 levels per side and trade
frames 0-20 trades.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from btcpred.events import BestBidAsk, DepthDiff, DepthSnapshot, Event, Trade
from btcpred.sbe import (
    decode,
    encode_best_bid_ask,
    encode_depth_diff,
    encode_depth_snapshot,
    encode_event,
    encode_events,
    encode_trades,
)

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
I8 = st.integers(min_value=-128, max_value=127)
RECEIVE_NS = st.integers(min_value=0, max_value=2**64 - 1)


def _fit_255_bytes(text: str) -> str:
    """Cut ``text`` to at most 255 UTF-8 bytes on a character boundary."""
    return text.encode("utf-8")[:255].decode("utf-8", errors="ignore")


# Non-empty text cut to 255 bytes stays non-empty (one character is at most 4 bytes).
SYMBOLS = st.one_of(
    st.sampled_from(["BTCUSDT", "ETHBTC", "\u00e9" * 127 + "B", "\U0001f680" * 63 + "abc"]),
    st.text(min_size=1, max_size=255).map(_fit_255_bytes),
    st.text(
        alphabet=st.characters(codec="utf-8", min_codepoint=0x80), min_size=64, max_size=255
    ).map(_fit_255_bytes),
)
LEVEL = st.tuples(I64, I64)
# Hypothesis favours short lists: the second branch makes the maximum sizes common too.
LEVELS = st.one_of(st.lists(LEVEL, max_size=50), st.lists(LEVEL, min_size=45, max_size=50)).map(
    tuple
)
TRADE_ENTRY = st.tuples(I64, I64, I64, st.booleans())
TRADE_ENTRIES = st.one_of(
    st.lists(TRADE_ENTRY, max_size=20), st.lists(TRADE_ENTRY, min_size=18, max_size=20)
)


def _symbol_bytes(symbol: str) -> int:
    return len(symbol.encode("utf-8"))


@given(SYMBOLS)
def test_symbol_strategy_stays_within_1_to_255_bytes(symbol: str) -> None:
    # Assert
    assert 1 <= _symbol_bytes(symbol) <= 255


@given(SYMBOLS, I64, I64, I8, I8, TRADE_ENTRIES)
def test_trades_round_trip(
    symbol: str,
    event_time: int,
    transact_time: int,
    price_exp: int,
    qty_exp: int,
    entries: list[tuple[int, int, int, bool]],
) -> None:
    # Arrange
    expected = [
        Trade(symbol, event_time, transact_time, tid, p, q, price_exp, qty_exp, maker)
        for tid, p, q, maker in entries
    ]

    # Act
    frame = encode_trades(symbol, event_time, transact_time, price_exp, qty_exp, entries)

    # Assert
    assert decode(frame) == expected


@given(SYMBOLS, I64, I64, I8, I8, LEVEL, LEVEL)
def test_best_bid_ask_round_trip(
    symbol: str,
    event_time: int,
    update_id: int,
    price_exp: int,
    qty_exp: int,
    bid: tuple[int, int],
    ask: tuple[int, int],
) -> None:
    # Arrange
    expected = BestBidAsk(
        symbol, event_time, update_id, price_exp, qty_exp, bid[0], bid[1], ask[0], ask[1]
    )

    # Act
    frame = encode_best_bid_ask(symbol, event_time, update_id, price_exp, qty_exp, bid, ask)

    # Assert
    assert decode(frame) == [expected]


@given(SYMBOLS, I64, I64, I8, I8, LEVELS, LEVELS)
def test_depth_snapshot_round_trip(
    symbol: str,
    event_time: int,
    update_id: int,
    price_exp: int,
    qty_exp: int,
    bids: tuple[tuple[int, int], ...],
    asks: tuple[tuple[int, int], ...],
) -> None:
    # Arrange
    expected = DepthSnapshot(symbol, event_time, update_id, price_exp, qty_exp, bids, asks)

    # Act
    frame = encode_depth_snapshot(symbol, event_time, update_id, price_exp, qty_exp, bids, asks)

    # Assert
    assert decode(frame) == [expected]


@given(SYMBOLS, I64, I64, I64, I8, I8, LEVELS, LEVELS)
def test_depth_diff_round_trip(
    symbol: str,
    event_time: int,
    first_id: int,
    last_id: int,
    price_exp: int,
    qty_exp: int,
    bids: tuple[tuple[int, int], ...],
    asks: tuple[tuple[int, int], ...],
) -> None:
    # Arrange
    expected = DepthDiff(symbol, event_time, first_id, last_id, price_exp, qty_exp, bids, asks)

    # Act
    frame = encode_depth_diff(symbol, event_time, first_id, last_id, price_exp, qty_exp, bids, asks)

    # Assert
    assert decode(frame) == [expected]


# ------------------------------------------------------------------ event sequences

TradeKey = tuple[str, int, int, int, int]
TRADE_KEYS = st.tuples(SYMBOLS, I64, I64, I8, I8)


def _trades_for(keys: list[TradeKey]) -> st.SearchStrategy[Trade]:
    """Trades drawn from a few (symbol, times, exponents) keys so that runs share a frame."""
    return st.builds(
        lambda key, entry: Trade(key[0], key[1], key[2], entry[0], entry[1], entry[2], key[3],
                                 key[4], entry[3]),
        st.sampled_from(keys),
        TRADE_ENTRY,
    )  # fmt: skip


BEST_BID_ASKS = st.builds(BestBidAsk, SYMBOLS, I64, I64, I8, I8, I64, I64, I64, I64)
DEPTH_DIFFS = st.builds(DepthDiff, SYMBOLS, I64, I64, I64, I8, I8, LEVELS, LEVELS)
DEPTH_SNAPSHOTS = st.builds(DepthSnapshot, SYMBOLS, I64, I64, I8, I8, LEVELS, LEVELS)


@st.composite
def event_sequences(draw: st.DrawFn) -> list[Event]:
    keys = draw(st.lists(TRADE_KEYS, min_size=1, max_size=3))
    trades = _trades_for(keys)
    one_event = st.one_of(trades, trades, BEST_BID_ASKS, DEPTH_DIFFS, DEPTH_SNAPSHOTS)
    return draw(st.lists(one_event, max_size=40))


ANY_EVENT = st.one_of(
    TRADE_KEYS.flatmap(lambda key: _trades_for([key])), BEST_BID_ASKS, DEPTH_DIFFS, DEPTH_SNAPSHOTS
)


@settings(max_examples=200)
@given(event_sequences())
def test_encode_events_then_decode_in_order_gives_the_events_back(events: list[Event]) -> None:
    # Act
    frames = encode_events(events)
    decoded = [event for frame in frames for event in decode(frame)]

    # Assert
    assert decoded == events


@given(event_sequences())
def test_encode_events_packs_each_run_of_matching_trades_into_one_frame(
    events: list[Event],
) -> None:
    # Arrange: a new frame starts at every non-trade and wherever the trade key changes
    expected_frames = 0
    previous: TradeKey | None = None
    for event in events:
        if isinstance(event, Trade):
            key = (
                event.symbol,
                event.event_time_us,
                event.transact_time_us,
                event.price_exponent,
                event.qty_exponent,
            )
            expected_frames += key != previous
            previous = key
        else:
            expected_frames += 1
            previous = None

    # Act
    frames = encode_events(events)

    # Assert
    assert len(frames) == expected_frames


@given(ANY_EVENT)
def test_encode_event_round_trips_one_event(event: Event) -> None:
    # Act
    decoded = decode(encode_event(event))

    # Assert
    assert decoded == [event]


@given(ANY_EVENT, RECEIVE_NS)
def test_decode_stamps_the_receive_time(event: Event, receive: int) -> None:
    # Act
    decoded = decode(encode_event(event), receive_time_ns=receive)

    # Assert
    assert [e.receive_time_ns for e in decoded] == [receive]


@given(SYMBOLS, I64, I64, TRADE_ENTRIES, RECEIVE_NS)
def test_decode_stamps_the_receive_time_on_every_trade_of_a_frame(
    symbol: str,
    event_time: int,
    transact_time: int,
    entries: list[tuple[int, int, int, bool]],
    receive: int,
) -> None:
    # Arrange
    frame = encode_trades(symbol, event_time, transact_time, -8, -8, entries)

    # Act
    decoded = decode(frame, receive_time_ns=receive)

    # Assert
    assert [event.receive_time_ns for event in decoded] == [receive] * len(entries)
