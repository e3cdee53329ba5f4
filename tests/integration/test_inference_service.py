"""The inference service against real Redis, a local Binance REST server and real models.

Every tick is driven with explicit times (``service.tick(now_ms, deadline_ms)``) except the
lease handover, which runs two real :func:`run_loop` threads on the wall clock. Redis outages
use a private ``redis-server`` that the test stops and restarts on the same port.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import orjson
import pytest
import redis

from btcpred.features import FeatureSnapshot
from btcpred.inference import (
    InferenceService,
    PredictionResult,
    RecordingMetrics,
    RestFeatures,
    ScoredPrediction,
    TickReport,
    build_service,
    run_loop,
)
from btcpred.inference.service import LoopReport
from btcpred.keys import RedisKeys
from btcpred.klines import Kline
from btcpred.model import OnnxModel, open_registry
from btcpred.model.dataset import dataset_from_klines
from btcpred.model.metadata import read_metadata
from btcpred.model.registry import CurrentPointer, LocalObjectStore
from btcpred.model.runtime import ModelOutputs
from btcpred.model.train import TrainConfig, train, write_model
from btcpred.redisconn import RedisClient, connect
from btcpred.settings import InferenceSettings
from btcpred.sim import services
from btcpred.sim.binance_rest import BinanceRestServer, Fault
from btcpred.sim.services import RedisServer

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = str(ROOT / "models")
SYMBOL = "BTCUSDT"
KEYS = RedisKeys()
LATEST = KEYS.features_latest(SYMBOL)
FALLBACK = KEYS.features_fallback(SYMBOL)
FEATURE_HISTORY = KEYS.features_history(SYMBOL)
PREDICTION = KEYS.predictions(SYMBOL).latest
HISTORY = KEYS.predictions(SYMBOL).history
SCORED = KEYS.predictions(SYMBOL).scored
PENDING = KEYS.predictions(SYMBOL).pending
HEALTH = KEYS.health
LEASE = KEYS.lease
TICKER = "/api/v3/ticker/24hr"
NOWHERE = "http://127.0.0.1:9"  # REST base for services that must never use it
T0 = 1_723_161_600_000  # 2024-08-09T00:00:00Z
FAR = T0 + 3_600_000  # a deadline no explicit-time test reaches

FEATURES: dict[str, float | None] = {
    "price": 60_000.0,
    "volume": 10.0,
    "vwap": 60_000.0,
    "price_change_1m": 1e-4,
    "price_change_5m": 5e-4,
    "volume_avg_1m": 10.0,
    "trade_intensity": 5.0,
    "bid_ask_spread": 1e-6,
    "order_book_imbalance": 0.1,
    "rsi_5m": 55.0,
    "macd_signal": 2.0,
    "bollinger_position": 0.6,
}
"""A complete, plausible feature point."""


def features(ts: int, **changes: float | None) -> bytes:
    """The ``features:{S}:latest`` document of :data:`FEATURES` at ``ts`` with ``changes``."""
    return FeatureSnapshot.build(SYMBOL, ts, {**FEATURES, **changes}).to_json()


def recorded(service: InferenceService) -> RecordingMetrics:
    metrics = service.metrics
    assert isinstance(metrics, RecordingMetrics)
    return metrics


def only(report: TickReport) -> PredictionResult:
    """The tick's single prediction (one symbol is configured)."""
    assert report.skipped == []
    assert len(report.results) == 1
    return report.results[0]


MakeService = Callable[..., InferenceService]


def _builder(default_url: str, cluster: bool, clients: list[Any]) -> MakeService:
    def make(
        *,
        owner: str = "a",
        url: str = default_url,
        rest_url: str = NOWHERE,
        short_timeouts: bool = False,
        **settings: Any,
    ) -> InferenceService:
        settings.setdefault("model_path", SHIPPED)
        config = InferenceSettings(
            redis_url=url, redis_cluster=cluster, binance_rest_url=rest_url, **settings
        )
        client = connect(url, cluster=cluster, timeout_s=0.25 if short_timeouts else 2.0)
        clients.append(client)
        return build_service(config, owner=owner, metrics=RecordingMetrics(), client=client)

    return make


@pytest.fixture
def make_service(redis_url: str) -> Iterator[MakeService]:
    """Build services on a single node with the shipped model (or ``model_path``)."""
    clients: list[Any] = []
    yield _builder(redis_url, False, clients)
    for client in clients:
        client.close()


@pytest.fixture
def db(any_redis: tuple[RedisClient, str, bool]) -> RedisClient:
    """The emptied Redis of :func:`make_any`: a single node, then a Redis Cluster."""
    return any_redis[0]


