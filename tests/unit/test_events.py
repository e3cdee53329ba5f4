"""Market events: exact decimals, float and Decimal views, immutability."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from btcpred.events import (
    BestBidAsk,
    DecimalFormatError,
    DepthDiff,
    format_decimal,
    parse_decimal,
    to_decimal,
    to_float,
)
from tests.samples import TRADE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("61837.63000000", (6183763000000, -8)),
        ("0.02000000", (2000000, -8)),
        ("0.00000000", (0, -8)),
        ("-1.5", (-15, -1)),
        ("42", (42, 0)),
        ("5e2", (5, 2)),
        ("1.25E-3", (125, -5)),
    ],
)
def test_parse_decimal_keeps_every_written_digit(text: str, expected: tuple[int, int]) -> None:
    assert parse_decimal(text) == expected


@pytest.mark.parametrize("text", ["", "nan", "inf", "1_000", " 1", "1.2.3", ".5", "0x10", "١٢"])
def test_parse_decimal_rejects_non_decimals(text: str) -> None:
    with pytest.raises(DecimalFormatError):
        parse_decimal(text)


@pytest.mark.parametrize(
    ("mantissa", "exponent", "text"),
    [
        (6183763000000, -8, "61837.63000000"),
        (1, -8, "0.00000001"),
        (-1, -8, "-0.00000001"),
        (0, -8, "0.00000000"),
        (42, 0, "42"),
        (5, 2, "5e2"),
    ],
)
def test_format_decimal_writes_binance_form(mantissa: int, exponent: int, text: str) -> None:
    assert format_decimal(mantissa, exponent) == text


def test_float_views_are_correctly_rounded() -> None:
    assert TRADE.price == 61837.63
    assert TRADE.qty == 0.02
    assert to_float(378826000, -8) == 3.78826
    assert to_float(5, 2) == 500.0


def test_decimal_view_is_exact() -> None:
    assert to_decimal(6183763000000, -8) == Decimal("61837.63")


def test_best_bid_ask_views() -> None:
    quote = BestBidAsk(
        "BTCUSDT", 1, 50093239212, -8, -8, 6183763000000, 378826000, 6183764000000, 154698000
    )

    assert (quote.bid_price, quote.bid_qty) == (61837.63, 3.78826)
    assert (quote.ask_price, quote.ask_qty) == (61837.64, 1.54698)


def test_depth_float_levels() -> None:
    diff = DepthDiff(
        "BTCUSDT", 1, 2, 3, -8, -8, ((5565387000000, 0),), ((6183804000000, 32332000),)
    )

    assert diff.float_bids() == [(55653.87, 0.0)]
    assert diff.float_asks() == [(61838.04, 0.32332)]


def test_events_are_immutable_and_hashable() -> None:
    with pytest.raises(AttributeError):
        TRADE.price_mantissa = 1  # type: ignore[misc]
    assert hash(TRADE) == hash(msgspec.structs.replace(TRADE))


def test_equality_includes_receive_time() -> None:
    assert msgspec.structs.replace(TRADE, receive_time_ns=0) != TRADE
