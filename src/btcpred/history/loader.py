"""Loading one history object into PostgreSQL ``market_data``, exactly once.

:func:`load_object` checks the whole object before it writes anything: the container's framing
(:func:`btcpred.history.avro.scan`), the writer's schema against the history schema, every
row's values, and, when the key follows the layout, that the rows are those the key names.
A bad object raises :class:`ObjectRejected` with nothing written.

Then, in one transaction:

1. transaction-level advisory locks on every chunk (symbol, data type, UTC day or hour) the
   rows fall in, in order: loads that could touch the same rows run one after the other, and
   loads of other chunks in parallel;
2. ``history_objects`` is consulted: an object recorded there was loaded before (a redelivered
   event, a retried invocation, the loser of a race) and is skipped, writing nothing;
3. the rows are streamed into ``market_data`` with ``COPY`` (CSV made by polars, in slices, on
   a thread while PostgreSQL takes the previous slice);
4. the object is recorded in ``history_objects`` with its symbol, data type and time span, and
   the transaction commits.

``market_data`` has no unique index (it cost 40 % of the loading rate), so uniqueness is this
protocol's: an object whose span overlaps an object already loaded for the same symbol and
data type (a day fetched again after it completed, under a new name) is copied into a
temporary table first and only the rows ``market_data`` does not hold yet, by (timestamp,
trade id), are inserted; the rest are counted as duplicates. Every writer of ``market_data``
must go through :func:`load_object`. The monthly partitions the rows need are created first,
in their own transaction.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from queue import Queue
from typing import Any, Final

import polars as pl

from btcpred.history.avro import Container, ObjectFormatError, scan
from btcpred.history.layout import CHUNK_MS, parse_key
from btcpred.history.migrations import (
    Connection,
    ensure_partitions,
    month_partitions,
    partition_name,
)
from btcpred.history.records import AVRO_SCHEMA, DATA_TYPES

__all__ = ["COLUMNS", "LoadResult", "ObjectChangedError", "ObjectRejected", "load_object"]

COLUMNS: Final = (
    "symbol",
    "timestamp",
    "price",
    "volume",
    "bid_price",
    "ask_price",
    "source",
    "data_type",
    "collection_time",
    "api_latency_ms",
    "open_price",
    "high_price",
    "low_price",
    "close_time",
    "quote_volume",
    "trade_count",
    "trade_id",
    "first_trade_id",
    "last_trade_id",
    "is_buyer_maker",
)
"""``market_data``'s columns the loader writes, in ``COPY`` order (``row_id`` is generated)."""

_REQUIRED: Final = ("symbol", "timestamp", "price", "volume", "source", "data_type")
_TIMES: Final = ("timestamp", "collection_time", "close_time")
_MAX_MS: Final = 2**53
_SLICE_ROWS: Final = 65_536


class ObjectRejected(ValueError):
    """The object is not a valid history object; nothing was written. Retrying cannot help."""


class ObjectChangedError(ObjectRejected):
    """An object of this key was loaded before with a different ETag (objects are immutable)."""


@dataclass(frozen=True)
class LoadResult:
    """What one :func:`load_object` call did."""

    bucket: str
    key: str
    rows: int
    """Rows in the object."""
    inserted: int
    """Rows written to ``market_data`` (0 when skipped)."""
    duplicates: int
    """Rows ``market_data`` already held (from another object)."""
    skipped: bool
    """The object was loaded before: nothing written."""
    partitions_created: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _expected_types() -> dict[str, Any]:
    types: dict[str, Any] = {}
    for item in AVRO_SCHEMA["fields"]:
        if item["name"] == "metadata":
            for sub in item["type"]["fields"]:
                types[sub["name"]] = sub["type"]
        else:
            types[item["name"]] = item["type"]
    return types


_EXPECTED: Final = _expected_types()


def _base(kind: Any) -> str | None:
    """``"double"`` for ``"double"`` or ``["null", "double"]``; ``None`` for anything else."""
    if isinstance(kind, str):
        return kind
    if isinstance(kind, dict) and isinstance(kind.get("type"), str):
        return str(kind["type"]) if "logicalType" not in kind else None
    if isinstance(kind, list):
        rest = [k for k in kind if k != "null"]
        return _base(rest[0]) if len(rest) == 1 else None
    return None


