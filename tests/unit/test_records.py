"""The Kinesis record format: the seed's message shape, packing under 1 MiB, typed errors."""

from __future__ import annotations

import orjson
import pytest

from btcpred.events import BestBidAsk, DepthDiff, DepthSnapshot, Trade
from btcpred.records import (
    MAX_RECORD_BYTES,
    RecordFormatError,
    RecordTooLargeError,
    event_to_message,
    message_to_event,
    pack_records,
    unpack_record,
)
from tests.samples import QUOTE, TRADE

DIFF = DepthDiff(
    "BTCUSDT",
    1723161255308000,
    50093239203,
    50093239207,
    -8,
    -8,
    ((5565387000000, 0),),
    ((6183804000000, 32332000), (6186251000000, 0)),
    7,
)


def test_trade_message_has_the_seed_shape() -> None:
    message = event_to_message(TRADE, ingest_ts_ms=1723161254090)

    assert message == {
        "message_type": "trade",
        "symbol": "BTCUSDT",
        "timestamp": 1723161255343000,
        "transact_time": 1723161255342000,
        "trade_id": 3735683259,
        "price": "61837.63000000",
        "quantity": "0.02000000",
        "is_buyer_maker": True,
        "receive_time_ns": 1723161254087896568,
        "ingest_ts": 1723161254090,
        "source": "sbe",
    }


def test_best_bid_ask_message_fields() -> None:
    message = event_to_message(QUOTE, ingest_ts_ms=1)

    assert message["message_type"] == "bestbidask"
    assert (message["bid_price"], message["bid_quantity"]) == ("61837.63000000", "3.78826000")
    assert (message["ask_price"], message["ask_quantity"]) == ("61837.64000000", "1.54698000")


def test_depth_message_fields() -> None:
    message = event_to_message(DIFF, ingest_ts_ms=1)

    assert message["message_type"] == "depth"
    assert (message["first_update_id"], message["final_update_id"]) == (50093239203, 50093239207)
    assert message["bids"] == [["55653.87000000", "0.00000000"]]
    assert message["asks"][0] == ["61838.04000000", "0.32332000"]


@pytest.mark.parametrize("event", [TRADE, QUOTE, DIFF])
def test_single_event_record_is_a_bare_object(event: Trade | BestBidAsk | DepthDiff) -> None:
    (record,) = pack_records([event], ingest_ts_ms=5)

    assert record.partition_key == "BTCUSDT"
    assert isinstance(orjson.loads(record.data), dict)
    assert unpack_record(record.data) == [event]


def test_many_events_share_one_record_as_an_array() -> None:
    events = [TRADE, QUOTE, DIFF] * 100

    records = pack_records(events, ingest_ts_ms=5)

    assert len(records) == 1
    assert records[0].count == 300
    assert unpack_record(records[0].data) == events


def test_records_are_split_by_symbol_and_keep_order() -> None:
    eth = Trade("ETHUSDT", 1, 1, 9, 300000, 1, -2, 0, False)
    events = [TRADE, eth, QUOTE, eth]

    records = {r.partition_key: r for r in pack_records(events, ingest_ts_ms=5)}

    assert unpack_record(records["BTCUSDT"].data) == [TRADE, QUOTE]
    assert unpack_record(records["ETHUSDT"].data) == [eth, eth]


def test_packing_respects_the_limit_including_the_partition_key() -> None:
    events = [TRADE] * 20_000  # ~5 MB of messages

    records = pack_records(events, ingest_ts_ms=5)

    assert len(records) > 1
    assert all(len(r.data) + len(r.partition_key) <= MAX_RECORD_BYTES for r in records)
    assert [e for r in records for e in unpack_record(r.data)] == events


def test_a_record_may_fill_the_limit_exactly() -> None:
    blob = orjson.dumps(event_to_message(TRADE, ingest_ts_ms=5))
    exact = 2 + 3 * len(blob) + 2 + len("BTCUSDT")  # brackets, three messages, two commas

    at_limit = pack_records([TRADE] * 3, ingest_ts_ms=5, max_record_bytes=exact)
    below = pack_records([TRADE] * 3, ingest_ts_ms=5, max_record_bytes=exact - 1)

    assert [r.count for r in at_limit] == [3]
    assert [r.count for r in below] == [2, 1]


