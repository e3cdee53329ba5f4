"""Issue 11 on the inference side, against real Redis (single node and Redis Cluster):
outages and cold starts on either kind, features from the future, state of a warm container
that ages out, the health document's TTL, typed store errors, the bounded broadcast."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from botocore.config import Config
from redis.cluster import RedisCluster

from btcpred.features import FeatureSnapshot
from btcpred.inference import InferenceService, RecordingMetrics, TickReport, build_service
from btcpred.inference.connections import RedisConnectionRegistry
from btcpred.inference.errors import StoreRejectedError, StoreUnavailableError
from btcpred.inference.predictor import FILL_MAX_AGE_MS
from btcpred.inference.result import PredictionResult
from btcpred.inference.store import InferenceStore
from btcpred.keys import RedisKeys
from btcpred.klines import Kline
from btcpred.model import OnnxModel
from btcpred.model.runtime import ModelOutputs
from btcpred.redisconn import RedisClient, connect, is_cluster
from btcpred.settings import InferenceSettings
from btcpred.sim.binance_rest import BinanceRestServer
from btcpred.sim.lambda_events import LocalLambdaContext, load_lambda_module
from btcpred.sim.management_api import ManagementApiServer
from btcpred.sim.services import RedisServer, free_port
from tests.samples import COMPLETE_FEATURES

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = str(ROOT / "models")
SYMBOL = "BTCUSDT"
KEYS = RedisKeys()
LATEST = KEYS.features_latest(SYMBOL)
FEATURE_HISTORY = KEYS.features_history(SYMBOL)
PREDICTION = KEYS.predictions(SYMBOL).latest
HISTORY = KEYS.predictions(SYMBOL).history
TICKER = "/api/v3/ticker/24hr"
NOWHERE = "http://127.0.0.1:9"
T0 = 1_723_161_600_000  # 2024-08-09T00:00:00Z
FAR = T0 + 3_600_000


def features(ts: int, **changes: float | None) -> bytes:
    return FeatureSnapshot.build(SYMBOL, ts, {**COMPLETE_FEATURES, **changes}).to_json()


def recorded(service: InferenceService) -> RecordingMetrics:
    assert isinstance(service.metrics, RecordingMetrics)
    return service.metrics


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.02)


MakeService = Callable[..., InferenceService]


@pytest.fixture
def make(any_redis: tuple[RedisClient, str, bool]) -> Iterator[MakeService]:
    """Services wired by ``build_service`` from settings alone (the Lambda's wiring), on a
    single node and then on a Redis Cluster; ``client`` overrides the built client."""
    _, url, cluster = any_redis
    built: list[InferenceService] = []

    def make_one(*, owner: str = "a", rest_url: str = NOWHERE, **settings: Any) -> InferenceService:
        client = settings.pop("client", None)
        settings.setdefault("model_path", SHIPPED)
        config = InferenceSettings(
            redis_url=url, redis_cluster=cluster, binance_rest_url=rest_url, **settings
        )
        service = build_service(config, owner=owner, metrics=RecordingMetrics(), client=client)
        built.append(service)
        return service

    yield make_one
    for service in built:
        if service.broadcaster is not None:
            service.broadcaster.finish()


@pytest.fixture
def db(any_redis: tuple[RedisClient, str, bool]) -> RedisClient:
    return any_redis[0]


@pytest.fixture
def rest(warmup_klines: list[Kline]) -> Iterator[BinanceRestServer]:
    with BinanceRestServer(warmup_klines) as server:
        yield server


def pause(db: RedisClient, ms: int) -> None:
    """CLIENT PAUSE on every node: Redis stops answering for ``ms``, then comes back by itself."""
    if is_cluster(db):
        db.execute_command("CLIENT", "PAUSE", ms, target_nodes=RedisCluster.ALL_NODES)
    else:
        db.execute_command("CLIENT", "PAUSE", ms)


def wait_until_answering(url: str, cluster: bool) -> None:
    def answers() -> bool:
        try:
            probe = connect(url, cluster=cluster, timeout_s=0.2)
            try:
                return bool(probe.ping())
            finally:
                probe.close()
        except Exception:
            return False

    wait_for(answers)


# -- item 1: outages and cold starts on either kind of Redis ------------------------------------
def test_an_outage_means_direct_rest_and_then_back_to_stream_on_either_kind(
    make: MakeService,
    db: RedisClient,
    any_redis: tuple[RedisClient, str, bool],
    rest: BinanceRestServer,
) -> None:
    _, url, cluster = any_redis
    service = make(rest_url=rest.url)
    db.set(LATEST, features(T0))
    assert service.tick(T0, FAR).role == "active"

    pause(db, 1_500)
    down = service.tick(T0 + 1_500, FAR)

    assert down.role == "direct-rest"
    assert [r.source for r in down.results] == ["fallback"]
    assert rest.requests.count(TICKER) == 1
    assert service.health(T0 + 1_500)["redis_reachable"] is False
    wait_until_answering(url, cluster)
    db.set(LATEST, features(T0 + 3_000))

    back = service.tick(T0 + 3_000, FAR)  # the 1 s retry delay has passed

    assert back.role == "active"
    assert [r.source for r in back.results] == ["redis"]
    assert db.get(PREDICTION) == back.results[0].to_json()
    assert db.get(KEYS.lease) == f"a|{FAR}".encode()
    assert orjson.loads(db.get(KEYS.health) or b"null")["mode"] == "stream"


def test_a_cold_start_with_redis_down_predicts_from_rest_and_connects_later(
    make: MakeService,
    db: RedisClient,
    any_redis: tuple[RedisClient, str, bool],
    rest: BinanceRestServer,
) -> None:
    _, url, cluster = any_redis
    db.set(LATEST, features(T0))
    pause(db, 1_500)  # a cluster client cannot even read the slot map now

    service = make(rest_url=rest.url)  # builds its own client from the settings
    cold = service.tick(T0, FAR)

    assert cold.role == "direct-rest"
    assert [r.source for r in cold.results] == ["fallback"]
    assert recorded(service).total("RedisUnavailable") >= 1
    wait_until_answering(url, cluster)
    db.set(LATEST, features(T0 + 1_500))

    connected = service.tick(T0 + 1_500, FAR)

    assert connected.role == "active"
    assert [r.source for r in connected.results] == ["redis"]
    assert db.get(PREDICTION) == connected.results[0].to_json()


def test_a_cold_start_with_no_redis_at_all_still_starts(rest: BinanceRestServer) -> None:
    settings = InferenceSettings(
        model_path=SHIPPED,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        redis_cluster=True,
        binance_rest_url=rest.url,
    )

    service = build_service(settings, owner="a", metrics=RecordingMetrics())
    report = service.tick(T0, FAR)

    assert report.role == "direct-rest"
    assert [r.source for r in report.results] == ["fallback"]


# -- item 3: features from the future -----------------------------------------------------------
@pytest.mark.parametrize(
    "ahead_ms", [60_000, T0 * 999], ids=["a-minute-ahead", "microseconds-read-as-ms"]
)
def test_features_from_the_future_are_not_fresh(
    ahead_ms: int, make: MakeService, db: RedisClient, rest: BinanceRestServer
) -> None:
    service = make(rest_url=rest.url)
    db.set(LATEST, features(T0 + ahead_ms))

    report = service.tick(T0, FAR)

    assert [r.source for r in report.results] == ["fallback"]
    assert rest.requests.count(TICKER) == 1
    assert recorded(service).total("FutureFeatures") == 1
    assert recorded(service).total("PredictionsFromRedis") == 0


def test_features_within_the_clock_skew_tolerance_are_fresh(
    make: MakeService, db: RedisClient
) -> None:
    service = make()
    db.set(LATEST, features(T0 + 900))  # this host's clock is 0.9 s behind the exchange's

    report = service.tick(T0, FAR)

    assert [(r.source, r.features_age_ms) for r in report.results] == [("redis", 0)]
    assert recorded(service).total("FutureFeatures") == 0


class FailingModel(OnnxModel):
    """The real model's session and metadata, but every run fails as onnxruntime might."""

    def run(self, features: Any) -> ModelOutputs:
        raise RuntimeError("onnxruntime: simulated session failure")


def failing(service: InferenceService) -> None:
    real = service.predictor.model
    service.predictor.model = FailingModel(real.session, real.metadata, real.raw_onnx)


def test_a_future_history_point_does_not_hold_the_trend_back(
    make: MakeService, db: RedisClient
) -> None:
    service = make()
    failing(service)
    db.lpush(FEATURE_HISTORY, features(T0 + 3_600_000, price=1_000.0, vwap=1_000.0))
    db.set(LATEST, features(T0, price=60_000.0, vwap=60_000.0))
    service.tick(T0, FAR)
    db.set(LATEST, features(T0 + 1_500, price=60_015.0, vwap=60_015.0))

    later = service.tick(T0 + 1_500, FAR)

    assert service.predictor.recent_prices(SYMBOL) == [(T0, 60_000.0), (T0 + 1_500, 60_015.0)]
    assert later.results[0].predicted_price == pytest.approx(60_015.0 + 10 * 60, rel=1e-9)


# -- item 6: warm-container state ages out ------------------------------------------------------
def test_a_last_known_value_fills_until_it_expires(make: MakeService, db: RedisClient) -> None:
    service = make()
    db.set(LATEST, features(T0))
    service.tick(T0, FAR)
    within = T0 + FILL_MAX_AGE_MS
    db.set(LATEST, features(within, rsi_5m=None))

    filled = service.tick(within, FAR)
    expired_at = within + 1_500  # the last rsi_5m is now FILL_MAX_AGE_MS + 1.5 s old
    db.set(LATEST, features(expired_at, rsi_5m=None))
    expired = service.tick(expired_at, FAR)

    assert filled.outcomes[0].filled == ("rsi_5m",)
    assert filled.outcomes[0].linear_fallback is False
    assert expired.outcomes[0].linear_fallback is True  # no value left to fill with
    assert expired.results[0].confidence == 0.3
    assert "rsi_5m" in (expired.outcomes[0].model_error or "")


def test_the_trend_forgets_prices_from_before_a_long_freeze(
    make: MakeService, db: RedisClient
) -> None:
    service = make()
    failing(service)
    db.set(LATEST, features(T0, price=50_000.0, vwap=50_000.0))
    service.tick(T0, FAR)
    resumed = T0 + 600_000  # the container sat frozen for ten minutes
    for k, price in enumerate((60_000.0, 60_015.0)):
        db.set(LATEST, features(resumed + k * 1_500, price=price, vwap=price))
        report = service.tick(resumed + k * 1_500, FAR)

    assert service.predictor.recent_prices(SYMBOL) == [
        (resumed, 60_000.0),
        (resumed + 1_500, 60_015.0),
    ]
    assert report.results[0].predicted_price == pytest.approx(60_015.0 + 10 * 60, rel=1e-9)


@pytest.mark.parametrize(("interval_s", "ttl_ms"), [(30.0, 90_000), (1.5, 4_500), (0.2, 2_000)])
def test_the_health_document_lives_three_intervals(
    interval_s: float, ttl_ms: int, make: MakeService, db: RedisClient
) -> None:
    service = make(interval_s=interval_s, broadcast_budget_ms=50, max_feature_age_ms=600_000)
    db.set(LATEST, features(T0))

    service.tick(T0, FAR)

    assert ttl_ms - 1_000 < db.pttl(KEYS.health) <= ttl_ms


def test_a_standby_that_froze_does_not_trust_the_holders_old_deadline(
    rest: BinanceRestServer,
) -> None:
    with RedisServer() as server:
        settings = InferenceSettings(
            model_path=SHIPPED, redis_url=server.url, binance_rest_url=rest.url
        )
        holder = build_service(settings, owner="a", metrics=RecordingMetrics())
        standby = build_service(settings, owner="b", metrics=RecordingMetrics())
        assert holder.tick(T0, T0 + 600_000).role == "active"
        assert standby.tick(T0, FAR).role == "standby"
        assert standby.holder_deadline_ms == T0 + 600_000
        standby.close(T0 + 100)  # the standby's invocation ends; its container freezes
        server.stop()  # ... and while it is frozen, Redis goes away

        standby.begin(T0 + 300_000)  # five minutes later: a new invocation in that container
        resumed = standby.tick(T0 + 300_000, FAR)

    assert resumed.role == "direct-rest"  # it cannot know who holds the lease by now
    assert [r.source for r in resumed.results] == ["fallback"]


def test_a_standby_keeps_a_deadline_it_saw_just_before_the_outage(
    rest: BinanceRestServer,
) -> None:
    with RedisServer() as server:
        settings = InferenceSettings(
            model_path=SHIPPED, redis_url=server.url, binance_rest_url=rest.url
        )
        holder = build_service(settings, owner="a", metrics=RecordingMetrics())
        standby = build_service(settings, owner="b", metrics=RecordingMetrics())
        assert holder.tick(T0, T0 + 60_000).role == "active"
        assert standby.tick(T0, FAR).role == "standby"
        server.stop()

        waiting = standby.tick(T0 + 1_500, FAR)
        later = standby.tick(T0 + 30_000, FAR)  # the outage is old, the knowledge was fresh

    assert (waiting.role, later.role) == ("standby", "standby")
    assert standby.holder_deadline_ms == T0 + 60_000


def test_a_container_that_held_the_lease_resumes_without_believing_it_holds_it(
    make: MakeService,
    db: RedisClient,
    any_redis: tuple[RedisClient, str, bool],
    rest: BinanceRestServer,
) -> None:
    _, url, cluster = any_redis
    a = make(owner="a", rest_url=rest.url)
    b = make(owner="b")
    db.set(LATEST, features(T0))
    assert a.tick(T0, T0 + 60_000).role == "active"
    pause(db, 1_500)
    a.close(T0 + 100)  # the invocation ends in a Redis stall: the lease is not released
    assert a.last_error is not None
    wait_until_answering(url, cluster)
    db.delete(KEYS.lease)  # a's lease expired while it sat frozen ...
    assert b.tick(T0 + 200_000, T0 + 260_000).role == "active"  # ... and b took it

    a.begin(T0 + 300_000)  # a's container resumes for a new invocation

    assert a.active is False
    assert a.lease.held is False
    assert a.health(T0 + 300_000)["mode"] == "standby"
    assert a.health(T0 + 300_000)["last_error"] is None  # not the previous invocation's
    assert a.tick(T0 + 300_000, FAR).role == "standby"


# -- item 9: typed errors instead of driver exceptions ------------------------------------------
def test_the_store_raises_typed_errors(db: RedisClient) -> None:
    dead = InferenceStore(connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2))
    db.set(HISTORY, b"a string where a list belongs")
    live = InferenceStore(db)
    result = PredictionResult(
        symbol=SYMBOL,
        timestamp=T0,
        current_price=60_000.0,
        predicted_price=60_010.0,
        prediction_horizon_seconds=60,
        confidence=0.5,
        model_version="btcpred-mlp/1.0.0",
        features_age_ms=100,
        inference_latency_ms=1.0,
        source="redis",
    )

    with pytest.raises(StoreUnavailableError) as down:
        dead.read([SYMBOL], 10, take_pending=True)
    with pytest.raises(StoreRejectedError) as refused:
        live.write([result], [], None)  # LPUSH onto a string: WRONGTYPE

    assert down.value.retryable is True
    assert refused.value.retryable is False


