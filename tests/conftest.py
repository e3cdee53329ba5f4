"""Shared fixtures: real Redis and PostgreSQL servers for integration tests.

``redis_url`` / ``database_url`` (session scope) come from the ``REDIS_URL`` / ``DATABASE_URL``
environment variables when set; those servers are used as-is and never started or stopped.
Otherwise a throwaway server is started on a free 127.0.0.1 port for the session (see
``btcpred.sim.services``). If the server binary is missing the dependent tests are skipped
locally but FAIL when ``CI`` is "true" or "1": CI never skips service tests.

``redis_client`` empties its database before each test, so a ``REDIS_URL`` must name an empty,
disposable database: the session refuses to start on one that already holds keys, which keeps
the tests away from a developer's own data. ``pg_conn`` works inside a fresh ``test_<random>``
schema it drops afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest
import redis
from psycopg import sql

from btcpred.klines import Kline, read_klines
from btcpred.redisconn import RedisClient, connect
from btcpred.sim.management_api import ManagementApiServer
from btcpred.sim.services import (
    PostgresServer,
    RedisClusterServer,
    RedisServer,
    ServiceNotInstalledError,
)
from btcpred.sources.capture import Capture, load_capture


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def _server_missing(exc: ServiceNotInstalledError) -> NoReturn:
    if _in_ci():
        pytest.fail(f"{exc} (CI never skips service tests; run scripts/ensure-services.sh)")
    pytest.skip(f"{exc} (or run scripts/ensure-services.sh)")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis database: ``$REDIS_URL`` or a throwaway session server."""
    given = os.environ.get("REDIS_URL")
    if given:
        with redis.Redis.from_url(given) as client:
            keys = client.dbsize()
        if keys:
            pytest.fail(
                f"REDIS_URL names a database holding {keys} keys; the tests empty their database, "
                "so point REDIS_URL at an empty, disposable one (or unset it)"
            )
        yield given
        return
    try:
        server = RedisServer().start()
    except ServiceNotInstalledError as exc:
        _server_missing(exc)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of a PostgreSQL database: ``$DATABASE_URL`` or a throwaway session server."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    try:
        server = PostgresServer().start()
    except ServiceNotInstalledError as exc:
        _server_missing(exc)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A bytes-returning client on an emptied database (FLUSHDB before each test)."""
    client = redis.Redis.from_url(redis_url, decode_responses=False)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """URL of one node of a Redis Cluster: ``$REDIS_CLUSTER_URL`` or a throwaway 3-node one."""
    given = os.environ.get("REDIS_CLUSTER_URL")
    if given:
        yield given
        return
    try:
        cluster = RedisClusterServer().start()
    except ServiceNotInstalledError as exc:
        _server_missing(exc)
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_client(redis_cluster_url: str) -> Iterator[RedisClient]:
    """A bytes-returning cluster client on an emptied cluster (FLUSHALL on every primary)."""
    client = connect(redis_cluster_url, cluster=True, timeout_s=2.0)
    client.flushall(target_nodes="primaries")  # type: ignore[call-arg]  # cluster-only argument
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(params=["single", "cluster"])
def any_redis(request: pytest.FixtureRequest) -> tuple[RedisClient, str, bool]:
    """``(client, url, cluster)`` on an emptied single node, then on an emptied Redis Cluster.

    Tests of code that must work unchanged on both (the aggregator, the inference loop, the
    client functions) take this fixture and run twice.
    """
    if request.param == "single":
        url = request.getfixturevalue("redis_url")
        return request.getfixturevalue("redis_client"), url, False
    url = request.getfixturevalue("redis_cluster_url")
    return request.getfixturevalue("redis_cluster_client"), url, True


@pytest.fixture
def pg_conn(database_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An autocommit connection whose ``search_path`` is a fresh schema, dropped afterwards."""
    schema = sql.Identifier(f"test_{secrets.token_hex(6)}")
    conn = psycopg.connect(database_url, autocommit=True)
    try:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        conn.execute(sql.SQL("SET search_path TO {}").format(schema))
        yield conn
    finally:
        conn.close()  # release the test's locks; drop from a fresh connection
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance"
WARMUP_KLINES = FIXTURES / "btcusdt_1m_2024-08-08T18_2024-08-09T0010.csv.gz"


@pytest.fixture(scope="session")
def capture() -> Capture:
    """The recorded Binance capture (fixtures/binance), loaded once per session."""
    return load_capture(sorted(FIXTURES.glob("btcusdt_ws_capture_*.gz")))


@pytest.fixture(scope="session")
def warmup_klines() -> list[Kline]:
    """The 370 one-minute klines of 2024-08-08 18:00 .. 2024-08-09 00:09 (real data)."""
    return list(read_klines(WARMUP_KLINES))


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Fake AWS credentials and region, so boto3 never looks for real ones (moto, local APIs)."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SECURITY_TOKEN",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return monkeypatch


@pytest.fixture(scope="module")
def running_server() -> Iterator[ManagementApiServer]:
    """A local API Gateway management API per test module (stopping one takes about 0.5 s)."""
    with ManagementApiServer() as api:
        yield api


@pytest.fixture
def server(running_server: ManagementApiServer) -> ManagementApiServer:
    """The module's management API with no connections, messages, delays or failures."""
    for state in (
        running_server.connections,
        running_server.received,
        running_server.delay_s,
        running_server.failing,
    ):
        state.clear()
    return running_server


@pytest.fixture(scope="session")
def kinesis_endpoint() -> Iterator[str]:
    """A local Kinesis: ``KINESIS_ENDPOINT`` when set, else moto's server in its own process."""
    given = os.environ.get("KINESIS_ENDPOINT")
    if given:
        yield given
        return
    from btcpred.sim.kinesis import MotoKinesisServer

    with MotoKinesisServer() as server:
        yield server.url


@pytest.fixture
def kinesis_stream(kinesis_endpoint: str) -> tuple[Any, str]:
    """A boto3 client on the local Kinesis and a fresh one-shard stream."""
    from btcpred.sim.kinesis import create_stream, kinesis_client_for

    client = kinesis_client_for(kinesis_endpoint)
    name = f"test-{secrets.token_hex(4)}"
    create_stream(client, name)
    return client, name