def _check_schema(container: Container) -> None:
    writer: dict[Any, Any] = {}
    for item in container.schema.get("fields", []):
        if not isinstance(item, dict):
            continue
        if item.get("name") == "metadata" and isinstance(item.get("type"), dict):
            for sub in item["type"].get("fields", []):
                writer[sub.get("name")] = sub.get("type")
        else:
            writer[item.get("name")] = item.get("type")
    for name in (*_REQUIRED, "collection_time"):
        if name not in writer:
            raise ObjectRejected(f"the writer's schema has no field {name!r}")
    for name, kind in writer.items():
        if name in _EXPECTED and _base(kind) != _base(_EXPECTED[name]):
            raise ObjectRejected(
                f"field {name!r} is {kind!r} in the writer's schema, not {_EXPECTED[name]!r}"
            )


def _frame(data: bytes, container: Container) -> pl.DataFrame:
    try:
        df = pl.read_avro(io.BytesIO(data))
    except Exception as exc:  # polars raises several types for corrupt input
        raise ObjectRejected(f"cannot decode the rows: {exc}") from None
    if df.height != container.rows:
        raise ObjectRejected(f"decoded {df.height} rows, the container holds {container.rows}")
    if "metadata" in df.columns:
        df = df.unnest("metadata")
    for name in COLUMNS:
        if name not in df.columns:
            df = df.with_columns(pl.lit(None).alias(name))
    return df.select(COLUMNS).cast(
        {
            **dict.fromkeys(("symbol", "source", "data_type"), pl.String),
            **dict.fromkeys(_TIMES, pl.Int64),
            **dict.fromkeys(("trade_count", "trade_id", "first_trade_id"), pl.Int64),
            "last_trade_id": pl.Int64,
            "is_buyer_maker": pl.Boolean,
            **dict.fromkeys(
                (
                    "price",
                    "volume",
                    "bid_price",
                    "ask_price",
                    "api_latency_ms",
                    "open_price",
                    "high_price",
                    "low_price",
                    "quote_volume",
                ),
                pl.Float64,
            ),
        }
    )


def _validate(df: pl.DataFrame, key: str) -> None:
    c = pl.col
    rules: list[tuple[str, pl.Expr]] = [
        ("a required field is null", pl.all_horizontal(c(n).is_not_null() for n in _REQUIRED)),
        ("collection_time is null", c("collection_time").is_not_null()),
        (f"data_type is not one of {', '.join(DATA_TYPES)}", c("data_type").is_in(DATA_TYPES)),
        ("price is not a positive finite number", c("price").is_finite() & (c("price") > 0)),
        ("volume is negative or not finite", c("volume").is_finite() & (c("volume") >= 0)),
        ("timestamp is out of range", c("timestamp").is_between(0, _MAX_MS)),
        (
            "an agg_trade row has no trade_id",
            (c("data_type") != "agg_trade") | c("trade_id").is_not_null(),
        ),
        (
            "a kline_1m row lacks open/high/low",
            (c("data_type") != "kline_1m")
            | pl.all_horizontal(
                c(n).is_not_null() for n in ("open_price", "high_price", "low_price")
            ),
        ),
    ]
    rules.append(
        (
            "the same row (timestamp, trade_id) twice",
            ~pl.struct("timestamp", "trade_id").is_duplicated(),
        )
    )
    # one pass: the first failing row of every rule (null: none fails)
    firsts = df.select(
        pl.arg_where(~rule.fill_null(False)).first().alias(str(i))
        for i, (_, rule) in enumerate(rules)
    ).row(0)
    for (reason, _), row in zip(rules, firsts, strict=True):
        if row is not None:
            raise ObjectRejected(f"row {row}: {reason}")
    if df.height == 0:
        return
    symbols = df["symbol"].unique().to_list()
    types = df["data_type"].unique().to_list()
    if len(symbols) != 1 or len(types) != 1:
        raise ObjectRejected(f"an object holds one symbol and data type, not {symbols} {types}")
    try:
        layout = parse_key(key)
    except ValueError:
        return  # a key outside the layout (loaded by hand): the rows alone are checked
    first, last = int(df["timestamp"].min()), int(df["timestamp"].max())  # type: ignore[arg-type]
    if symbols != [layout.symbol] or types != [layout.data_type]:
        raise ObjectRejected(
            f"the rows hold {symbols} {types}, the key names {layout.symbol} {layout.data_type}"
        )
    if (first, last) != (layout.first_ms, layout.last_ms):
        raise ObjectRejected(
            f"the rows span {first}..{last}, the key names {layout.first_ms}..{layout.last_ms}"
        )