@pytest.fixture
def make_any(any_redis: tuple[RedisClient, str, bool]) -> Iterator[MakeService]:
    """Like :func:`make_service`, on a single node and then on a Redis Cluster."""
    _, url, cluster = any_redis
    clients: list[Any] = []
    yield _builder(url, cluster, clients)
    for client in clients:
        client.close()


@pytest.fixture
def rest(warmup_klines: list[Kline]) -> Iterator[BinanceRestServer]:
    with BinanceRestServer(warmup_klines) as server:
        yield server


class RecordingRest(RestFeatures):
    """The real REST fallback, keeping every feature point it built."""

    def __init__(self, original: RestFeatures) -> None:
        super().__init__(original.client)
        self.built: list[FeatureSnapshot] = []

    def features(self, symbol: str, now_ms: int) -> FeatureSnapshot:
        snap = super().features(symbol, now_ms)
        self.built.append(snap)
        return snap


class FailingModel(OnnxModel):
    """The real model's session and metadata, but every run fails as onnxruntime might."""

    def run(self, features: npt.NDArray[np.floating]) -> ModelOutputs:
        raise RuntimeError("onnxruntime: simulated session failure")


# -- 1. stream features ------------------------------------------------------------------------
def test_fresh_stream_features_give_a_seed_result_in_redis(
    make_any: MakeService, db: RedisClient
) -> None:
    service = make_any()
    db.set(LATEST, features(T0 - 200))

    report = service.tick(T0, FAR)

    assert report.role == "active"
    result = only(report)
    assert result.symbol == SYMBOL
    assert result.timestamp == T0
    assert result.current_price == 60_000.0
    assert result.predicted_price != result.current_price
    assert abs(result.predicted_price / result.current_price - 1) < 0.01
    assert result.prediction_horizon_seconds == 60
    assert 0.0 <= result.confidence <= 1.0
    assert result.model_version == "btcpred-mlp/1.0.0"
    assert result.features_age_ms == 200
    assert result.inference_latency_ms > 0
    assert result.source == "redis"
    assert list(orjson.loads(result.to_json())) == [
        "symbol",
        "timestamp",
        "current_price",
        "predicted_price",
        "prediction_horizon_seconds",
        "confidence",
        "model_version",
        "features_age_ms",
        "inference_latency_ms",
        "source",
    ]
    assert db.get(PREDICTION) == result.to_json()
    assert 0 < db.ttl(PREDICTION) <= 30
    assert db.lrange(HISTORY, 0, -1) == [result.to_json()]
    health = orjson.loads(db.get(HEALTH) or b"null")
    assert health["mode"] == "stream"
    assert health["owner"] == "a"
    assert health["redis_reachable"] is True
    assert health["model_version"] == "btcpred-mlp/1.0.0"
    assert health["sources"] == {SYMBOL: "redis"}
    assert health["last_prediction_ms"] == T0
    metrics = recorded(service)
    assert metrics.total("PredictionsFromRedis") == 1
    assert metrics.total("PredictionsFromFallback") == 0
    assert metrics.total("FallbackStaleFeatures") == 0


def test_a_second_tick_pushes_onto_the_history_newest_first(
    make_any: MakeService, db: RedisClient
) -> None:
    service = make_any()
    db.set(LATEST, features(T0))
    first = only(service.tick(T0, FAR))
    db.set(LATEST, features(T0 + 1500, price=60_010.0, vwap=60_010.0))

    second = only(service.tick(T0 + 1500, FAR))

    assert second.current_price == 60_010.0
    assert db.get(PREDICTION) == second.to_json()
    assert db.lrange(HISTORY, 0, -1) == [second.to_json(), first.to_json()]


# -- 2./3. stale stream features -----------------------------------------------------------------
def test_stale_stream_features_use_the_fresh_redis_fallback_without_rest(
    make_any: MakeService, db: RedisClient, rest: BinanceRestServer
) -> None:
    service = make_any(rest_url=rest.url)
    db.set(LATEST, features(T0 - 6_000))  # max_feature_age_ms is 5000
    db.set(FALLBACK, features(T0 - 1_000, price=60_010.0, vwap=60_010.0))

    result = only(service.tick(T0, FAR))

    assert result.source == "fallback"
    assert result.current_price == 60_010.0
    assert result.features_age_ms == 1_000
    metrics = recorded(service)
    assert metrics.total("FallbackStaleFeatures") == 1
    assert metrics.total("FallbackRedisFeatures") == 1
    assert metrics.total("FallbackRest") == 0
    assert metrics.total("PredictionsFromFallback") == 1
    assert len(rest.requests) == 0
    assert db.get(PREDICTION) == result.to_json()
    assert orjson.loads(db.get(HEALTH) or b"null")["mode"] == "fallback"


