"""Where history objects go: time chunks and the partitioned key layout.

An object holds the rows of one symbol and data type within one **chunk** of time: a UTC day
for ``kline_1m`` (at most 1,440 bars), a UTC hour for ``agg_trade`` (BTCUSDT trades some
10⁴–10⁵ aggregate trades an hour). Its key::

    {prefix}/symbol={S}/data_type={T}/date={YYYY-MM-DD}/{S}-{T}-{first_ms}-{last_ms}.avro

names the chunk's date (a Hive-style partition path, so Athena or Spark read it as columns)
and the first and last row times it holds. The name is a function of the content's range, so
a rerun over the same data makes the same key and is skipped, and never a second copy; a
chunk fetched again with more rows (a day that was still in progress) gets a different key,
and the loader counts the rows both hold only once (``market_data``'s primary key).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final

from btcpred.history.records import DATA_TYPES, DataType

__all__ = [
    "CHUNK_MS",
    "DEFAULT_PREFIX",
    "Chunk",
    "ObjectKey",
    "chunks",
    "object_key",
    "parse_key",
]

DEFAULT_PREFIX: Final = "market"
_HOUR, _DAY = 3_600_000, 86_400_000
CHUNK_MS: Final[dict[DataType, int]] = {"kline_1m": _DAY, "agg_trade": _HOUR}
_KEY = re.compile(
    r"^(?:(?P<prefix>.+)/)?symbol=(?P<symbol>[A-Z0-9_.-]{1,20})/data_type=(?P<type>[a-z0-9_]+)/"
    r"date=(?P<date>\d{4}-\d{2}-\d{2})/(?P=symbol)-(?P=type)-(?P<first>\d+)-(?P<last>\d+)\.avro$"
)


@dataclass(frozen=True, order=True)
class Chunk:
    """One symbol's rows of one data type in ``[start_ms, end_ms)``."""

    symbol: str
    data_type: DataType
    start_ms: int
    end_ms: int

    @property
    def date(self) -> str:
        """The UTC date the chunk starts on, ``YYYY-MM-DD``."""
        return _date(self.start_ms)

    def label(self) -> str:
        """``BTCUSDT kline_1m 2025-05-20`` or ``BTCUSDT agg_trade 2025-05-20T13``."""
        when = dt.datetime.fromtimestamp(self.start_ms / 1000, dt.UTC)
        stamp = when.strftime("%Y-%m-%d" if self.data_type == "kline_1m" else "%Y-%m-%dT%H")
        return f"{self.symbol} {self.data_type} {stamp}"


@dataclass(frozen=True)
class ObjectKey:
    """A parsed object key."""

    prefix: str
    symbol: str
    data_type: DataType
    date: str
    first_ms: int
    last_ms: int


def _date(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def chunks(symbol: str, data_type: DataType, start_ms: int, end_ms: int) -> list[Chunk]:
    """The chunks covering ``[start_ms, end_ms)``, widened to whole chunks.

    Raises
    ------
    ValueError
        An unknown data type or an empty range.
    """
    if data_type not in CHUNK_MS:
        raise ValueError(f"data type {data_type!r} is not one of {', '.join(DATA_TYPES)}")
    if not 0 <= start_ms < end_ms:
        raise ValueError(f"empty or negative time range {start_ms}..{end_ms}")
    size = CHUNK_MS[data_type]
    first = start_ms - start_ms % size
    return [
        Chunk(symbol, data_type, at, at + size)
        for at in range(first, end_ms, size)  # the last chunk starts before end_ms
    ]


def object_key(
    symbol: str, data_type: DataType, first_ms: int, last_ms: int, prefix: str = DEFAULT_PREFIX
) -> str:
    """The key of an object holding rows timed ``first_ms`` … ``last_ms`` (one chunk).

    Raises
    ------
    ValueError
        The rows span more than one chunk, or ``last_ms < first_ms``.
    """
    size = CHUNK_MS[data_type]
    if last_ms < first_ms or first_ms // size != last_ms // size:
        raise ValueError(f"rows {first_ms}..{last_ms} are not within one {data_type} chunk")
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    chunk_start = first_ms - first_ms % size
    return (
        f"{head}symbol={symbol}/data_type={data_type}/date={_date(chunk_start)}/"
        f"{symbol}-{data_type}-{first_ms}-{last_ms}.avro"
    )


def parse_key(key: str) -> ObjectKey:
    """Parse a key made by :func:`object_key`.

    Raises
    ------
    ValueError
        The key does not follow the layout.
    """
    match = _KEY.match(key)
    if match is None or match["type"] not in CHUNK_MS:
        raise ValueError(f"{key!r} does not follow the history key layout")
    data_type: DataType = "kline_1m" if match["type"] == "kline_1m" else "agg_trade"
    return ObjectKey(
        match["prefix"] or "",
        match["symbol"],
        data_type,
        match["date"],
        int(match["first"]),
        int(match["last"]),
    )