def _as_copy_frame(df: pl.DataFrame) -> pl.DataFrame:
    """The frame ``COPY`` sends: times as UTC timestamps, and without the columns that are null
    in every row (a kline has no trade ids, a trade no OHLC): PostgreSQL fills those with NULL
    without parsing a field per row."""
    nulls = df.null_count().row(0)
    keep = [c for c, n in zip(df.columns, nulls, strict=True) if n < df.height or c in _REQUIRED]
    return df.select(keep).with_columns(
        pl.from_epoch(pl.col(name), time_unit="ms").dt.replace_time_zone("UTC")
        for name in _TIMES
        if name in keep
    )


def _csv_slices(df: pl.DataFrame) -> Iterator[bytes]:
    for offset in range(0, df.height, _SLICE_ROWS):
        part = df.slice(offset, _SLICE_ROWS)
        yield part.write_csv(
            include_header=False,
            separator="\t",
            null_value="\\N",
            quote_style="never",
            datetime_format="%Y-%m-%d %H:%M:%S%.3f+00",
        ).encode()


class _Pipe(io.RawIOBase):
    """A file-like ``COPY`` reads from, filled by a thread that makes the next CSV slice while
    PostgreSQL takes the current one (polars writes CSV without holding the GIL)."""

    def __init__(self, df: pl.DataFrame) -> None:
        super().__init__()
        self._queue: Queue[bytes | BaseException | None] = Queue(maxsize=2)
        self._thread = threading.Thread(target=self._fill, args=(df,), daemon=True)
        self._thread.start()

    def _fill(self, df: pl.DataFrame) -> None:
        try:
            for chunk in _csv_slices(df):
                self._queue.put(chunk)
            self._queue.put(None)
        except BaseException as exc:  # surfaced to the reader
            self._queue.put(exc)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        item = self._queue.get()
        if item is None:
            self._queue.put(None)  # later reads see the end too
            return b""
        if isinstance(item, BaseException):
            raise item
        return item


def _source(df: pl.DataFrame) -> io.RawIOBase | io.BytesIO:
    """What ``COPY`` reads: one CSV buffer for a small frame, else a :class:`_Pipe`."""
    if df.height <= _SLICE_ROWS:
        return io.BytesIO(b"".join(_csv_slices(df)))
    return _Pipe(df)


def _copy_sql(table: str, columns: Sequence[str]) -> str:
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN"  # noqa: S608 - known names


def _insert_new(cur: Any, df: pl.DataFrame, span: tuple[int, int]) -> int:
    """Copy the rows into a temporary table and insert those ``market_data`` lacks."""
    names = ", ".join(COLUMNS)
    cur.execute(
        f"CREATE TEMP TABLE history_stage ON COMMIT DROP AS "  # noqa: S608 - fixed names
        f"SELECT {names} FROM market_data WITH NO DATA"
    )
    cur.copy_expert(_copy_sql("history_stage", df.columns), _source(df), size=1 << 20)
    first, last = span
    cur.execute(
        f"INSERT INTO market_data ({names}) SELECT {names} FROM history_stage s "  # noqa: S608
        "WHERE NOT EXISTS (SELECT 1 FROM market_data m"
        " WHERE m.symbol = s.symbol AND m.data_type = s.data_type"
        " AND m.timestamp BETWEEN to_timestamp(%s / 1000.0) AND to_timestamp(%s / 1000.0)"
        " AND m.timestamp = s.timestamp"
        " AND coalesce(m.trade_id, -1) = coalesce(s.trade_id, -1))",
        (first, last),
    )
    return int(cur.rowcount)


def read_object(data: bytes, key: str) -> pl.DataFrame:
    """Check an object completely and return its rows in ``COLUMNS`` order (times in ms).

    Raises
    ------
    ObjectRejected
        The object is malformed, cut short, of another schema, holds a bad value, or its rows
        are not those its key names.
    """
    try:
        container = scan(data)
    except ObjectFormatError as exc:
        raise ObjectRejected(str(exc)) from None
    _check_schema(container)
    df = _frame(data, container)
    _validate(df, key)
    return df


