"""The market-history record: the seed's S3 record schema, in Avro, and its two data types.

Every row is the seed's record (``symbol, timestamp, price, volume, bid_price, ask_price,
source, data_type, metadata{collection_time, api_latency_ms}``). What a kline or an aggregate
trade has beyond it goes into optional fields that default to ``null``, so a reader holding
only the seed's schema still reads every object (Avro schema resolution ignores fields the
reader does not know):

============== ====================================== =========================================
field          ``kline_1m`` (one finished 1-minute bar) ``agg_trade`` (one aggregate trade)
============== ====================================== =========================================
timestamp      open time (ms, UTC)                    transaction time (ms, UTC)
price          close                                  price
volume         base volume of the bar                 quantity
bid/ask_price  null (a kline has no book)             null
open/high/low  the bar's                              null
close_time     open time + 59,999                     null
quote_volume   Σ price·qty (12-column sources only)   null
trade_count    trades in the bar (12-column only)     null
trade_id       null                                   the aggregate trade id
first/last_    null                                   the trade ids it covers
trade_id
is_buyer_maker null                                   whether the buyer was the maker
============== ====================================== =========================================

``source`` is ``rest`` or ``dump``; ``metadata.collection_time`` is when the row was fetched or
read (ms), ``metadata.api_latency_ms`` the REST round trip of its page (``null`` for dumps).
"""

from __future__ import annotations

from typing import Any, Final, Literal

from btcpred.aggtrades import AggTrade
from btcpred.klines import Kline

__all__ = [
    "AVRO_SCHEMA",
    "DATA_TYPES",
    "KLINE_1M",
    "AGG_TRADE",
    "DataType",
    "Source",
    "agg_trade_record",
    "kline_from_record",
    "kline_record",
]

DataType = Literal["kline_1m", "agg_trade"]
Source = Literal["rest", "dump"]
KLINE_1M: Final = "kline_1m"
AGG_TRADE: Final = "agg_trade"
DATA_TYPES: Final[tuple[DataType, ...]] = ("kline_1m", "agg_trade")


def _optional(name: str, kind: str) -> dict[str, Any]:
    return {"name": name, "type": ["null", kind], "default": None}


AVRO_SCHEMA: Final[dict[str, Any]] = {
    "type": "record",
    "name": "MarketRecord",
    "namespace": "btcpred.history",
    "doc": "One market-history row: the seed's S3 record plus kline and aggTrade specifics.",
    "fields": [
        {"name": "symbol", "type": "string"},
        {"name": "timestamp", "type": "long", "doc": "ms since the Unix epoch, UTC"},
        {"name": "price", "type": "double"},
        {"name": "volume", "type": "double"},
        _optional("bid_price", "double"),
        _optional("ask_price", "double"),
        {"name": "source", "type": "string"},
        {"name": "data_type", "type": "string"},
        {
            "name": "metadata",
            "type": {
                "type": "record",
                "name": "Metadata",
                "fields": [
                    {"name": "collection_time", "type": "long"},
                    _optional("api_latency_ms", "double"),
                ],
            },
        },
        _optional("open_price", "double"),
        _optional("high_price", "double"),
        _optional("low_price", "double"),
        _optional("close_time", "long"),
        _optional("quote_volume", "double"),
        _optional("trade_count", "long"),
        _optional("trade_id", "long"),
        _optional("first_trade_id", "long"),
        _optional("last_trade_id", "long"),
        _optional("is_buyer_maker", "boolean"),
    ],
}
"""The Avro schema of every history object (timestamps are plain longs in ms: no logical type,
so every reader sees the same integers)."""

_NO_KLINE = {"trade_id": None, "first_trade_id": None, "last_trade_id": None}


def kline_record(
    symbol: str,
    kline: Kline,
    source: Source,
    collection_time_ms: int,
    api_latency_ms: float | None = None,
) -> dict[str, Any]:
    """The history row of one 1-minute bar."""
    return {
        "symbol": symbol,
        "timestamp": kline.open_time_ms,
        "price": kline.close,
        "volume": kline.volume,
        "bid_price": None,
        "ask_price": None,
        "source": source,
        "data_type": KLINE_1M,
        "metadata": {"collection_time": collection_time_ms, "api_latency_ms": api_latency_ms},
        "open_price": kline.open,
        "high_price": kline.high,
        "low_price": kline.low,
        "close_time": kline.close_time_ms,
        "quote_volume": kline.quote_volume,
        "trade_count": kline.trades,
        **_NO_KLINE,
        "is_buyer_maker": None,
    }


def agg_trade_record(
    symbol: str,
    trade: AggTrade,
    source: Source,
    collection_time_ms: int,
    api_latency_ms: float | None = None,
) -> dict[str, Any]:
    """The history row of one aggregate trade."""
    return {
        "symbol": symbol,
        "timestamp": trade.time_ms,
        "price": trade.price,
        "volume": trade.quantity,
        "bid_price": None,
        "ask_price": None,
        "source": source,
        "data_type": AGG_TRADE,
        "metadata": {"collection_time": collection_time_ms, "api_latency_ms": api_latency_ms},
        "open_price": None,
        "high_price": None,
        "low_price": None,
        "close_time": None,
        "quote_volume": None,
        "trade_count": None,
        "trade_id": trade.agg_id,
        "first_trade_id": trade.first_trade_id,
        "last_trade_id": trade.last_trade_id,
        "is_buyer_maker": trade.is_buyer_maker,
    }


def kline_from_record(row: dict[str, Any]) -> Kline:
    """The :class:`~btcpred.klines.Kline` a ``kline_1m`` row holds (the inverse of
    :func:`kline_record`).

    Raises
    ------
    ValueError
        The row is not a kline row or lacks its OHLC fields.
    """
    if row.get("data_type") != KLINE_1M:
        raise ValueError(f"not a kline row: data_type {row.get('data_type')!r}")
    open_, high, low = row.get("open_price"), row.get("high_price"), row.get("low_price")
    if open_ is None or high is None or low is None:
        raise ValueError(f"kline row at {row.get('timestamp')} lacks open/high/low")
    close_time = row.get("close_time")
    return Kline(
        int(row["timestamp"]),
        int(close_time) if close_time is not None else int(row["timestamp"]) + 59_999,
        float(open_),
        float(high),
        float(low),
        float(row["price"]),
        float(row["volume"]),
        None if row.get("quote_volume") is None else float(row["quote_volume"]),
        None if row.get("trade_count") is None else int(row["trade_count"]),
    )