def test_a_key_of_the_wrong_type_is_a_bad_document_not_an_outage(
    make: MakeService, db: RedisClient
) -> None:
    service = make()
    db.set(LATEST, features(T0))
    db.set(FEATURE_HISTORY, b"a string where a list belongs")

    report = service.tick(T0, FAR)

    assert report.role == "active"
    assert [r.source for r in report.results] == ["redis"]
    assert recorded(service).total("BadFeatureDocuments") == 1
    assert recorded(service).total("RedisUnavailable") == 0
    assert service.redis_up is True


def test_a_refused_write_is_counted_and_the_role_kept(make: MakeService, db: RedisClient) -> None:
    service = make()
    db.set(LATEST, features(T0))
    db.set(HISTORY, b"a string where a list belongs")

    first = service.tick(T0, FAR)
    db.set(LATEST, features(T0 + 1_500))
    second = service.tick(T0 + 1_500, FAR)

    assert (first.role, second.role) == ("active", "active")
    assert [r.source for r in second.results] == ["redis"]
    assert recorded(service).total("RedisErrors") == 2
    assert recorded(service).total("RedisUnavailable") == 0
    assert service.redis_up is True
    assert db.get(KEYS.lease) == f"a|{FAR}".encode()


# -- item 5: the broadcast is bounded and ends with the invocation ------------------------------
def broadcast_threads() -> int:
    return sum(t.name.startswith("broadcast") for t in threading.enumerate())