def _chunk_locks(df: pl.DataFrame) -> list[str]:
    symbol, data_type = df["symbol"][0], df["data_type"][0]
    size = CHUNK_MS["kline_1m" if data_type == "kline_1m" else "agg_trade"]
    starts = (df["timestamp"] // size).unique().sort().to_list()
    return [f"history:{symbol}/{data_type}/{int(start) * size}" for start in starts]


def load_object(
    conn: Connection,
    bucket: str,
    key: str,
    data: bytes,
    *,
    etag: str | None = None,
    partitions: set[str] | None = None,
) -> LoadResult:
    """Load one object into ``market_data`` exactly once (see the module docstring).

    The connection must not be in autocommit mode; on any error the transaction is rolled back
    and the connection is left usable. ``partitions`` is the caller's cache of the monthly
    partitions known to exist on this database (one set per connection): a month in it is not
    checked again; drop the set with the connection after a failure.

    Raises
    ------
    ObjectRejected
        The object is not valid (nothing written); :class:`ObjectChangedError` when the key
        was loaded before with another ETag.
    psycopg2.Error
        The database failed (retry later: nothing was written).
    """
    started = time.perf_counter()
    df = read_object(data, key)
    rows = df.height
    created: list[str] = []
    span: tuple[int, int] | None = None
    if rows:
        span = (int(df["timestamp"].min()), int(df["timestamp"].max()))  # type: ignore[arg-type]
        months = month_partitions(*span)
        needed = [m for m in months if partitions is None or partition_name(m) not in partitions]
        if needed:
            created = ensure_partitions(conn, needed)
            if partitions is not None:
                partitions.update(partition_name(m) for m in needed)
    cur = conn.cursor()
    try:
        locks = _chunk_locks(df) if rows else [f"history:{bucket}/{key}"]
        cur.execute(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(l, 0)))"
            " FROM (SELECT unnest(%s::text[]) AS l ORDER BY 1) AS ordered",
            (locks,),
        )
        symbol = df["symbol"][0] if rows else None
        data_type = df["data_type"][0] if rows else None
        first, last = span if span is not None else (0, 0)
        cur.execute(
            "SELECT (SELECT etag FROM history_objects WHERE bucket = %s AND key = %s),"
            " EXISTS (SELECT 1 FROM history_objects WHERE bucket = %s AND key = %s),"
            " EXISTS (SELECT 1 FROM history_objects WHERE symbol = %s AND data_type = %s"
            " AND first_ts <= to_timestamp(%s / 1000.0) AND last_ts >= to_timestamp(%s / 1000.0))",
            (bucket, key, bucket, key, symbol, data_type, last, first),
        )
        known_etag, loaded, overlaps = cur.fetchone()
        if loaded:
            conn.rollback()
            if etag is not None and known_etag is not None and known_etag != etag:
                raise ObjectChangedError(
                    f"s3://{bucket}/{key} was loaded with ETag {known_etag}, now it is {etag}"
                )
            return LoadResult(bucket, key, rows, 0, 0, True, created, _since(started))
        inserted = 0
        if span is not None:
            copy_frame = _as_copy_frame(df)
            if overlaps:
                inserted = _insert_new(cur, copy_frame, span)
            else:
                # a chunk lies in one month: straight into its partition, no routing per row
                target = partition_name(months[0]) if len(months) == 1 else "market_data"
                cur.copy_expert(
                    _copy_sql(target, copy_frame.columns), _source(copy_frame), size=1 << 20
                )
                inserted = rows
        cur.execute(
            "INSERT INTO history_objects (bucket, key, etag, symbol, data_type, rows, inserted,"
            " duplicates, first_ts, last_ts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
            " to_timestamp(%s / 1000.0), to_timestamp(%s / 1000.0))",
            (bucket, key, etag, symbol, data_type, rows, inserted, rows - inserted)
            + ((first, last) if span is not None else (None, None)),
        )
        conn.commit()
        return LoadResult(
            bucket, key, rows, inserted, rows - inserted, False, created, _since(started)
        )
    except BaseException:
        conn.rollback()
        raise
    finally:
        cur.close()


def _since(started: float) -> float:
    return time.perf_counter() - started
