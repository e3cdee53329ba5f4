"""Shared pieces of the history tests: objects of real klines and capture-derived aggregate
trades, and a psycopg2 connection whose search path is a fresh schema."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2

from btcpred.aggtrades import AggTrade
from btcpred.bench.loader import agg_trades_from_trades
from btcpred.events import Trade
from btcpred.history.avro import encode
from btcpred.history.layout import object_key
from btcpred.history.records import agg_trade_record, kline_record
from btcpred.klines import Kline


def kline_objects(klines: Sequence[Kline], symbol: str = "BTCUSDT") -> list[tuple[str, bytes]]:
    """(key, Avro bytes) per UTC day of ``klines``, as the backfill writes them."""
    days: dict[int, list[dict[str, Any]]] = {}
    for k in klines:
        days.setdefault(k.open_time_ms // 86_400_000, []).append(
            kline_record(symbol, k, "dump", 1_700_000_000_000)
        )
    return [
        (object_key(symbol, "kline_1m", rows[0]["timestamp"], rows[-1]["timestamp"]), encode(rows))
        for rows in days.values()
    ]


def agg_trades_from(trades: Sequence[Trade]) -> list[AggTrade]:
    """The capture's trades as Binance's ``aggTrades`` (the bench's aggregation, one place)."""
    return agg_trades_from_trades(trades)


def agg_trade_objects(
    trades: Sequence[AggTrade], symbol: str = "BTCUSDT"
) -> list[tuple[str, bytes]]:
    """(key, Avro bytes) per UTC hour of ``trades``."""
    hours: dict[int, list[dict[str, Any]]] = {}
    for t in trades:
        hours.setdefault(t.time_ms // 3_600_000, []).append(
            agg_trade_record(symbol, t, "rest", 1_700_000_000_000, 12.5)
        )
    return [
        (object_key(symbol, "agg_trade", rows[0]["timestamp"], rows[-1]["timestamp"]), encode(rows))
        for rows in hours.values()
    ]


@contextmanager
def fresh_schema(database_url: str) -> Iterator[str]:
    """A new schema; yields a libpq URL whose connections use it (``search_path``)."""
    schema = f"hist_{secrets.token_hex(5)}"
    admin = psycopg2.connect(database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in database_url else "?"
    try:
        yield f"{database_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()