@pytest.fixture
def apigw(aws_env: pytest.MonkeyPatch, server: ManagementApiServer) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=server.url,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )


def test_the_invocation_ends_with_no_broadcast_thread_or_post_left(
    redis_url: str, redis_client: RedisClient, server: ManagementApiServer, apigw: Any
) -> None:
    settings = InferenceSettings(
        model_path=SHIPPED, redis_url=redis_url, broadcast_budget_ms=50, binance_rest_url=NOWHERE
    )
    service = build_service(settings, owner="a", metrics=RecordingMetrics(), apigw_client=apigw)
    registry = RedisConnectionRegistry(redis_client)  # type: ignore[arg-type]  # a single node
    for cid in ("fast", "slow"):
        server.connect(cid)
        registry.add(cid, SYMBOL, T0)
    server.delay_s["slow"] = 0.3
    before = broadcast_threads()
    redis_client.set(LATEST, features(T0))
    ticks: list[TickReport] = []
    for k in range(3):  # slow's first post is still running at the 2nd and 3rd tick
        redis_client.set(LATEST, features(T0 + k * 100))
        ticks.append(service.tick(T0 + k * 100, FAR))

    service.close(T0 + 300)

    assert broadcast_threads() == before
    assert service.broadcaster is not None
    assert service.broadcaster.backlog == 0
    assert ticks[0].broadcasts[0].sent == 1  # fast
    assert len(server.messages("slow")) == 1  # the first; the newer ones were dropped
    assert len(server.messages("fast")) == 3


