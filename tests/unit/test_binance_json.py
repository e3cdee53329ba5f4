"""Binance JSON messages become the same typed events as the SBE frames carry."""

from __future__ import annotations

import pytest

from btcpred.events import BestBidAsk, DepthDiff, DepthSnapshot, Trade
from btcpred.sources.binance_json import MessageError, parse_message
from tests.samples import TRADE, TRADE_RECEIVED_NS

# Recorded messages from the capture in fixtures/binance.
TRADE_MSG = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",'
    b'"t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}'
)
BOOK_TICKER_MSG = (
    b'{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000",'
    b'"a":"61837.64000000","A":"1.54698000"}'
)
DEPTH_MSG = (
    b'{"e":"depthUpdate","E":1723161255308,"s":"BTCUSDT","U":50093239203,"u":50093239207,'
    b'"b":[["55653.87000000","0.00000000"]],"a":[["61838.04000000","0.32332000"],'
    b'["61844.30000000","0.40163000"]]}'
)
SNAPSHOT_MSG = (
    b'{"lastUpdateId":50093239218,"bids":[["61837.63000000","3.78826000"]],'
    b'"asks":[["61837.64000000","1.54698000"]]}'
)
RECV = TRADE_RECEIVED_NS


def test_trade_in_combined_stream_envelope() -> None:
    event = parse_message(TRADE_MSG, RECV)

    assert event == TRADE


def test_book_ticker_event_time_is_receive_time_plus_clock_offset() -> None:
    event = parse_message(BOOK_TICKER_MSG, RECV, clock_offset_us=1_273_000)

    assert event == BestBidAsk(
        "BTCUSDT",
        RECV // 1000 + 1_273_000,
        50093239212,
        -8,
        -8,
        6183763000000,
        378826000,
        6183764000000,
        154698000,
        RECV,
    )


def test_depth_update() -> None:
    event = parse_message(DEPTH_MSG, RECV)

    assert event == DepthDiff(
        "BTCUSDT",
        1723161255308000,
        50093239203,
        50093239207,
        -8,
        -8,
        ((5565387000000, 0),),
        ((6183804000000, 32332000), (6184430000000, 40163000)),
        RECV,
    )


def test_rest_snapshot_needs_and_takes_the_symbol() -> None:
    event = parse_message(SNAPSHOT_MSG, RECV, symbol="BTCUSDT")

    assert isinstance(event, DepthSnapshot)
    assert (event.symbol, event.last_update_id) == ("BTCUSDT", 50093239218)
    assert event.bids == ((6183763000000, 378826000),)
    with pytest.raises(MessageError, match="symbol"):
        parse_message(SNAPSHOT_MSG, RECV)


def test_microsecond_streams() -> None:
    raw = TRADE_MSG.replace(b'"E":1723161255343', b'"E":1723161255343123')

    event = parse_message(
        raw.replace(b'"T":1723161255342', b'"T":1723161255342999'), time_unit_us=1
    )

    assert isinstance(event, Trade)
    assert (event.event_time_us, event.transact_time_us) == (1723161255343123, 1723161255342999)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{", "invalid JSON"),
        (b"[1,2]", "not an object"),
        (b'{"e":"kline","E":1}', "unknown message kind"),
        (TRADE_MSG.replace(b'"p":"61837.63000000"', b'"p":61837.63'), "malformed trade"),
        (TRADE_MSG.replace(b'"m":true', b'"m":"yes"'), "malformed trade"),
        (TRADE_MSG.replace(b'"t":3735683259,', b""), "malformed trade"),
        (TRADE_MSG.replace(b'"s":"BTCUSDT"', b'"s":7'), "malformed trade"),
        (
            DEPTH_MSG.replace(b'["55653.87000000","0.00000000"]', b'["55653.87000000"]'),
            "malformed depthUpdate",
        ),
        (BOOK_TICKER_MSG.replace(b'"3.78826000"', b'"3.7e"'), "malformed"),
    ],
)
def test_malformed_messages_raise_message_error(raw: bytes, fragment: str) -> None:
    with pytest.raises(MessageError, match=fragment):
        parse_message(raw)


def test_prices_with_different_exponents_are_brought_to_the_finer_one() -> None:
    raw = BOOK_TICKER_MSG.replace(b'"b":"61837.63000000"', b'"b":"61837.6"')

    event = parse_message(raw, RECV)

    assert isinstance(event, BestBidAsk)
    assert (event.bid_price_mantissa, event.ask_price_mantissa, event.price_exponent) == (
        6183760000000,
        6183764000000,
        -8,
    )
