"""Reading history back out of ``market_data``: the 1-minute klines training uses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from btcpred.klines import Kline

__all__ = ["count_rows", "read_klines"]

_KLINE_QUERY = (
    "SELECT (extract(epoch FROM timestamp) * 1000)::bigint,"
    " (extract(epoch FROM close_time) * 1000)::bigint,"
    " open_price, high_price, low_price, price, volume, quote_volume, trade_count"
    " FROM market_data WHERE symbol = %s AND data_type = 'kline_1m'"
    " AND timestamp >= %s AND timestamp < %s ORDER BY timestamp"
)


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def read_klines(
    conn: Any, symbol: str, start_ms: int, end_ms: int, *, batch: int = 20_000
) -> Iterator[Kline]:
    """The ``kline_1m`` rows of ``symbol`` opened in ``[start_ms, end_ms)``, oldest first, as
    :class:`~btcpred.klines.Kline` (a server-side cursor: the rows are not all held at once)."""
    with conn.cursor(name="btcpred_klines") as cur:
        cur.itersize = batch
        cur.execute(_KLINE_QUERY, (symbol, _utc(start_ms), _utc(end_ms)))
        for row in cur:
            open_ms, close_ms, o, h, low, c, v, quote, trades = row
            yield Kline(
                int(open_ms),
                int(close_ms) if close_ms is not None else int(open_ms) + 59_999,
                o,
                h,
                low,
                c,
                v,
                quote,
                None if trades is None else int(trades),
            )
    conn.rollback()  # end the read-only transaction the cursor ran in


def count_rows(conn: Any, symbol: str | None = None) -> dict[tuple[str, str], int]:
    """Rows in ``market_data`` by (symbol, data type)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT symbol, data_type, count(*) FROM market_data"
            " WHERE %s IS NULL OR symbol = %s GROUP BY 1, 2 ORDER BY 1, 2",
            (symbol, symbol),
        )
        counts = {(s, t): int(n) for s, t, n in cur.fetchall()}
    conn.rollback()
    return counts
