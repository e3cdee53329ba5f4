"""The WebSocket, HTTP and inference Lambda handlers end to end: Lambda-shaped events, real
Redis, replies through boto3 to the local management API, the shipped model."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import redis
from moto import mock_aws

from btcpred.features import FeatureSnapshot
from btcpred.inference.result import PredictionResult
from btcpred.inference.store import HEALTH_KEY, LEASE_KEY, InferenceStore
from btcpred.klines import Kline
from btcpred.settings import ConfigError, InferenceSettings
from btcpred.sim.binance_rest import BinanceRestServer
from btcpred.sim.lambda_events import LocalLambdaContext, load_lambda_module
from btcpred.sim.management_api import ManagementApiServer
from btcpred.sim.services import free_port
from tests.samples import COMPLETE_FEATURES

ROOT = Path(__file__).resolve().parents[2]
WEBSOCKET = ROOT / "lambdas" / "websocket" / "handler.py"
API = ROOT / "lambdas" / "api" / "handler.py"
INFERENCE = ROOT / "lambdas" / "inference" / "handler.py"
MODELS = ROOT / "models"
TOKEN = "secret"  # noqa: S105 - a test value


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def stored_result(symbol: str = "BTCUSDT", timestamp: int | None = None) -> PredictionResult:
    return PredictionResult(
        symbol=symbol,
        timestamp=now_ms() if timestamp is None else timestamp,
        current_price=60_000.0,
        predicted_price=60_015.25,
        prediction_horizon_seconds=60,
        confidence=0.62,
        model_version="btcpred-mlp/1.0.0",
        features_age_ms=140,
        inference_latency_ms=2.5,
        source="redis",
    )


@pytest.fixture
def env(aws_env: pytest.MonkeyPatch, redis_url: str) -> pytest.MonkeyPatch:
    for name in ("WEBSOCKET_TOKEN", "WEBSOCKET_TOKEN_SECRET_ARN", "WEBSOCKET_ENDPOINT", "SYMBOLS"):
        aws_env.delenv(name, raising=False)
    aws_env.setenv("REDIS_URL", redis_url)
    aws_env.setenv("POWERTOOLS_METRICS_NAMESPACE", "btcpred")
    return aws_env


def members(client: redis.Redis, symbol: str = "BTCUSDT") -> set[str]:
    raw: list[bytes] = client.zrange(f"ws:{symbol}:connections", 0, -1)  # type: ignore[assignment]
    return {m.decode() for m in raw}


# -- WebSocket ---------------------------------------------------------------------------------
WsCall = Callable[..., dict[str, Any]]


def ws_event(
    route: str, cid: str, *, query: dict[str, str] | None = None, body: str | None = None
) -> dict[str, Any]:
    return {
        "requestContext": {
            "routeKey": route,
            "connectionId": cid,
            "eventType": {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE"),
            "domainName": "abc.execute-api.us-east-1.amazonaws.com",
            "stage": "prod",
            "requestTimeEpoch": now_ms(),
        },
        "queryStringParameters": query,
        "body": body,
        "isBase64Encoded": False,
    }


@pytest.fixture
def ws_env(env: pytest.MonkeyPatch, server: ManagementApiServer) -> pytest.MonkeyPatch:
    env.setenv("WEBSOCKET_TOKEN", TOKEN)
    env.setenv("WEBSOCKET_ENDPOINT", server.url)
    env.setenv("SYMBOLS", "BTCUSDT,ETHUSDT")
    return env


def ws_handler() -> WsCall:
    module = load_lambda_module(WEBSOCKET, "websocket_handler")
    context = LocalLambdaContext(function_name="btcpred-websocket")

    def call(route: str, cid: str, **kwargs: Any) -> dict[str, Any]:
        response: dict[str, Any] = module.handler(ws_event(route, cid, **kwargs), context)
        return response

    return call


@pytest.fixture
def ws(ws_env: pytest.MonkeyPatch) -> WsCall:
    return ws_handler()


def replies(server: ManagementApiServer, cid: str) -> list[dict[str, Any]]:
    return [json.loads(m) for m in server.messages(cid)]


def test_connect_with_the_token_stores_the_connection(
    ws: WsCall, redis_client: redis.Redis
) -> None:
    response = ws("$connect", "c1", query={"token": TOKEN})

    assert response["statusCode"] == 200
    assert members(redis_client) == {"c1"}
    assert redis_client.get("ws:conn:c1") == b"BTCUSDT"
    assert 0 < redis_client.ttl("ws:conn:c1") <= 7200


def test_connect_may_choose_a_configured_symbol(ws: WsCall, redis_client: redis.Redis) -> None:
    response = ws("$connect", "c1", query={"token": TOKEN, "symbol": "ethusdt"})

    assert response["statusCode"] == 200
    assert members(redis_client, "ETHUSDT") == {"c1"}
    assert members(redis_client) == set()


@pytest.mark.parametrize(
    "query", [{"token": "wrong"}, {"token": ""}, {"symbol": "BTCUSDT"}, None, {"token": TOKEN * 2}]
)
def test_connect_without_the_right_token_is_refused_and_not_stored(
    ws: WsCall, redis_client: redis.Redis, query: dict[str, str] | None
) -> None:
    response = ws("$connect", "c1", query=query)

    assert response["statusCode"] == 401
    assert members(redis_client) == set()
    assert redis_client.exists("ws:conn:c1") == 0


def test_connect_to_an_unknown_symbol_is_a_bad_request(
    ws: WsCall, redis_client: redis.Redis
) -> None:
    response = ws("$connect", "c1", query={"token": TOKEN, "symbol": "DOGEUSDT"})

    assert response["statusCode"] == 400
    assert redis_client.keys("ws:*") == []


def test_without_a_configured_token_every_client_is_refused(
    env: pytest.MonkeyPatch, server: ManagementApiServer, redis_client: redis.Redis
) -> None:
    env.setenv("WEBSOCKET_ENDPOINT", server.url)
    ws = ws_handler()

    assert ws("$connect", "c1", query={"token": ""})["statusCode"] == 401
    assert ws("$connect", "c2", query={"token": TOKEN})["statusCode"] == 401
    assert redis_client.keys("ws:*") == []


def test_the_token_may_come_from_secrets_manager(
    env: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="btcpred/websocket-token", SecretString="from-the-vault"
        )["ARN"]
        env.setenv("WEBSOCKET_TOKEN_SECRET_ARN", arn)
        ws = ws_handler()

        refused = ws("$connect", "c1", query={"token": TOKEN})
        accepted = ws("$connect", "c2", query={"token": "from-the-vault"})

    assert (refused["statusCode"], accepted["statusCode"]) == (401, 200)
    assert members(redis_client) == {"c2"}


def test_disconnect_forgets_the_connection(ws: WsCall, redis_client: redis.Redis) -> None:
    ws("$connect", "c1", query={"token": TOKEN})
    ws("$connect", "c2", query={"token": TOKEN})

    response = ws("$disconnect", "c1")
    unknown = ws("$disconnect", "never-connected")

    assert (response["statusCode"], unknown["statusCode"]) == (200, 200)
    assert members(redis_client) == {"c2"}
    assert redis_client.exists("ws:conn:c1") == 0


def test_ping_is_answered_with_pong_on_the_connection(
    ws: WsCall, server: ManagementApiServer
) -> None:
    server.connect("c1")
    before = now_ms()

    response = ws("$default", "c1", body='{"action": "ping"}')

    assert response["statusCode"] == 200
    (pong,) = replies(server, "c1")
    assert pong["type"] == "pong"
    assert before <= pong["timestamp"] <= now_ms()


def test_subscribe_answers_subscribed_then_the_latest_prediction(
    ws: WsCall, server: ManagementApiServer, redis_client: redis.Redis
) -> None:
    latest = stored_result("ETHUSDT")
    redis_client.set("prediction:{ETHUSDT}:latest", latest.to_json())
    server.connect("c1")
    ws("$connect", "c1", query={"token": TOKEN})

    response = ws("$default", "c1", body='{"action": "subscribe", "symbol": "ethusdt"}')

    assert response["statusCode"] == 200
    messages = server.messages("c1")
    assert [json.loads(m) for m in messages[:1]] == [{"type": "subscribed", "symbol": "ETHUSDT"}]
    assert [PredictionResult.from_json(m) for m in messages[1:]] == [latest]
    assert members(redis_client, "ETHUSDT") == {"c1"}
    assert members(redis_client, "BTCUSDT") == set()  # moved, not duplicated


def test_subscribe_without_a_prediction_answers_subscribed_only(
    ws: WsCall, server: ManagementApiServer
) -> None:
    server.connect("c1")

    ws("$default", "c1", body='{"action": "subscribe", "symbol": "BTCUSDT"}')

    assert replies(server, "c1") == [{"type": "subscribed", "symbol": "BTCUSDT"}]


@pytest.mark.parametrize(
    "body",
    [
        '{"action": "ping", "pad": "' + "x" * 1100 + '"}',  # larger than MAX_MESSAGE_BYTES
        "not json",
        "",
        None,
        "[1, 2]",
        '{"action": 5}',
        '{"action": "unsubscribe"}',
        '{"action": "subscribe", "symbol": "DOGEUSDT"}',
        '{"action": "subscribe"}',
        '{"action": "subscribe", "symbol": ["BTCUSDT"]}',
    ],
)
def test_a_bad_message_gets_an_error_reply_and_the_connection_stays(
    ws: WsCall, server: ManagementApiServer, redis_client: redis.Redis, body: str | None
) -> None:
    server.connect("c1")
    ws("$connect", "c1", query={"token": TOKEN})

    response = ws("$default", "c1", body=body)

    assert response["statusCode"] == 200
    (reply,) = replies(server, "c1")
    assert reply["type"] == "error"
    assert isinstance(reply["error"], str)
    assert reply["error"]
    assert members(redis_client) == {"c1"}


def test_max_message_bytes_is_configurable(
    ws_env: pytest.MonkeyPatch, server: ManagementApiServer
) -> None:
    ws_env.setenv("MAX_MESSAGE_BYTES", "16")
    ws = ws_handler()
    server.connect("c1")

    ws("$default", "c1", body='{"action":"ping"}')  # 17 bytes
    ws("$default", "c1", body='{"action":"ping"')  # 16 bytes: let through, not JSON

    assert [r["type"] for r in replies(server, "c1")] == ["error", "error"]
    assert "16" in replies(server, "c1")[0]["error"]


def test_a_reply_to_a_gone_connection_forgets_it(
    ws: WsCall, server: ManagementApiServer, redis_client: redis.Redis
) -> None:
    ws("$connect", "c1", query={"token": TOKEN})  # API Gateway has no such connection: 410

    response = ws("$default", "c1", body='{"action": "ping"}')

    assert response["statusCode"] == 200
    assert members(redis_client) == set()
    assert redis_client.exists("ws:conn:c1") == 0


def test_an_event_without_a_connection_id_is_a_bad_request(ws_env: pytest.MonkeyPatch) -> None:
    module = load_lambda_module(WEBSOCKET, "websocket_handler")

    response = module.handler({"requestContext": {"routeKey": "$connect"}}, LocalLambdaContext())

    assert response == {"statusCode": 400}


# -- HTTP API ----------------------------------------------------------------------------------
HttpCall = Callable[..., tuple[int, dict[str, Any], dict[str, str]]]


def http_handler() -> HttpCall:
    module = load_lambda_module(API, "api_handler")
    context = LocalLambdaContext(function_name="btcpred-api")

    def call(
        path: str, *, method: str = "GET", query: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        event = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
            "queryStringParameters": query,
            "requestContext": {"http": {"method": method, "path": path}},
            "isBase64Encoded": False,
        }
        response = module.handler(event, context)
        return response["statusCode"], json.loads(response["body"]), response["headers"]

    return call


@pytest.fixture
def http(env: pytest.MonkeyPatch) -> HttpCall:
    env.setenv("SYMBOLS", "BTCUSDT,ETHUSDT")
    return http_handler()


def test_latest_prediction_is_the_stored_result(http: HttpCall, redis_client: redis.Redis) -> None:
    btc, eth = stored_result("BTCUSDT"), stored_result("ETHUSDT")
    redis_client.set("prediction:{BTCUSDT}:latest", btc.to_json())
    redis_client.set("prediction:{ETHUSDT}:latest", eth.to_json())

    status, body, headers = http("/prediction/latest")
    eth_status, eth_body, _ = http("/prediction/latest", query={"symbol": "ethusdt"})

    assert status == 200
    assert body == json.loads(btc.to_json())
    assert headers["content-type"] == "application/json"
    assert (eth_status, eth_body) == (200, json.loads(eth.to_json()))


def test_latest_prediction_without_one_is_unavailable(
    http: HttpCall, redis_client: redis.Redis
) -> None:
    redis_client.set("prediction:{ETHUSDT}:latest", b"{not a result")

    assert http("/prediction/latest")[0] == 503
    assert http("/prediction/latest", query={"symbol": "ETHUSDT"})[0] == 503


def test_latest_prediction_of_an_unknown_symbol_is_not_found(
    http: HttpCall, redis_client: redis.Redis
) -> None:
    redis_client.set("prediction:{DOGEUSDT}:latest", stored_result("DOGEUSDT").to_json())

    status, body, _ = http("/prediction/latest", query={"symbol": "DOGEUSDT"})

    assert status == 404
    assert "DOGEUSDT" in body["error"]


def test_health_without_an_active_predictor_is_unavailable(http: HttpCall) -> None:
    status, body, _ = http("/health")

    assert status == 503
    assert body["redis_reachable"] is True
    assert body["status"] == "unavailable"


def health_doc(last_prediction_ms: int) -> dict[str, Any]:
    return {
        "owner": "abc123",
        "mode": "stream",
        "model_version": "btcpred-mlp/1.0.0",
        "redis_reachable": True,
        "last_prediction_ms": last_prediction_ms,
        "rss_mb": 123.4,
        "pending_predictions": 40,
    }


def test_health_with_a_fresh_predictor_document_is_ok(
    http: HttpCall, redis_client: redis.Redis
) -> None:
    store = InferenceStore(redis_client, InferenceSettings().prediction_keys)
    store.write([], [], health_doc(now_ms()))
    features = FeatureSnapshot.build("BTCUSDT", now_ms() - 250, {"price": 60_000.0})
    redis_client.set("features:{BTCUSDT}:latest", features.to_json())

    status, body, _ = http("/health")

    assert status == 200
    assert body["status"] == "ok"
    assert body["redis_reachable"] is True
    assert (body["model_version"], body["mode"], body["fallback"]) == (
        "btcpred-mlp/1.0.0",
        "stream",
        False,
    )
    assert body["pending_predictions"] == 40
    assert 0 <= body["last_prediction_age_ms"] < 4500
    assert body["stream_features_age_ms"]["ETHUSDT"] is None
    assert 250 <= body["stream_features_age_ms"]["BTCUSDT"] < 5_000


def test_health_reads_features_under_the_configured_prefix(
    env: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    env.setenv("REDIS_FEATURES_KEY_PREFIX", "feat")
    http = http_handler()
    store = InferenceStore(redis_client, InferenceSettings().prediction_keys)
    store.write([], [], health_doc(now_ms()))
    features = FeatureSnapshot.build("BTCUSDT", now_ms() - 250, {"price": 60_000.0})
    redis_client.set("feat:{BTCUSDT}:latest", features.to_json())

    status, body, _ = http("/health")

    assert status == 200
    assert 250 <= body["stream_features_age_ms"]["BTCUSDT"] < 5_000


def test_health_with_a_stale_predictor_document_is_unavailable(
    http: HttpCall, redis_client: redis.Redis
) -> None:
    redis_client.set(HEALTH_KEY, json.dumps(health_doc(now_ms() - 10_000)))  # > 3 intervals

    status, body, _ = http("/health")

    assert status == 503
    assert body["redis_reachable"] is True
    assert body["predictor"]["owner"] == "abc123"


def test_health_with_redis_down_is_unavailable(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    http = http_handler()

    status, body, _ = http("/health")
    latest_status, _, _ = http("/prediction/latest")

    assert status == 503
    assert body["redis_reachable"] is False
    assert latest_status == 503


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_not_allowed(http: HttpCall, method: str) -> None:
    assert http("/health", method=method)[0] == 405
    assert http("/prediction/latest", method=method)[0] == 405


@pytest.mark.parametrize("path", ["/", "/predictions", "/prediction/latest/", "/healthz"])
def test_unknown_paths_are_not_found(http: HttpCall, path: str) -> None:
    assert http(path)[0] == 404


# -- inference ---------------------------------------------------------------------------------


@pytest.fixture
def rest(warmup_klines: list[Kline]) -> Iterator[BinanceRestServer]:
    with BinanceRestServer(warmup_klines) as server:
        yield server


@pytest.fixture
def inference_env(env: pytest.MonkeyPatch, rest: BinanceRestServer) -> pytest.MonkeyPatch:
    env.setenv("MODEL_PATH", str(MODELS))
    env.setenv("PREDICTION_INTERVAL_SECONDS", "0.2")
    env.setenv("BROADCAST_BUDGET_MS", "100")
    env.setenv("LOOP_STOP_MARGIN_MS", "100")
    env.setenv("BINANCE_REST_URL", rest.url)
    return env


def run_inference(remaining_ms: int = 1500) -> dict[str, int]:
    module: ModuleType = load_lambda_module(INFERENCE, "inference_handler")
    context = LocalLambdaContext(function_name="btcpred-inference", remaining_ms=remaining_ms)
    response: dict[str, int] = module.handler({"source": "aws.events"}, context)
    return response


def test_inference_handler_predicts_every_interval_from_fresh_features(
    inference_env: pytest.MonkeyPatch, redis_client: redis.Redis, rest: BinanceRestServer
) -> None:
    redis_client.set(
        "features:{BTCUSDT}:latest",
        FeatureSnapshot.build("BTCUSDT", now_ms(), COMPLETE_FEATURES).to_json(),
    )

    response = run_inference()

    assert response["ticks"] >= 5
    assert response["active_ticks"] >= 5
    raw = redis_client.get("prediction:{BTCUSDT}:latest")
    assert raw is not None
    latest = PredictionResult.from_json(raw)
    assert (latest.symbol, latest.source, latest.current_price) == ("BTCUSDT", "redis", 60_000.0)
    assert latest.model_version == "btcpred-mlp/1.0.0"
    assert redis_client.llen("prediction:{BTCUSDT}:history") == response["active_ticks"]
    assert redis_client.exists(LEASE_KEY) == 0  # released, not left to expire
    pending = json.loads(redis_client.get("prediction:{BTCUSDT}:pending") or b"[]")
    assert len(pending) == response["active_ticks"]  # handed over to the next invocation
    health = json.loads(redis_client.get(HEALTH_KEY) or b"{}")
    assert (health["mode"], health["model_version"]) == ("stream", "btcpred-mlp/1.0.0")
    assert rest.requests.count("/api/v3/ticker/24hr") == 0


def test_inference_handler_without_stream_features_predicts_from_rest(
    inference_env: pytest.MonkeyPatch, redis_client: redis.Redis, rest: BinanceRestServer
) -> None:
    response = run_inference()

    assert response["active_ticks"] >= 5
    raw = redis_client.get("prediction:{BTCUSDT}:latest")
    assert raw is not None
    assert PredictionResult.from_json(raw).source == "fallback"
    assert json.loads(redis_client.get(HEALTH_KEY) or b"{}")["mode"] == "fallback"
    assert rest.requests.count("/api/v3/ticker/24hr") == response["active_ticks"]
    assert redis_client.exists(LEASE_KEY) == 0


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_inference_handler_standing_by_while_another_holds_the_lease(
    inference_env: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    redis_client.set(LEASE_KEY, f"other|{now_ms() + 60_000}", px=60_000)

    response = run_inference()

    assert response["ticks"] >= 5
    assert response["active_ticks"] == 0
    assert redis_client.exists("prediction:{BTCUSDT}:latest") == 0
    lease = redis_client.get(LEASE_KEY)
    assert isinstance(lease, bytes)
    assert lease.startswith(b"other|")


def test_inference_handler_bad_setting_fails_at_the_first_invocation(
    inference_env: pytest.MonkeyPatch,
) -> None:
    inference_env.setenv("PREDICTION_INTERVAL_SECONDS", "abc")
    module = load_lambda_module(INFERENCE, "inference_handler")  # importing is fine

    with pytest.raises(ConfigError, match="PREDICTION_INTERVAL_SECONDS"):
        module.handler({}, LocalLambdaContext(function_name="btcpred-inference"))