def test_stale_features_and_no_fallback_key_use_the_rest_ticker(
    make_service: MakeService,
    redis_client: redis.Redis,
    rest: BinanceRestServer,
    warmup_klines: list[Kline],
) -> None:
    service = make_service(rest_url=rest.url)
    assert service.rest is not None
    spy = service.rest = RecordingRest(service.rest)
    redis_client.set(LATEST, features(T0 - 6_000))

    result = only(service.tick(T0, FAR))

    last = float(f"{warmup_klines[-1].close:.8f}")  # the ticker's lastPrice
    assert rest.requests.count(TICKER) == 1
    assert result.source == "fallback"
    assert result.current_price == last
    assert result.features_age_ms == 0
    metrics = recorded(service)
    assert metrics.total("FallbackStaleFeatures") == 1
    assert metrics.total("FallbackRedisFeatures") == 0
    assert metrics.total("FallbackRest") == 1
    assert len(spy.built) == 1
    snap = spy.built[0]
    assert snap.timestamp == T0
    assert snap.price == last
    assert snap.rsi_5m == 50.0
    assert snap.macd_signal == 0.0
    assert snap.bollinger_position == 0.5
    assert snap.price_change_1m == 0.0
    assert snap.order_book_imbalance == 0.0  # the local ticker's best bid/ask have no quantity
    assert snap.bid_ask_spread == pytest.approx(0.01 / last, rel=1e-6)
    day_volume = sum(k.volume for k in warmup_klines)  # the whole fixture is within 24 h
    assert snap.volume == pytest.approx(day_volume / 1440, rel=1e-6)
    assert redis_client.get(PREDICTION) == result.to_json()


def test_stale_fallback_key_is_ignored_for_the_rest_ticker(
    make_service: MakeService, redis_client: redis.Redis, rest: BinanceRestServer
) -> None:
    service = make_service(rest_url=rest.url)
    redis_client.set(LATEST, features(T0 - 6_000))
    redis_client.set(FALLBACK, features(T0 - 5_001, price=1.0))

    result = only(service.tick(T0, FAR))

    assert rest.requests.count(TICKER) == 1
    assert result.current_price != 1.0
    assert recorded(service).total("FallbackRedisFeatures") == 0
    assert recorded(service).total("FallbackRest") == 1


# -- 4. REST errors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(429, retry_after_s=1),
        Fault.status(451),
        Fault.malformed(),
        Fault.delay(2.0),
    ],
    ids=["429", "451", "malformed", "timeout"],
)
def test_a_failed_rest_fallback_skips_the_tick_and_the_next_one_recovers(
    fault: Fault,
    make_service: MakeService,
    redis_client: redis.Redis,
    rest: BinanceRestServer,
) -> None:
    service = make_service(rest_url=rest.url, rest_timeout_s=0.2)
    redis_client.set(LATEST, features(T0 - 60_000))
    rest.faults.put(fault)

    failed = service.tick(T0, FAR)

    assert failed.role == "active"
    assert failed.results == []
    assert len(failed.skipped) == 1
    assert failed.ms < 1_500  # a timeout costs rest_timeout_s, not the server's delay
    assert rest.requests.count(TICKER) == 1
    assert redis_client.get(PREDICTION) is None
    assert redis_client.llen(HISTORY) == 0
    metrics = recorded(service)
    assert metrics.total("RestErrors") == 1
    assert metrics.total("SkippedPredictions") == 1
    assert metrics.total("Predictions") == 0
    assert service.health(T0)["last_error"] is not None

    recovered = only(service.tick(T0 + 1_500, FAR))  # Retry-After (1 s) has passed

    assert recovered.source == "fallback"
    assert rest.requests.count(TICKER) == 2
    assert redis_client.get(PREDICTION) == recovered.to_json()
    assert metrics.total("RestErrors") == 1


def test_rest_retry_after_holds_back_requests_until_it_has_passed(
    make_service: MakeService, redis_client: redis.Redis, rest: BinanceRestServer
) -> None:
    service = make_service(rest_url=rest.url)
    redis_client.set(LATEST, features(T0 - 60_000))
    rest.faults.put(Fault.status(429, retry_after_s=5))

    reports = [service.tick(T0 + k * 1_500, FAR) for k in range(4)]  # T0 .. T0 + 4.5 s

    assert rest.requests.count(TICKER) == 1
    for report in reports:
        assert report.results == []
        assert len(report.skipped) == 1
    assert recorded(service).total("RestErrors") == 4
    assert redis_client.get(PREDICTION) is None

    result = only(service.tick(T0 + 5_000, FAR))

    assert rest.requests.count(TICKER) == 2
    assert result.source == "fallback"


