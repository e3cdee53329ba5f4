"""The loader Lambda handler end to end: SQS events of S3 notifications, objects in moto's S3,
rows in a real PostgreSQL; rejected objects are not retried, failures are batch-item failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
from moto import mock_aws

from btcpred.history.service import InvalidEventError, notifications
from btcpred.klines import Kline
from btcpred.sim.lambda_events import LocalLambdaContext, load_lambda_module
from tests.integration.history_helpers import fresh_schema, kline_objects

HANDLER = Path(__file__).resolve().parents[2] / "lambdas" / "loader" / "handler.py"
BUCKET = "btcpred-dev-raw-history"


def s3_notification(key: str, bucket: str = BUCKET, etag: str = "e") -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {"key": key.replace("=", "%3D"), "size": 1, "eTag": etag},
                },
            }
        ]
    }


def sqs_event(*bodies: dict[str, Any]) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": f"m{i}", "eventSource": "aws:sqs", "body": json.dumps(body)}
            for i, body in enumerate(bodies)
        ]
    }


@pytest.fixture
def schema_url(database_url: str) -> Iterator[str]:
    with fresh_schema(database_url) as url:
        yield url


@pytest.fixture
def s3(aws_env: pytest.MonkeyPatch) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _handler(monkeypatch: pytest.MonkeyPatch, url: str) -> Any:
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("DATABASE_SECRET_ARN", raising=False)
    monkeypatch.setenv("DATABASE_SSLMODE", "disable")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "btcpred")
    return load_lambda_module(HANDLER, "loader_handler_under_test")


def count(url: str, sql: str = "SELECT count(*) FROM market_data") -> int:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def emf(out: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in out.splitlines():
        if line.startswith("{") and "_aws" in line:
            doc = json.loads(line)
            for metric in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = doc[metric["Name"]]
                found[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return found


def test_an_sqs_batch_loads_good_objects_and_skips_bad_ones(
    s3: Any,
    schema_url: str,
    aws_env: pytest.MonkeyPatch,
    warmup_klines: list[Kline],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (key1, data1), (key2, data2) = kline_objects(warmup_klines)
    s3.put_object(Bucket=BUCKET, Key=key1, Body=data1)
    s3.put_object(Bucket=BUCKET, Key=key2, Body=data2[:-20])  # cut short
    handler = _handler(aws_env, schema_url)
    event = sqs_event(
        s3_notification(key1), s3_notification(key2), {"Event": "s3:TestEvent", "Bucket": BUCKET}
    )

    answer = handler.handler(event, LocalLambdaContext(function_name="btcpred-loader"))

    assert answer == {"batchItemFailures": []}  # the bad object is not retried
    assert count(schema_url) == 360
    metrics = emf(capsys.readouterr().out)
    assert metrics["LoaderObjects"] == 1
    assert metrics["LoaderRows"] == 360
    assert metrics["LoaderRejected"] == 1
    # redelivered: nothing new, counted as skipped
    again = handler.handler(sqs_event(s3_notification(key1)), LocalLambdaContext())
    assert again == {"batchItemFailures": []}
    assert count(schema_url) == 360
    assert emf(capsys.readouterr().out)["LoaderSkipped"] == 1


def test_an_unreachable_database_makes_batch_item_failures(
    s3: Any, aws_env: pytest.MonkeyPatch, warmup_klines: list[Kline], schema_url: str
) -> None:
    (key1, data1), (key2, data2) = kline_objects(warmup_klines)
    s3.put_object(Bucket=BUCKET, Key=key1, Body=data1)
    s3.put_object(Bucket=BUCKET, Key=key2, Body=data2)
    dead = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1"
    handler = _handler(aws_env, dead)

    answer = handler.handler(
        sqs_event(s3_notification(key1), s3_notification(key2)), LocalLambdaContext()
    )

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]}
    # the database is back (another URL here): the same messages load, once
    handler._service = None
    aws_env.setenv("DATABASE_URL", schema_url)
    event = sqs_event(s3_notification(key1), s3_notification(key2))
    assert handler.handler(event, LocalLambdaContext()) == {"batchItemFailures": []}
    assert count(schema_url) == 370


def test_a_missing_object_is_a_failure_and_a_direct_event_raises(
    s3: Any, aws_env: pytest.MonkeyPatch, schema_url: str
) -> None:
    handler = _handler(aws_env, schema_url)
    key = "market/symbol=BTCUSDT/data_type=kline_1m/date=2024-08-08/BTCUSDT-kline_1m-1-2.avro"
    answer = handler.handler(sqs_event(s3_notification(key)), LocalLambdaContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    with pytest.raises(RuntimeError, match="could not load"):
        handler.handler(s3_notification(key), LocalLambdaContext())


def test_notifications_read_both_shapes_and_decode_keys() -> None:
    key = "market/symbol=BTCUSDT/data_type=kline_1m/date=2024-08-08/a b.avro"
    direct = s3_notification(key.replace(" ", "+"))
    [(message, refs)] = notifications(direct)
    assert message is None
    assert [r.key for r in refs] == [key]
    [(message, refs)] = notifications(sqs_event(direct))
    assert message == "m0"
    assert [(r.bucket, r.key, r.etag) for r in refs] == [(BUCKET, key, "e")]
    assert notifications({"Event": "s3:TestEvent"}) == []
    removed = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete"}]}
    assert notifications(removed) == [(None, [])]
    with pytest.raises(InvalidEventError):
        notifications({"detail": {}})
    with pytest.raises(InvalidEventError):
        notifications({"Records": [{"eventSource": "aws:sqs", "messageId": "x", "body": "{"}]})


def test_the_database_secret_gives_the_connection(
    aws_env: pytest.MonkeyPatch, database_url: str
) -> None:
    from urllib.parse import urlsplit

    from btcpred.history.aws import connect
    from btcpred.settings.history import DatabaseSettings

    parts = urlsplit(database_url)
    secret = {
        "engine": "postgres",
        "host": parts.hostname,
        "port": parts.port,
        "username": "postgres",
        "password": "p@ss/word:with&odd=chars",
        "dbname": parts.path.lstrip("/"),
    }
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        arn = sm.create_secret(Name="btcpred/history", SecretString=json.dumps(secret))["ARN"]
        settings = DatabaseSettings.from_env(
            {"DATABASE_SECRET_ARN": arn, "DATABASE_SSLMODE": "disable"}
        )
        conn = connect(settings, secrets=sm)
    try:
        assert conn.info.dbname == secret["dbname"]
        assert conn.get_dsn_parameters()["sslmode"] == "disable"
    finally:
        conn.close()


@pytest.fixture(scope="module")
def tls_database_url() -> Iterator[str]:
    """A PostgreSQL that accepts TLS connections only (``rds.force_ssl`` as on RDS)."""
    from btcpred.sim.services import PostgresServer

    server = PostgresServer(tls=True).start()
    try:
        yield server.url
    finally:
        server.stop()


def test_the_loader_connects_over_tls_with_the_secret(
    aws_env: pytest.MonkeyPatch, tls_database_url: str, warmup_klines: list[Kline]
) -> None:
    from urllib.parse import urlsplit

    from btcpred.history.aws import connect
    from btcpred.history.service import LoaderService, ObjectRef
    from btcpred.settings.history import DatabaseSettings

    parts = urlsplit(tls_database_url)
    secret = {
        "host": parts.hostname,
        "port": parts.port,
        "username": "postgres",
        "password": "unused",
        "dbname": parts.path.lstrip("/"),
    }
    (key, data), _ = kline_objects(warmup_klines)
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        arn = sm.create_secret(Name="btcpred/tls", SecretString=json.dumps(secret))["ARN"]
        settings = DatabaseSettings.from_env({"DATABASE_SECRET_ARN": arn})
        assert settings.sslmode == "require"
        service = LoaderService(
            lambda: connect(settings, secrets=sm),
            lambda _b, _k: (data, None),
            transient=(psycopg2.Error,),
        )
        assert service.load(ObjectRef(BUCKET, key, None, None, None)).inserted == 360
        conn = service.connection()
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (True,)
        conn.rollback()
    plain = tls_database_url + "?sslmode=disable"
    with pytest.raises(psycopg2.OperationalError, match="rejects"):
        psycopg2.connect(plain)
