"""The predictor's outputs besides Redis keys: WebSocket broadcasts (real Redis registry, boto3
on the local management API and on moto), the Avro history on moto S3, and EMF metrics."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import fastavro
import pytest
import redis
from botocore.config import Config
from moto import mock_aws
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
from moto.core.models import DEFAULT_ACCOUNT_ID

from btcpred.inference.accuracy import AccuracyTracker
from btcpred.inference.connections import RedisConnectionRegistry
from btcpred.inference.outputs import Broadcaster, GoneError, HistoryWriter, ManagementApiPoster
from btcpred.inference.result import PredictionResult
from btcpred.keys import RedisKeys
from btcpred.model.registry import S3ObjectStore
from btcpred.redisconn import connect as redis_connect
from btcpred.sim.management_api import ManagementApiServer
from btcpred.sim.services import free_port

NOW = 1_723_195_845_123  # 2024-08-09T09:30:45.123Z
DATA = PredictionResult(
    symbol="BTCUSDT",
    timestamp=NOW,
    current_price=60_000.0,
    predicted_price=60_012.5,
    prediction_horizon_seconds=60,
    confidence=0.61,
    model_version="btcpred-mlp/1.0.0",
    features_age_ms=120,
    inference_latency_ms=3.5,
    source="redis",
).to_json()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


@pytest.fixture
def poster(aws_env: pytest.MonkeyPatch, server: ManagementApiServer) -> ManagementApiPoster:
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=server.url,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )
    return ManagementApiPoster(client)


@pytest.fixture
def registry(redis_client: redis.Redis) -> RedisConnectionRegistry:
    return RedisConnectionRegistry(redis_client)


Make = Callable[..., Broadcaster]


@pytest.fixture
def make_broadcaster(
    registry: RedisConnectionRegistry, poster: ManagementApiPoster
) -> Iterator[Make]:
    made: list[Broadcaster] = []

    def make(**kwargs: Any) -> Broadcaster:
        b = Broadcaster(registry, poster, **kwargs)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def members(client: redis.Redis, symbol: str = "BTCUSDT") -> set[str]:
    raw: list[bytes] = client.zrange(RedisKeys().connections(symbol), 0, -1)  # type: ignore[assignment]
    return {m.decode() for m in raw}


def connect(
    server: ManagementApiServer,
    registry: RedisConnectionRegistry,
    *ids: str,
    symbol: str = "BTCUSDT",
) -> None:
    server.connect(*ids)
    for cid in ids:
        registry.add(cid, symbol, NOW)


# -- Broadcaster -------------------------------------------------------------------------------
def test_every_connection_of_the_symbol_receives_the_bytes(
    server: ManagementApiServer, registry: RedisConnectionRegistry, make_broadcaster: Make
) -> None:
    connect(server, registry, "a", "b", "c")
    connect(server, registry, "eth", symbol="ETHUSDT")

    report = make_broadcaster().broadcast("BTCUSDT", DATA, NOW)

    assert (report.sent, report.gone, report.failed, report.timed_out) == (3, 0, 0, 0)
    assert all(server.messages(cid) == [DATA] for cid in ("a", "b", "c"))
    assert server.messages("eth") == []


def test_no_connections_posts_nothing(make_broadcaster: Make) -> None:
    report = make_broadcaster().broadcast("BTCUSDT", DATA, NOW)

    assert (report.sent, report.gone, report.failed, report.timed_out) == (0, 0, 0, 0)


def test_a_gone_connection_is_removed_from_the_registry(
    server: ManagementApiServer,
    registry: RedisConnectionRegistry,
    redis_client: redis.Redis,
    make_broadcaster: Make,
) -> None:
    connect(server, registry, "a", "b")
    registry.add("gone", "BTCUSDT", NOW)  # stored, but API Gateway no longer knows it
    broadcaster = make_broadcaster()

    first = broadcaster.broadcast("BTCUSDT", DATA, NOW)
    second = broadcaster.broadcast("BTCUSDT", DATA, NOW + 1_500)

    assert (first.sent, first.gone, first.failed) == (2, 1, 0)
    assert members(redis_client) == {"a", "b"}
    assert redis_client.exists(RedisKeys().connection("gone")) == 0
    assert (second.sent, second.gone) == (2, 0)
    assert server.messages("a") == [DATA, DATA]


def test_the_poster_turns_410_into_gone_error(
    poster: ManagementApiPoster, server: ManagementApiServer
) -> None:
    server.connect("here")
    poster.post("here", b"hello")

    with pytest.raises(GoneError):
        poster.post("nobody", b"hello")
    assert server.messages("here") == [b"hello"]


def test_a_slow_connection_costs_the_tick_no_more_than_the_budget(
    server: ManagementApiServer, registry: RedisConnectionRegistry, make_broadcaster: Make
) -> None:
    connect(server, registry, "a", "b", "slow")
    broadcaster = make_broadcaster(budget_ms=200)
    broadcaster.broadcast("BTCUSDT", b"warm-up", NOW)  # connections opened before timing
    server.delay_s["slow"] = 1.0

    report = broadcaster.broadcast("BTCUSDT", DATA, NOW)

    assert report.ms < 600
    assert (report.sent, report.timed_out, report.failed, report.gone) == (2, 1, 0, 0)
    assert server.messages("a")[-1] == DATA
    assert server.messages("b")[-1] == DATA
    wait_for(lambda: server.messages("slow")[-1:] == [DATA])  # it finishes in the background


def test_one_deadline_bounds_the_broadcasts_of_every_symbol_of_a_tick(
    server: ManagementApiServer, registry: RedisConnectionRegistry, make_broadcaster: Make
) -> None:
    """Three symbols with a slow client each: the tick waits one budget, not three."""
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    for symbol in symbols:
        connect(server, registry, f"slow-{symbol}", symbol=symbol)
    broadcaster = make_broadcaster(budget_ms=200, max_concurrency=3)
    for symbol in symbols:
        broadcaster.broadcast(symbol, b"warm-up", NOW)  # connections opened before timing
        server.delay_s[f"slow-{symbol}"] = 1.0
    wait_for(lambda: broadcaster.backlog == 0)

    started = time.monotonic()
    deadline = started + broadcaster.budget_s
    reports = [broadcaster.broadcast(s, DATA, NOW, deadline=deadline) for s in symbols]
    waited = time.monotonic() - started

    assert [r.timed_out for r in reports] == [1, 1, 1]
    assert waited < 0.45  # one 200 ms budget (plus scheduling), not 3 x 200 ms


@pytest.mark.parametrize("failing", [False, True], ids=["slow", "slow-and-failing"])
def test_a_slow_connection_gets_the_newest_message_never_a_queue_of_old_ones(
    failing: bool,
    server: ManagementApiServer,
    registry: RedisConnectionRegistry,
    make_broadcaster: Make,
) -> None:
    connect(server, registry, "fast", "slow")
    broadcaster = make_broadcaster(budget_ms=30)
    broadcaster.broadcast("BTCUSDT", b"warm-up", NOW)
    server.delay_s["slow"] = 0.25
    if failing:
        server.failing.add("slow")
    messages = [f"m{k}".encode() for k in range(8)]

    reports = []
    for k, data in enumerate(messages):  # one every ~30 ms: eight while slow's first runs
        reports.append(broadcaster.broadcast("BTCUSDT", data, NOW + k))
        assert broadcaster.backlog <= 2  # slow: one in flight, at most one waiting
    wait_for(lambda: broadcaster.backlog == 0)

    assert server.messages("fast")[1:] == messages
    assert all(r.ms < 200 for r in reports)
    slow = server.messages("slow")[1:]
    superseded = sum(r.superseded for r in reports)
    if not failing:
        assert slow[0] == messages[0]
        assert slow[-1] == messages[-1]  # the newest arrives ...
        assert len(slow) < len(messages) // 2  # ... and most older ones never do
        assert superseded == len(messages) - len(slow)
    else:
        assert slow == []  # the stand-in stores nothing it answers 500 to
        assert superseded >= len(messages) // 2


def test_finish_drops_waiting_messages_and_stops_every_worker(
    server: ManagementApiServer, registry: RedisConnectionRegistry, make_broadcaster: Make
) -> None:
    connect(server, registry, "slow")
    server.delay_s["slow"] = 0.2
    broadcaster = make_broadcaster(budget_ms=20, max_concurrency=4)
    broadcaster.broadcast("BTCUSDT", b"first", NOW)
    waiting = broadcaster.broadcast("BTCUSDT", b"second", NOW + 1)
    assert (waiting.timed_out, broadcaster.backlog) == (1, 2)

    still_running = broadcaster.finish()

    assert still_running == 0  # the post in flight ended within finish_timeout_ms
    assert broadcaster.workers == 0
    assert broadcaster.backlog == 0
    assert server.messages("slow") == [b"first"]  # "second" was dropped, not left queued


def test_a_failing_connection_is_counted_failed_and_kept(
    server: ManagementApiServer,
    registry: RedisConnectionRegistry,
    redis_client: redis.Redis,
    make_broadcaster: Make,
) -> None:
    connect(server, registry, "a", "broken")
    server.failing.add("broken")

    report = make_broadcaster().broadcast("BTCUSDT", DATA, NOW)

    assert (report.sent, report.failed, report.gone, report.timed_out) == (1, 1, 0, 0)
    assert members(redis_client) == {"a", "broken"}
    assert server.messages("a") == [DATA]


def test_registry_down_uses_the_last_known_connections(
    server: ManagementApiServer, registry: RedisConnectionRegistry, make_broadcaster: Make
) -> None:
    connect(server, registry, "a", "b")
    broadcaster = make_broadcaster()
    broadcaster.broadcast("BTCUSDT", b"first", NOW)
    dead = redis_connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.25)
    broadcaster.registry = RedisConnectionRegistry(dead)

    report = broadcaster.broadcast("BTCUSDT", DATA, NOW + 1_500)
    never_read = broadcaster.broadcast("ETHUSDT", DATA, NOW + 1_500)

    assert report.sent == 2
    assert broadcaster.registry_errors == 2
    assert server.messages("a") == [b"first", DATA]
    assert server.messages("b") == [b"first", DATA]
    assert never_read.sent == 0


def test_moto_management_api_accepts_posts_through_the_poster(aws_env: pytest.MonkeyPatch) -> None:
    with mock_aws():
        client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url="https://abc.execute-api.us-east-1.amazonaws.com/prod",
            region_name="us-east-1",
        )
        ManagementApiPoster(client).post("conn-1", DATA)
        ManagementApiPoster(client).post("conn-1", b"more")

        backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        assert backend.connections["conn-1"].data == DATA + b"more"


# -- HistoryWriter -----------------------------------------------------------------------------
def prediction(symbol: str, timestamp: int, current: float, predicted: float) -> PredictionResult:
    return PredictionResult(
        symbol=symbol,
        timestamp=timestamp,
        current_price=current,
        predicted_price=predicted,
        prediction_horizon_seconds=60,
        confidence=0.55,
        model_version="btcpred-mlp/1.0.0",
        features_age_ms=200,
        inference_latency_ms=2.25,
        source="redis" if symbol == "BTCUSDT" else "fallback",
    )


def read_avro(data: bytes) -> list[dict[str, Any]]:
    records = []
    for record in fastavro.reader(io.BytesIO(data)):
        assert isinstance(record, dict)
        records.append(record)
    return records


def as_ms(value: dt.datetime) -> int:
    return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


BUCKET = "btcpred-history-test"


def test_history_writes_one_avro_object_per_symbol_under_hive_keys(
    aws_env: pytest.MonkeyPatch,
) -> None:
    btc = [prediction("BTCUSDT", NOW + i * 1_500, 60_000.0 + i, 60_010.0 + i) for i in range(3)]
    eth = [prediction("ETHUSDT", NOW + 700, 2_600.0, 2_601.0)]
    tracker = AccuracyTracker()
    for p in btc[:2]:
        tracker.add(p)
    scored = tracker.observe("BTCUSDT", btc[1].target_time_ms, 60_020.0).scored
    assert len(scored) == 2

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        writer = HistoryWriter(S3ObjectStore(s3, BUCKET, "predictions"), "w1")
        writer.add(scored)
        writer.add([btc[2], *eth])
        assert writer.buffered == 4

        written = writer.flush()
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
        bodies = {
            key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in sorted(listed)
        }

    assert writer.buffered == 0
    assert written == [
        f"symbol=BTCUSDT/date=2024-08-09/hour=09/{NOW}-w1.avro",
        f"symbol=ETHUSDT/date=2024-08-09/hour=09/{NOW + 700}-w1.avro",
    ]
    assert sorted(listed) == [f"predictions/{key}" for key in written]
    btc_records = read_avro(bodies[f"predictions/{written[0]}"])
    eth_records = read_avro(bodies[f"predictions/{written[1]}"])

    def fields(record: dict[str, Any]) -> dict[str, Any]:
        out = {k: record[k] for k in PredictionResult.__struct_fields__}
        out["timestamp"] = as_ms(record["timestamp"])
        return out

    expected_btc = [s.prediction for s in scored] + [btc[2]]
    assert [fields(r) for r in btc_records] == [
        {f: getattr(p, f) for f in PredictionResult.__struct_fields__} for p in expected_btc
    ]
    for record, s in zip(btc_records[:2], scored, strict=True):
        assert record["realized_price"] == 60_020.0
        assert record["realized_time_ms"] == btc[1].target_time_ms
        assert record["abs_error"] == s.abs_error
        assert record["direction_hit"] is s.direction_hit
    unscored = [btc_records[2], *eth_records]
    for record in unscored:
        assert (
            record["realized_price"],
            record["realized_time_ms"],
            record["abs_error"],
            record["direction_hit"],
        ) == (None, None, None, None)
    assert [fields(r) for r in eth_records] == [
        {f: getattr(eth[0], f) for f in PredictionResult.__struct_fields__}
    ]


def test_history_flush_with_nothing_buffered_writes_nothing(aws_env: pytest.MonkeyPatch) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        writer = HistoryWriter(S3ObjectStore(s3, BUCKET, "predictions"), "w1")

        assert writer.flush() == []
        assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_history_is_dated_by_the_first_prediction_in_utc(aws_env: pytest.MonkeyPatch) -> None:
    before_midnight = 1_723_161_599_000  # 2024-08-08T23:59:59Z
    items = [
        prediction("BTCUSDT", before_midnight + 2_000, 1.0, 1.0),
        prediction("BTCUSDT", before_midnight, 1.0, 1.0),
    ]
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        writer = HistoryWriter(S3ObjectStore(s3, BUCKET), "w2", prefix="/history/")
        writer.add(items)

        (key,) = writer.flush()
        stored = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    assert key == f"history/symbol=BTCUSDT/date=2024-08-08/hour=23/{before_midnight}-w2.avro"
    records = read_avro(stored)
    assert [as_ms(r["timestamp"]) for r in records] == [before_midnight + 2_000, before_midnight]


# -- EmfMetrics --------------------------------------------------------------------------------
def emf_documents(out: str) -> list[dict[str, Any]]:
    docs = []
    for line in out.splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and "_aws" in doc:
            docs.append(doc)
    return docs


def test_emf_metrics_flush_one_document_with_the_model_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aws_lambda_powertools import Metrics

    from btcpred.inference.aws import EmfMetrics

    metrics = Metrics(namespace="btcpred", service="t")
    metrics.clear_metrics()  # Powertools keeps metrics per process: start from none
    capsys.readouterr()
    emf = EmfMetrics(metrics)
    emf.property("ModelVersion", "btcpred-mlp/1.0.0")
    emf.add("Predictions", "Count", 1)
    emf.add("Predictions", "Count", 1)
    emf.add("TickDuration", "Milliseconds", 12.5)

    emf.flush()

    (doc,) = emf_documents(capsys.readouterr().out)
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "btcpred"
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "Predictions": "Count",
        "TickDuration": "Milliseconds",
    }
    assert doc["Predictions"] == [1.0, 1.0]
    assert doc["TickDuration"] == [12.5]
    assert doc["ModelVersion"] == "btcpred-mlp/1.0.0"
    assert doc["service"] == "t"


def test_emf_metrics_keep_the_model_version_on_every_flush(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aws_lambda_powertools import Metrics

    from btcpred.inference.aws import EmfMetrics

    metrics = Metrics(namespace="btcpred", service="t")
    metrics.clear_metrics()  # Powertools keeps metrics per process: start from none
    capsys.readouterr()
    emf = EmfMetrics(metrics)
    emf.property("ModelVersion", "btcpred-mlp/1.0.0")
    emf.add("Predictions", "Count", 1)
    emf.flush()
    emf.property("ModelVersion", "btcpred-mlp/2.0.0")
    emf.add("Predictions", "Count", 3)
    emf.flush()

    first, second = emf_documents(capsys.readouterr().out)
    assert (first["Predictions"], first["ModelVersion"]) == ([1.0], "btcpred-mlp/1.0.0")
    assert (second["Predictions"], second["ModelVersion"]) == ([3.0], "btcpred-mlp/2.0.0")