def test_no_fresh_features_and_no_rest_configured_skips_the_tick(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = InferenceSettings(model_path=SHIPPED, redis_url=redis_url)
    with redis.Redis.from_url(redis_url) as client:
        service = build_service(
            settings, owner="a", metrics=RecordingMetrics(), client=client, rest=False
        )
        redis_client.set(LATEST, features(T0 - 60_000))

        report = service.tick(T0, FAR)

    assert report.results == []
    assert len(report.skipped) == 1
    assert recorded(service).total("SkippedPredictions") == 1
    assert redis_client.get(PREDICTION) is None


# -- 5. missing features ------------------------------------------------------------------------
def test_a_missing_feature_takes_its_last_known_value_at_0_8_confidence(
    make_service: MakeService, redis_client: redis.Redis
) -> None:
    service = make_service()
    redis_client.set(LATEST, features(T0))
    complete_first = only(service.tick(T0, FAR))
    redis_client.set(LATEST, features(T0 + 1_500, rsi_5m=None))

    report = service.tick(T0 + 1_500, FAR)

    filled = only(report)
    assert report.outcomes[0].filled == ("rsi_5m",)
    assert report.outcomes[0].linear_fallback is False
    # the same point, complete, through another service on its own Redis database
    redis_client.flushdb()
    reference = make_service(owner="b")
    redis_client.set(LATEST, features(T0 + 1_500))
    complete = only(reference.tick(T0 + 1_500, FAR))
    assert complete.confidence == complete_first.confidence  # the same inputs
    assert 0 < complete.confidence < 1
    assert filled.confidence == pytest.approx(0.8 * complete.confidence, rel=1e-12)
    assert filled.predicted_price == pytest.approx(complete.predicted_price, rel=1e-12)
    metrics = recorded(service)
    assert metrics.total("FallbackMissingFeatures") == 1
    assert metrics.total("FallbackLinearTrend") == 0
    assert recorded(reference).total("FallbackMissingFeatures") == 0


def test_a_missing_feature_never_seen_falls_back_to_the_linear_trend(
    make_service: MakeService, redis_client: redis.Redis
) -> None:
    service = make_service()
    redis_client.set(LATEST, features(T0, rsi_5m=None))

    report = service.tick(T0, FAR)

    result = only(report)
    assert report.outcomes[0].linear_fallback is True
    assert result.confidence == 0.3
    assert result.predicted_price == result.current_price  # one price: no trend yet
    metrics = recorded(service)
    assert metrics.total("FallbackMissingFeatures") == 1
    assert metrics.total("FallbackLinearTrend") == 1
    assert redis_client.get(PREDICTION) == result.to_json()


def test_an_implausible_feature_counts_as_missing(
    make_service: MakeService, redis_client: redis.Redis
) -> None:
    service = make_service()
    redis_client.set(LATEST, features(T0))
    only(service.tick(T0, FAR))
    redis_client.set(LATEST, features(T0 + 1_500, rsi_5m=250.0))

    report = service.tick(T0 + 1_500, FAR)

    assert report.outcomes[0].implausible == ("rsi_5m",)
    assert report.outcomes[0].filled == ("rsi_5m",)
    assert recorded(service).total("FallbackMissingFeatures") == 1


# -- 6. model failure ---------------------------------------------------------------------------
def test_a_failing_model_gives_the_linear_trend_at_0_3(
    make_service: MakeService, redis_client: redis.Redis
) -> None:
    service = make_service()
    real = service.predictor.model
    service.predictor.model = FailingModel(real.session, real.metadata, real.raw_onnx)

    results: list[PredictionResult] = []
    for k in range(5):  # +15 every 1.5 s: a slope of 10 per second
        price = 60_000.0 + 15 * k
        redis_client.set(LATEST, features(T0 + k * 1_500, price=price, vwap=price))
        report = service.tick(T0 + k * 1_500, FAR)
        assert report.outcomes[0].linear_fallback is True
        assert report.outcomes[0].model_error is not None
        results.append(only(report))

    last = results[-1]
    assert all(r.confidence == 0.3 for r in results)
    assert all(r.model_version == "btcpred-mlp/1.0.0" for r in results)
    assert results[0].predicted_price == results[0].current_price
    assert last.current_price == 60_060.0
    assert last.predicted_price > last.current_price
    assert last.predicted_price == pytest.approx(60_060.0 + 10 * 60, rel=1e-9)
    assert recorded(service).total("FallbackLinearTrend") == 5
    assert redis_client.get(PREDICTION) == last.to_json()

    service.predictor.model = real  # the model is back: so is its prediction
    redis_client.set(LATEST, features(T0 + 7_500))
    back = service.tick(T0 + 7_500, FAR)
    assert back.outcomes[0].linear_fallback is False
    assert only(back).confidence != 0.3
    assert recorded(service).total("FallbackLinearTrend") == 5


def test_the_feature_history_seeds_the_linear_trend_from_the_first_tick(
    make_service: MakeService, redis_client: redis.Redis
) -> None:
    service = make_service()
    real = service.predictor.model
    service.predictor.model = FailingModel(real.session, real.metadata, real.raw_onnx)
    for ts, price in ((T0 - 3_000, 59_970.0), (T0 - 1_500, 59_985.0), (T0, 60_000.0)):
        redis_client.lpush(FEATURE_HISTORY, features(ts, price=price, vwap=price))
    redis_client.set(LATEST, features(T0))

    result = only(service.tick(T0, FAR))

    assert service.predictor.recent_prices(SYMBOL) == [
        (T0 - 3_000, 59_970.0),
        (T0 - 1_500, 59_985.0),
        (T0, 60_000.0),
    ]
    assert result.confidence == 0.3
    assert result.predicted_price == pytest.approx(60_000.0 + 10 * 60, rel=1e-9)


# -- 7./9. Redis outages ------------------------------------------------------------------------
def test_redis_outage_switches_to_direct_rest_and_back(
    make_service: MakeService, rest: BinanceRestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = RedisServer().start()
    port = server.port
    revived: RedisServer | None = None
    try:
        service = make_service(url=server.url, rest_url=rest.url, short_timeouts=True)
        with redis.Redis.from_url(server.url) as admin:
            admin.set(LATEST, features(T0))
            first = service.tick(T0, FAR)
        assert first.role == "active"
        assert only(first).source == "redis"

        server.stop()
        down = service.tick(T0 + 1_500, FAR)

        assert down.role == "direct-rest"
        assert only(down).source == "fallback"
        assert rest.requests.count(TICKER) == 1
        health = service.health(T0 + 1_500)
        assert health["redis_reachable"] is False
        assert health["mode"] == "direct-rest"
        metrics = recorded(service)
        assert metrics.total("RedisUnavailable") >= 1
        assert metrics.total("DirectRestMode") == 1

        monkeypatch.setattr(services, "free_port", lambda: port)
        revived = RedisServer().start()
        assert revived.port == port
        with redis.Redis.from_url(revived.url) as admin:
            admin.set(LATEST, features(T0 + 3_000))
            back = service.tick(T0 + 3_000, FAR)  # the 1 s retry delay has passed

            assert back.role == "active"
            result = only(back)
            assert result.source == "redis"
            assert admin.get(PREDICTION) == result.to_json()
            assert admin.get(LEASE) == f"a|{FAR}".encode()
            health_doc = orjson.loads(admin.get(HEALTH) or b"null")
        assert health_doc["redis_reachable"] is True
        assert health_doc["mode"] == "stream"
        assert service.health(T0 + 3_000)["redis_reachable"] is True
        assert rest.requests.count(TICKER) == 1
    finally:
        server.stop()
        if revived is not None:
            revived.stop()


def test_a_holder_takes_its_own_lease_back_after_a_short_outage(
    make_service: MakeService, rest: BinanceRestServer
) -> None:
    """Redis stalls for less than the lease's TTL: the key still names this owner afterwards."""
    with RedisServer() as server:
        service = make_service(url=server.url, rest_url=rest.url, short_timeouts=True)
        with redis.Redis.from_url(server.url) as admin:
            admin.set(LATEST, features(T0))
            assert service.tick(T0, FAR).role == "active"
            admin.execute_command("CLIENT", "PAUSE", 1200)  # the service's 250 ms timeout hits

            stalled = service.tick(T0 + 1_500, FAR)

            assert stalled.role == "direct-rest"
            assert only(stalled).source == "fallback"
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # the pause ends by itself
                try:
                    with redis.Redis.from_url(server.url, socket_timeout=0.2) as probe:
                        probe.ping()
                    break
                except redis.RedisError:
                    continue
            assert admin.get(LEASE) == f"a|{FAR}".encode()  # still ours: TTL is 3 intervals
            admin.set(LATEST, features(T0 + 3_000))

            back = service.tick(T0 + 3_000, FAR)

            assert back.role == "active"
            assert only(back).source == "redis"
            assert admin.get(PREDICTION) == back.results[0].to_json()


def test_a_standby_takes_over_in_an_outage_only_at_the_holders_deadline(
    make_service: MakeService, rest: BinanceRestServer
) -> None:
    with RedisServer() as server:
        holder = make_service(owner="a", url=server.url, short_timeouts=True)
        standby = make_service(owner="b", url=server.url, rest_url=rest.url, short_timeouts=True)
        with redis.Redis.from_url(server.url) as admin:
            admin.set(LATEST, features(T0))
        holder_deadline = T0 + 6_000
        assert holder.tick(T0, holder_deadline).role == "active"
        watching = standby.tick(T0, FAR)
        assert watching.role == "standby"
        assert watching.results == []
        assert standby.holder_deadline_ms == holder_deadline

        server.stop()
        waiting = [standby.tick(T0 + k * 1_500, FAR) for k in (1, 2, 3)]  # up to T0 + 4.5 s

        assert [r.role for r in waiting] == ["standby"] * 3
        assert all(r.results == [] for r in waiting)
        assert len(rest.requests) == 0
        assert standby.redis_up is False
        assert standby.health(T0 + 4_500)["redis_reachable"] is False

        taken = standby.tick(holder_deadline, FAR)

        assert taken.role == "direct-rest"
        assert only(taken).source == "fallback"
        assert rest.requests.count(TICKER) == 1
        assert standby.health(holder_deadline)["mode"] == "direct-rest"


# -- 8. lease handover --------------------------------------------------------------------------
def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class LoopThread(threading.Thread):
    """:func:`run_loop` on the wall clock in a thread (after ``go`` is set, when given)."""

    def __init__(
        self,
        service: InferenceService,
        deadline_ms: int,
        on_tick: Callable[[TickReport], None],
        go: threading.Event | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.service, self.deadline_ms, self.on_tick, self.go = service, deadline_ms, on_tick, go
        self.report: LoopReport | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if self.go is not None and not self.go.wait(timeout=10):
                raise TimeoutError("never told to start")
            self.report = run_loop(
                self.service, clock_ms=wall_ms, deadline_ms=self.deadline_ms, on_tick=self.on_tick
            )
        except BaseException as exc:  # handed to the test thread
            self.error = exc


def test_two_overlapping_loops_hand_the_lease_over_without_a_gap(
    make_any: MakeService, db: RedisClient
) -> None:
    loop_settings: dict[str, Any] = {
        "interval_s": 0.1,
        "broadcast_budget_ms": 50,
        "max_feature_age_ms": 600_000,
    }
    start = wall_ms()
    db.set(LATEST, features(start))
    ticks: list[tuple[int, str, str]] = []
    lock = threading.Lock()
    b_may_start = threading.Event()

    def record(owner: str) -> Callable[[TickReport], None]:
        def on_tick(report: TickReport) -> None:
            with lock:
                ticks.append((report.time_ms, owner, report.role))
            if report.time_ms >= start + 500:  # B starts half-way through A's invocation
                b_may_start.set()

        return on_tick

    loop_a = LoopThread(make_any(owner="a", **loop_settings), start + 1_000, record("a"))
    loop_b = LoopThread(
        make_any(owner="b", **loop_settings), start + 2_000, record("b"), go=b_may_start
    )
    for loop in (loop_a, loop_b):
        loop.start()
    for loop in (loop_a, loop_b):
        loop.join(timeout=15)
    assert not loop_a.is_alive()
    assert not loop_b.is_alive()
    assert loop_a.error is None
    assert loop_b.error is None
    assert loop_a.report is not None
    assert loop_b.report is not None

    active = sorted((t, owner) for t, owner, role in ticks if role == "active")
    a_active = [t for t, owner in active if owner == "a"]
    b_active = [t for t, owner in active if owner == "b"]
    b_standby = [t for t, owner, role in ticks if owner == "b" and role == "standby"]
    assert loop_a.report.active_ticks == len(a_active) >= 8
    assert loop_b.report.active_ticks == len(b_active) >= 8
    assert loop_a.report.ticks == len(a_active)  # A never stood by
    assert b_standby, "B must have overlapped A and waited"
    assert max(b_standby) < min(b_active)
    assert min(b_active) > max(a_active)
    slots = [t // 100 for t, _ in active]
    assert len(slots) == len(set(slots)), "two owners predicted on the same grid point"
    gaps = [later - earlier for earlier, later in zip(slots, slots[1:], strict=False)]
    assert max(gaps) <= 2
    last_point = max(b_active) // 100 * 100  # the grid point of B's last tick
    assert db.get(LEASE) == f"|released|{last_point}".encode()  # B released it at its end
    latest = PredictionResult.from_json(db.get(PREDICTION) or b"")
    assert latest.timestamp == max(b_active)


def test_a_late_standby_tick_never_predicts_the_grid_point_the_holder_just_predicted(
    make_any: MakeService, db: RedisClient
) -> None:
    """B's tick for a grid point runs after A predicted that point and released the lease (a
    loaded machine): B must stand by for that point and take over from the next one."""
    a, b = make_any(owner="a"), make_any(owner="b")
    db.set(LATEST, features(T0))
    assert b.tick(T0 - 1_500, T0 + 60_000).role == "active"  # b held the lease before ...
    b.close(T0 - 1_500)  # ... and ended, so a takes over at the next grid point
    assert a.tick(T0, T0 + 1_500).role == "active"
    a.close(T0 + 1_000)  # a's last grid point was T0

    late = b.tick(T0, FAR)  # b's (new invocation's) tick for T0 runs only now
    db.set(LATEST, features(T0 + 1_500))
    next_point = b.tick(T0 + 1_500, FAR)

    assert (late.role, late.results) == ("standby", [])
    assert next_point.role == "active"
    assert only(next_point).timestamp == T0 + 1_500


def fake_clock(*readings: int) -> Callable[[], int]:
    """A clock giving ``readings`` in turn, then the last one again."""
    it = iter(readings)
    last = [readings[0]]

    def read() -> int:
        last[0] = next(it, last[0])
        return last[0]

    return read


def test_through_run_loop_a_late_tick_loses_its_grid_point_to_the_holder_that_predicted_it(
    make_any: MakeService, db: RedisClient
) -> None:
    """A's loop ticks the grid point T0 at T0 + 3 ms and ends; B's loop wakes for the same
    point at T0 + 40 ms. The handover is decided by grid points, not by when ticks ran."""
    a, b = make_any(owner="a"), make_any(owner="b")
    db.set(LATEST, features(T0))
    no_sleep: Callable[[float], None] = lambda _s: None  # noqa: E731 - the clocks jump

    ran_a = run_loop(
        a, clock_ms=fake_clock(T0 - 5, T0 - 5, T0 + 3), deadline_ms=T0 + 1_000, sleep=no_sleep
    )
    ran_b = run_loop(
        b, clock_ms=fake_clock(T0 - 10, T0 - 10, T0 + 40), deadline_ms=T0 + 1_000, sleep=no_sleep
    )

    assert (ran_a.ticks, ran_a.active_ticks) == (1, 1)
    assert db.get(LEASE) == f"|released|{T0}".encode()  # the grid point, not T0 + 3
    assert (ran_b.ticks, ran_b.active_ticks) == (1, 0)


# -- 10. accuracy -------------------------------------------------------------------------------
def test_predictions_are_scored_once_their_horizon_has_passed(
    make_service: MakeService, redis_client: redis.Redis
) -> None:
    service = make_service()
    made: list[PredictionResult] = []
    for t in (T0, T0 + 1_500):
        redis_client.set(LATEST, features(t))
        report = service.tick(t, FAR)
        assert report.scored == []
        made.append(only(report))
    assert made[0].predicted_price == made[1].predicted_price  # the same features
    assert made[0].predicted_price != 60_000.0

    redis_client.set(LATEST, features(T0 + 59_999, price=60_100.0, vwap=60_100.0))
    early = service.tick(T0 + 59_999, FAR)
    assert early.scored == []  # not yet at the first target time
    redis_client.set(LATEST, features(T0 + 60_000, price=60_100.0, vwap=60_100.0))
    up = service.tick(T0 + 60_000, FAR)
    redis_client.set(LATEST, features(T0 + 61_500, price=59_900.0, vwap=59_900.0))
    down = service.tick(T0 + 61_500, FAR)

    assert [s.prediction for s in up.scored] == [made[0]]
    assert [s.prediction for s in down.scored] == [made[1]]
    first, second = up.scored[0], down.scored[0]
    assert first.realized_price == 60_100.0
    assert first.realized_time_ms == T0 + 60_000
    assert first.abs_error == abs(made[0].predicted_price - 60_100.0)
    assert first.naive_abs_error == 100.0
    assert second.realized_price == 59_900.0
    assert second.abs_error == abs(made[1].predicted_price - 59_900.0)
    assert second.naive_abs_error == 100.0
    predicts_up = made[0].predicted_price > 60_000.0
    assert first.direction_hit is predicts_up
    assert second.direction_hit is (not predicts_up)
    metrics = recorded(service)
    assert metrics.values["AbsError"] == [first.abs_error, second.abs_error]
    assert metrics.values["NaiveAbsError"] == [100.0, 100.0]
    assert sorted(metrics.values["DirectionHit"]) == [0.0, 1.0]
    stored = [
        msgspec.json.decode(raw, type=ScoredPrediction)
        for raw in redis_client.lrange(SCORED, 0, -1)
    ]
    assert stored == [second, first]  # newest first


def test_pending_predictions_are_handed_to_the_next_invocation_and_scored_there(
    make_any: MakeService, db: RedisClient
) -> None:
    a = make_any(owner="a")
    db.set(LATEST, features(T0))
    from_a = only(a.tick(T0, T0 + 1_000))

    a.close(T0 + 1_000)

    raw = db.get(PENDING)
    assert raw is not None
    assert msgspec.json.decode(raw, type=list[PredictionResult]) == [from_a]
    assert 0 < db.ttl(PENDING) <= 600
    assert db.get(LEASE) == f"|released|{T0}".encode()  # free for ticks after a's last
    assert a.accuracy.depth == 0

    b = make_any(owner="b")
    db.set(LATEST, features(T0 + 1_500))
    first_b = b.tick(T0 + 1_500, FAR)

    assert first_b.role == "active"
    from_b = only(first_b)
    assert db.exists(PENDING) == 0  # taken with GETDEL
    assert b.accuracy.pending(SYMBOL) == [from_a, from_b]
    assert orjson.loads(db.get(HEALTH) or b"null")["pending_predictions"] == 2

    db.set(LATEST, features(T0 + 60_000, price=60_050.0, vwap=60_050.0))
    scoring = b.tick(T0 + 60_000, FAR)

    assert [s.prediction for s in scoring.scored] == [from_a]
    assert scoring.scored[0].abs_error == abs(from_a.predicted_price - 60_050.0)
    assert recorded(b).values["AbsError"] == [scoring.scored[0].abs_error]
    assert [
        msgspec.json.decode(r, type=ScoredPrediction).prediction for r in db.lrange(SCORED, 0, -1)
    ] == [from_a]


# -- 11. hot reload -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(warmup_klines: list[Kline], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny versions of btcpred-mlp, "1" and "2"."""
    data = dataset_from_klines(warmup_klines, source="fixture")
    root = tmp_path_factory.mktemp("trained")
    return [
        write_model(train(data, TrainConfig(version=v, max_epochs=2, seed=s)), root / v)
        for v, s in (("1", 1), ("2", 2))
    ]


def test_hot_reload_adopts_a_new_version_and_refuses_a_broken_one(
    make_service: MakeService, redis_client: redis.Redis, trained: list[Path], tmp_path: Path
) -> None:
    root = tmp_path / "registry"
    registry = open_registry(str(root))
    registry.publish(trained[0])
    service = make_service(model_path=str(root))
    metrics = recorded(service)
    redis_client.set(LATEST, features(T0))
    assert only(service.tick(T0, FAR)).model_version == "btcpred-mlp/1"
    assert service.check_model(T0 + 100) is False  # nothing new

    registry.publish(trained[1])

    assert service.check_model(T0 + 200) is True
    assert service.model_loaded_ms == T0 + 200
    redis_client.set(LATEST, features(T0 + 1_500))
    assert only(service.tick(T0 + 1_500, FAR)).model_version == "btcpred-mlp/2"
    assert metrics.total("ModelReloads") == 1
    assert metrics.properties["ModelVersion"] == "btcpred-mlp/2"
    assert orjson.loads(redis_client.get(HEALTH) or b"null")["model_version"] == "btcpred-mlp/2"

    corrupt = b"\x08\x07corrupt onnx" * 64
    sha = "sha256:" + hashlib.sha256(corrupt).hexdigest()
    meta = msgspec.structs.replace(read_metadata(trained[1]), version="3", onnx_sha256=sha)
    store = LocalObjectStore(root)
    store.put("btcpred-mlp/3/model.onnx", corrupt)
    store.put("btcpred-mlp/3/metadata.json", meta.to_json())
    pointer = CurrentPointer(
        name="btcpred-mlp", version="3", onnx_sha256=sha, published_at="2024-08-09T00:00:00+00:00"
    )
    store.put("btcpred-mlp/current.json", msgspec.json.encode(pointer))

    assert service.check_model(T0 + 2_000) is False
    assert metrics.total("ModelReloadFailures") == 1
    assert service.predictor.model.version == "btcpred-mlp/2"
    redis_client.set(LATEST, features(T0 + 3_000))
    still = only(service.tick(T0 + 3_000, FAR))
    assert still.model_version == "btcpred-mlp/2"
    assert math.isfinite(still.predicted_price)
    assert still.confidence != 0.3  # the old model, not the linear fallback

    assert service.check_model(T0 + 4_000) is False  # the same pointer is not retried
    assert metrics.total("ModelReloadFailures") == 1
    assert metrics.total("ModelReloads") == 1
