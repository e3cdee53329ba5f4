"""Real round trips against the Redis and PostgreSQL servers from ``tests/conftest.py``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

pytestmark = pytest.mark.services


def test_redis_set_with_px_ttl_then_get(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0  # the fixture flushed the database
    payload = b"\x00\x01btcusdt\xff"

    assert redis_client.set("quote:last", payload, px=60_000) is True

    assert redis_client.get("quote:last") == payload
    assert 0 < redis_client.pttl("quote:last") <= 60_000


def test_redis_multi_exec_pipeline_is_atomic(redis_client: redis.Redis) -> None:
    with redis_client.pipeline(transaction=True) as pipe:
        pipe.incr("seq")
        pipe.incrby("seq", 41)
        pipe.rpush("trades", b"t1", b"t2")
        pipe.lrange("trades", 0, -1)
        results = pipe.execute()

    assert results == [1, 42, 2, [b"t1", b"t2"]]
    assert redis_client.get("seq") == b"42"


def test_redis_server_listens_on_the_fixture_port(
    redis_client: redis.Redis, redis_url: str
) -> None:
    info = redis_client.info("server")

    assert int(info["tcp_port"]) == (urlsplit(redis_url).port or 6379)
    assert str(info["redis_version"])


def test_postgres_insert_select_round_trip(pg_conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    price = Decimal("64123.12345678")
    ts = datetime(2024, 3, 9, 12, 34, 56, 789012, tzinfo=UTC)
    pg_conn.execute(
        "CREATE TABLE ticks (id integer PRIMARY KEY, price numeric(18, 8) NOT NULL,"
        " ts timestamptz NOT NULL)"
    )

    pg_conn.execute("INSERT INTO ticks (id, price, ts) VALUES (%s, %s, %s)", (1, price, ts))
    rows = pg_conn.execute("SELECT id, price, ts FROM ticks").fetchall()

    assert rows == [(1, price, ts)]
    assert isinstance(rows[0][1], Decimal)
    assert rows[0][2].utcoffset() is not None


def test_postgres_fixture_uses_a_fresh_schema(
    pg_conn: psycopg.Connection[tuple[Any, ...]],
) -> None:
    row = pg_conn.execute(
        "SELECT current_schema(), count(*) FROM pg_tables WHERE schemaname = current_schema()"
    ).fetchone()

    assert row is not None
    assert row[0].startswith("test_")
    assert row[1] == 0


def test_postgres_is_a_real_server(
    pg_conn: psycopg.Connection[tuple[Any, ...]], database_url: str
) -> None:
    row = pg_conn.execute("SELECT version(), current_database()").fetchone()

    assert row is not None
    assert row[0].startswith("PostgreSQL")
    assert row[1] == urlsplit(database_url).path.lstrip("/")
