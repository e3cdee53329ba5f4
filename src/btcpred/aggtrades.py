"""Aggregate trades (Binance's ``aggTrades``) and the forms they come in.

An :class:`AggTrade` is one or more trades of one taker order at one price, as Binance reports
them: aggregate id, price, quantity (base currency), the first and last trade ids it covers,
the transaction time in milliseconds since the Unix epoch (UTC) and whether the buyer was the
maker. Two forms are read:

* REST ``GET /api/v3/aggTrades``: ``{"a": 26129, "p": "0.01633102", "q": "4.70443515",
  "f": 27781, "l": 27781, "T": 1498793709153, "m": true, "M": true}``;
* Binance's public dump CSV (``BTCUSDT-aggTrades-2025-05-20.csv``, no header, or a header in
  some newer files): ``aggId,price,qty,firstTradeId,lastTradeId,timestamp,isBuyerMaker,
  isBestMatch``, with microsecond timestamps from 2025-01-01 on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import msgspec

__all__ = ["AggTrade", "agg_trade_from_json", "agg_trade_from_row"]

_MICROSECOND_TIMES = 10**14  # an epoch time above this is in µs (ms reach it in year 5138)
_BOOLS = {"true": True, "false": False, "True": True, "False": False, "1": True, "0": False}


class AggTrade(msgspec.Struct, frozen=True, gc=False):
    """One aggregate trade. Price in quote currency, quantity in base currency."""

    agg_id: int
    price: float
    quantity: float
    first_trade_id: int
    last_trade_id: int
    time_ms: int
    is_buyer_maker: bool


def _check(trade: AggTrade) -> AggTrade:
    if not (math.isfinite(trade.price) and trade.price > 0):
        raise ValueError(f"price {trade.price!r} is not a positive finite number")
    if not (math.isfinite(trade.quantity) and trade.quantity >= 0):
        raise ValueError(f"quantity {trade.quantity!r} is not a non-negative finite number")
    if trade.agg_id < 0 or trade.time_ms < 0:
        raise ValueError("negative aggregate id or time")
    if not 0 <= trade.first_trade_id <= trade.last_trade_id:
        raise ValueError(f"trade ids {trade.first_trade_id}..{trade.last_trade_id} out of order")
    return trade


def _ms(value: object) -> int:
    number = int(str(value))
    return number // 1000 if number >= _MICROSECOND_TIMES else number


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    try:
        return _BOOLS[str(value).strip()]
    except KeyError:
        raise ValueError(f"{value!r} is not a boolean") from None


def agg_trade_from_json(item: Mapping[str, object]) -> AggTrade:
    """Build an :class:`AggTrade` from one REST ``aggTrades`` object.

    Raises
    ------
    ValueError
        A field is missing or malformed.
    """
    try:
        return _check(
            AggTrade(
                int(str(item["a"])),
                float(str(item["p"])),
                float(str(item["q"])),
                int(str(item["f"])),
                int(str(item["l"])),
                _ms(item["T"]),
                _bool(item["m"]),
            )
        )
    except KeyError as exc:
        raise ValueError(f"aggTrade lacks field {exc.args[0]!r}") from None


def agg_trade_from_row(row: Sequence[str]) -> AggTrade:
    """Build an :class:`AggTrade` from one dump CSV row (7 or 8 columns).

    Raises
    ------
    ValueError
        Wrong column count or a malformed field.
    """
    if len(row) not in (7, 8):
        raise ValueError(f"expected 7 or 8 columns, got {len(row)}")
    return _check(
        AggTrade(
            int(row[0]),
            float(row[1]),
            float(row[2]),
            int(row[3]),
            int(row[4]),
            _ms(row[5]),
            _bool(row[6]),
        )
    )
