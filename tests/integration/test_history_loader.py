"""The loader against a real PostgreSQL: migrations, exactly-once loading (redelivery,
concurrency, overlapping objects), partitions on demand, bad objects rejected with nothing
written, and the rows read back exactly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from btcpred.events import Trade
from btcpred.history.avro import encode
from btcpred.history.database import count_rows, read_klines
from btcpred.history.loader import ObjectChangedError, ObjectRejected, load_object
from btcpred.history.migrations import MIGRATIONS, migrate
from btcpred.history.records import kline_record
from btcpred.klines import Kline
from btcpred.sources.capture import Capture
from tests.integration.history_helpers import (
    agg_trade_objects,
    agg_trades_from,
    fresh_schema,
    kline_objects,
)

BUCKET = "btcpred-dev-raw-history"


def capture_trades(capture: Capture) -> list[Trade]:
    return [e for e in capture.events if isinstance(e, Trade)]


@pytest.fixture
def schema_url(database_url: str) -> Iterator[str]:
    with fresh_schema(database_url) as url:
        yield url


@pytest.fixture
def conn(schema_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(schema_url)
    migrate(connection)
    try:
        yield connection
    finally:
        connection.close()


def scalar(conn: Any, sql: str, *args: object) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        value = cur.fetchone()[0]
    conn.rollback()
    return value


def test_migrations_apply_once_and_again_do_nothing(schema_url: str) -> None:
    first = psycopg2.connect(schema_url)
    try:
        assert migrate(first) == [v for v, _, _ in MIGRATIONS]
        assert migrate(first) == []
        assert scalar(first, "SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)
        assert scalar(first, "SELECT to_regclass('market_data') IS NOT NULL")
    finally:
        first.close()


def test_concurrent_migrations_serialise_on_the_lock(schema_url: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        c = psycopg2.connect(schema_url)
        try:
            results.append(migrate(c))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(map(len, results)) == [0, 0, 0, len(MIGRATIONS)]


def test_klines_load_and_read_back_exactly(conn: Any, warmup_klines: list[Kline]) -> None:
    objects = kline_objects(warmup_klines)
    assert len(objects) == 2  # 2024-08-08 18:00 .. 2024-08-09 00:09
    results = [load_object(conn, BUCKET, key, data) for key, data in objects]

    assert [r.inserted for r in results] == [360, 10]
    assert not any(r.skipped for r in results)
    back = list(read_klines(conn, "BTCUSDT", 0, 2**42))
    assert back == warmup_klines  # every float bit-exact, times to the ms
    assert count_rows(conn) == {("BTCUSDT", "kline_1m"): 370}


def test_a_redelivered_object_is_loaded_once(conn: Any, warmup_klines: list[Kline]) -> None:
    key, data = kline_objects(warmup_klines)[0]
    first = load_object(conn, BUCKET, key, data, etag="abc")
    again = load_object(conn, BUCKET, key, data, etag="abc")
    without_etag = load_object(conn, BUCKET, key, data)

    assert (first.inserted, first.skipped) == (360, False)
    assert (again.inserted, again.skipped, without_etag.skipped) == (0, True, True)
    assert scalar(conn, "SELECT count(*) FROM market_data") == 360
    assert scalar(conn, "SELECT count(*) FROM history_objects") == 1


def test_an_object_changed_under_its_key_is_refused(conn: Any, warmup_klines: list[Kline]) -> None:
    key, data = kline_objects(warmup_klines)[0]
    load_object(conn, BUCKET, key, data, etag="abc")
    with pytest.raises(ObjectChangedError, match="ETag abc"):
        load_object(conn, BUCKET, key, data, etag="def")
    assert scalar(conn, "SELECT count(*) FROM market_data") == 360


def test_concurrent_invocations_on_one_object_load_it_once(
    schema_url: str, conn: Any, capture: Capture
) -> None:
    trades = agg_trades_from(capture_trades(capture))
    (key, data), *_ = agg_trade_objects(trades)
    results: list[Any] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        c = psycopg2.connect(schema_url)
        try:
            barrier.wait(10)
            results.append(load_object(c, BUCKET, key, data))
        finally:
            c.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    rows = results[0].rows
    assert sorted(r.skipped for r in results) == [False, True, True]
    assert sum(r.inserted for r in results) == rows
    assert scalar(conn, "SELECT count(*) FROM market_data") == rows
    assert scalar(conn, "SELECT count(DISTINCT trade_id) FROM market_data") == rows


def test_overlapping_objects_hold_each_row_once(conn: Any, warmup_klines: list[Kline]) -> None:
    """A day fetched while in progress, then again complete, under two keys."""
    day = [k for k in warmup_klines if k.open_time_ms < 1723161600000]  # 2024-08-08
    ((partial_key, partial),) = kline_objects(day[:100])
    ((full_key, full),) = kline_objects(day)
    assert partial_key != full_key

    load_object(conn, BUCKET, partial_key, partial)
    result = load_object(conn, BUCKET, full_key, full)

    assert (result.rows, result.inserted, result.duplicates) == (360, 260, 100)
    assert list(read_klines(conn, "BTCUSDT", 0, 2**42)) == day
    # and the other way round: nothing new at all
    again = load_object(conn, BUCKET, "elsewhere/" + partial_key.rsplit("/", 1)[1], partial)
    assert (again.inserted, again.duplicates) == (0, 100)
    assert scalar(conn, "SELECT count(*) FROM market_data") == 360


def test_partitions_are_created_on_demand_one_per_month(conn: Any) -> None:
    def bar(open_ms: int) -> Kline:
        return Kline(open_ms, open_ms + 59_999, 1.0, 2.0, 0.5, 1.5, 3.0)

    may, june = 1748649600000, 1748736000000  # 2025-05-31, 2025-06-01 00:00 UTC
    results = [
        load_object(conn, BUCKET, key, data)
        for key, data in kline_objects([bar(may), bar(may + 60_000), bar(june)])
    ]
    assert [r.partitions_created for r in results] == [
        ["market_data_y2025m05"],
        ["market_data_y2025m06"],
    ]
    parts = scalar(
        conn,
        "SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'market_data'::regclass"
        " AND c.relkind = 'r'",
    )
    assert parts == ["market_data_y2025m05", "market_data_y2025m06"]
    assert scalar(conn, "SELECT count(*) FROM market_data_y2025m06") == 1


def _rows(n: int = 5) -> list[dict[str, Any]]:
    return [
        kline_record(
            "BTCUSDT", Kline(60_000 * i, 60_000 * i + 59_999, 1, 2, 0.5, 1.5, 3.0), "dump", 7
        )
        for i in range(n)
    ]


def _bad_objects() -> dict[str, tuple[str, bytes]]:
    good = encode(_rows())
    key = "market/symbol=BTCUSDT/data_type=kline_1m/date=1970-01-01/BTCUSDT-kline_1m-0-240000.avro"
    negative = _rows()
    negative[3]["price"] = -1.0
    twice = _rows()
    twice[4]["timestamp"] = twice[3]["timestamp"]
    mixed = _rows()
    mixed[2]["symbol"] = "ETHUSDT"
    import fastavro

    other_schema = {
        "type": "record",
        "name": "Other",
        "fields": [
            {"name": "symbol", "type": "string"},
            {"name": "timestamp", "type": "string"},
            {"name": "price", "type": "double"},
            {"name": "volume", "type": "double"},
            {"name": "source", "type": "string"},
            {"name": "data_type", "type": "string"},
            {"name": "collection_time", "type": "long"},
        ],
    }
    import io

    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(other_schema), [])
    return {
        "truncated": (key, good[:-30]),
        "cut right after the header (reads as no rows)": (key, encode([])),
        "cut in the header": (key, good[:40]),
        "not avro": (key, b"PAR1 this is not an avro file"),
        "empty": (key, b""),
        "negative price": (key, encode(negative)),
        "a row twice": (key, encode(twice)),
        "two symbols": (key, encode(mixed)),
        "another schema": (key, out.getvalue()),
        "rows not those of the key": (key.replace("-240000", "-180000"), good),
        "symbol not that of the key": (key.replace("BTCUSDT", "ETHUSDT"), good),
    }


@pytest.mark.parametrize("case", sorted(_bad_objects()))
def test_bad_objects_are_rejected_with_nothing_written(conn: Any, case: str) -> None:
    key, data = _bad_objects()[case]
    with pytest.raises(ObjectRejected):
        load_object(conn, BUCKET, key, data)
    assert scalar(conn, "SELECT count(*) FROM market_data") == 0
    assert scalar(conn, "SELECT count(*) FROM history_objects") == 0


def test_the_connection_stays_usable_after_a_rejection(
    conn: Any, warmup_klines: list[Kline]
) -> None:
    key, data = kline_objects(warmup_klines)[0]
    with pytest.raises(ObjectRejected):
        load_object(conn, BUCKET, key, data[:-10])
    assert load_object(conn, BUCKET, key, data).inserted == 360


def test_a_failure_inside_the_transaction_writes_nothing(
    conn: Any, warmup_klines: list[Kline]
) -> None:
    """The ledger insert fails after the COPY: the rows roll back with it."""
    key, data = kline_objects(warmup_klines)[0]
    with conn.cursor() as cur:
        cur.execute(
            "ALTER TABLE history_objects ADD CONSTRAINT no_loads CHECK (rows < 0) NOT VALID"
        )
    conn.commit()
    with pytest.raises(psycopg2.errors.CheckViolation):
        load_object(conn, BUCKET, key, data)
    assert scalar(conn, "SELECT count(*) FROM market_data") == 0
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE history_objects DROP CONSTRAINT no_loads")
    conn.commit()
    assert load_object(conn, BUCKET, key, data).inserted == 360


def test_capture_aggregate_trades_load_every_trade_once(conn: Any, capture: Capture) -> None:
    trades = agg_trades_from(capture_trades(capture))
    objects = agg_trade_objects(trades)
    assert len(objects) == 2  # the capture crosses midnight: two UTC hours
    for key, data in objects:
        load_object(conn, BUCKET, key, data)
    total_trades = scalar(conn, "SELECT sum(last_trade_id - first_trade_id + 1) FROM market_data")
    assert total_trades == len(capture_trades(capture))
    assert scalar(conn, "SELECT count(*) FROM market_data") == len(trades)
    assert scalar(conn, "SELECT sum(volume) FROM market_data") == pytest.approx(
        sum(t.qty for t in capture_trades(capture)), rel=1e-12
    )
