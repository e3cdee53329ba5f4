"""The aggregator's record decoder: exact floats from decimal strings, poison detected."""

from __future__ import annotations

import pytest

from btcpred.aggregator.messages import (
    DepthMessage,
    QuoteMessage,
    TradeMessage,
    decode_record,
)
from btcpred.events import BestBidAsk, DepthDiff, DepthSnapshot, Trade
from btcpred.records import RecordFormatError, pack_records
from btcpred.sources.capture import Capture


def test_every_capture_number_decodes_to_the_correctly_rounded_float(capture: Capture) -> None:
    stream = [e for e in capture.events if not isinstance(e, DepthSnapshot)]
    records = pack_records(stream, ingest_ts_ms=0, max_record_bytes=256 * 1024)

    decoded = [m for record in records for m in decode_record(record.data)]

    assert len(decoded) == len(stream)
    for message, event in zip(decoded, stream, strict=True):
        if isinstance(event, Trade):
            assert isinstance(message, TradeMessage)
            assert (message.price, message.quantity) == (event.price, event.qty)
            assert message.time_us == event.transact_time_us
        elif isinstance(event, BestBidAsk):
            assert isinstance(message, QuoteMessage)
            assert (message.bid_price, message.bid_quantity) == (event.bid_price, event.bid_qty)
            assert (message.ask_price, message.ask_quantity) == (event.ask_price, event.ask_qty)
        else:
            assert isinstance(event, DepthDiff)
            assert isinstance(message, DepthMessage)


TRADE = (
    b'{"message_type":"trade","symbol":"BTCUSDT","timestamp":1723161600000000,"trade_id":2,'
    b'"price":%s,"quantity":"0.5"}'
)


@pytest.mark.parametrize(
    "price", [b'"nan"', b'"inf"', b'"-1"', b'"0"', b'"1e400"', b'"abc"', b"true"]
)
def test_out_of_range_or_non_numeric_prices_are_poison(price: bytes) -> None:
    with pytest.raises(RecordFormatError, match=r"\$\.price"):
        decode_record(TRADE % price)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00garbage",
        b'{"message_type":"kline","symbol":"BTCUSDT","timestamp":1}',
        b'{"message_type":"trade","symbol":"BTCUSDT"}',
        b"[1, 2]",
        b'"trade"',
    ],
)
def test_undecodable_records_are_poison(data: bytes) -> None:
    with pytest.raises(RecordFormatError):
        decode_record(data)


def test_a_bare_message_and_an_array_both_decode() -> None:
    single = decode_record(TRADE % b'"61837.63"')
    array = decode_record(b"[" + TRADE % b'"61837.63"' + b"," + TRADE % b"61837.63" + b"]")

    assert single == [TradeMessage("BTCUSDT", 1_723_161_600_000_000, 2, 61837.63, 0.5)]
    assert array == single * 2