# -- item 1: the Lambda handler itself on a Redis Cluster ---------------------------------------
def inference_handler_env(
    aws_env: pytest.MonkeyPatch,
    redis_url: str,
    *,
    cluster: bool,
    rest_url: str,
    secret_arn: str | None = None,
) -> None:
    """The inference handler's environment for a short test loop: the shipped model, 0.2 s
    ticks, the REST fallback at ``rest_url``, no WebSocket endpoint or history."""
    values = {
        "REDIS_URL": redis_url,
        "REDIS_CLUSTER": str(cluster).lower(),
        "MODEL_PATH": SHIPPED,
        "PREDICTION_INTERVAL_SECONDS": "0.2",
        "BROADCAST_BUDGET_MS": "100",
        "LOOP_STOP_MARGIN_MS": "100",
        "BINANCE_REST_URL": rest_url,
        "POWERTOOLS_METRICS_NAMESPACE": "btcpred",
    }
    if secret_arn is not None:
        values["REDIS_AUTH_SECRET_ARN"] = secret_arn
    for name, value in values.items():
        aws_env.setenv(name, value)
    for name in ("WEBSOCKET_ENDPOINT", "SYMBOLS", "PREDICTION_HISTORY_URI"):
        aws_env.delenv(name, raising=False)


def test_the_inference_handler_predicts_against_a_redis_cluster(
    aws_env: pytest.MonkeyPatch,
    redis_cluster_client: RedisClient,
    redis_cluster_url: str,
    rest: BinanceRestServer,
) -> None:
    inference_handler_env(aws_env, redis_cluster_url, cluster=True, rest_url=rest.url)
    now = time.time_ns() // 1_000_000
    redis_cluster_client.set(LATEST, features(now))
    module = load_lambda_module(ROOT / "lambdas" / "inference" / "handler.py", "inference_cluster")

    response = module.handler(
        {"source": "aws.events"},
        LocalLambdaContext(function_name="btcpred-inference", remaining_ms=1_500),
    )

    assert response["active_ticks"] >= 5
    latest = PredictionResult.from_json(redis_cluster_client.get(PREDICTION) or b"")
    assert (latest.source, latest.current_price) == ("redis", COMPLETE_FEATURES["price"])
    assert redis_cluster_client.llen(HISTORY) == response["active_ticks"]
    released = redis_cluster_client.get(KEYS.lease) or b""
    assert released.startswith(b"|released|")  # released at the end, for later ticks
    pending = orjson.loads(redis_cluster_client.get(KEYS.predictions(SYMBOL).pending) or b"[]")
    assert len(pending) == response["active_ticks"]
    assert orjson.loads(redis_cluster_client.get(KEYS.health) or b"{}")["mode"] == "stream"
    assert rest.requests.count(TICKER) == 0