def test_one_message_over_the_limit_is_a_typed_error() -> None:
    book = DepthSnapshot("BTCUSDT", 1, 2, -8, -8, ((6183763000000, 1),) * 5000, ())

    with pytest.raises(RecordTooLargeError):
        pack_records([book], ingest_ts_ms=5, max_record_bytes=100_000)


def test_empty_depth_keeps_its_exponents() -> None:
    empty = DepthDiff("BTCUSDT", 1, 2, 3, -2, -5, (), ())

    assert unpack_record(pack_records([empty], ingest_ts_ms=1)[0].data) == [empty]


def test_float_prices_from_other_producers_are_read_exactly() -> None:
    message = event_to_message(TRADE, ingest_ts_ms=1) | {"price": 61837.63, "quantity": 2}

    event = message_to_event(message)

    assert (event.price_mantissa, event.price_exponent) == (6183763, -2)
    assert (event.qty_mantissa, event.qty_exponent) == (2, 0)


def test_quote_with_different_exponents_is_brought_to_one() -> None:
    message = event_to_message(QUOTE, ingest_ts_ms=1) | {
        "bid_price": "61837.6",
        "ask_price": "61837.64",
    }

    event = message_to_event(message)

    assert isinstance(event, BestBidAsk)
    assert (event.bid_price_mantissa, event.ask_price_mantissa, event.price_exponent) == (
        6183760,
        6183764,
        -2,
    )


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"42", "JSON int"),
        (b'{"message_type":"candle","symbol":"BTCUSDT","timestamp":1}', "unknown message_type"),
        (b'{"message_type":"trade","symbol":"BTCUSDT","timestamp":1}', "KeyError"),
        (b'{"message_type":"trade","symbol":"","timestamp":1}', "symbol"),
        (b'{"message_type":"trade","symbol":"BTCUSDT","timestamp":"1"}', "timestamp"),
    ],
)
def test_malformed_records_raise_record_format_error(data: bytes, fragment: str) -> None:
    with pytest.raises(RecordFormatError, match=fragment):
        unpack_record(data)


def test_bad_message_in_an_array_is_named_by_index() -> None:
    good = orjson.dumps(event_to_message(TRADE, ingest_ts_ms=1))
    bad = orjson.dumps(event_to_message(TRADE, ingest_ts_ms=1) | {"price": "12,5"})

    with pytest.raises(RecordFormatError, match="message 1"):
        unpack_record(b"[" + good + b"," + bad + b"]")


def test_depth_level_finer_than_its_exponent_is_rejected() -> None:
    message = event_to_message(DIFF, ingest_ts_ms=1) | {"bids": [["1.123456789", "1"]]}

    with pytest.raises(RecordFormatError):
        message_to_event(message)


def test_a_gap_round_trips_through_a_record_beside_events() -> None:
    from btcpred.events import Gap

    gap = Gap("BTCUSDT", 1_723_161_600_000_000, "trade", 3_735_683_260, 3_735_683_270, "rotation")
    (record,) = pack_records([gap], ingest_ts_ms=1_723_161_600_001)
    assert orjson.loads(record.data) == {
        "message_type": "gap",
        "symbol": "BTCUSDT",
        "timestamp": 1_723_161_600_000_000,
        "stream": "trade",
        "from": 3_735_683_260,
        "to": 3_735_683_270,
        "reason": "rotation",
        "receive_time_ns": 0,
        "ingest_ts": 1_723_161_600_001,
        "source": "sbe",
    }
    assert unpack_record(record.data) == [gap]
    assert gap.size == 11


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("stream", "bestbidask", "unknown gap stream"),
        ("reason", "because", "unknown gap reason"),
        ("from", 9, "empty or negative"),
        ("to", -1, "empty or negative"),
        ("from", "1", "must be an integer"),
    ],
)
def test_a_malformed_gap_is_a_record_format_error(field: str, value: object, needle: str) -> None:
    msg = {
        "message_type": "gap",
        "symbol": "BTCUSDT",
        "timestamp": 1_723_161_600_000_000,
        "stream": "depth",
        "from": 5,
        "to": 8,
        "reason": "sequence",
    }
    msg[field] = value
    if field == "to":
        msg["from"] = 0
    with pytest.raises(RecordFormatError, match=needle):
        unpack_record(orjson.dumps(msg))
