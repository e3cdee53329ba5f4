"""The WebSocket and HTTP Lambda handlers end to end: Lambda-shaped events, real Redis (a single
node and a Redis Cluster, through ``any_redis``), replies through boto3 to the local management
API. What a client may send is untrusted: nothing it sends raises, and nothing it receives
shows internal detail."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from btcpred.features import FeatureSnapshot
from btcpred.inference.result import PredictionResult
from btcpred.keys import RedisKeys
from btcpred.redisconn import RedisClient
from btcpred.sim.lambda_events import LocalLambdaContext, load_lambda_module
from btcpred.sim.management_api import ManagementApiServer
from btcpred.sim.services import free_port

ROOT = Path(__file__).resolve().parents[2]
WEBSOCKET = ROOT / "lambdas" / "websocket" / "handler.py"
API = ROOT / "lambdas" / "api" / "handler.py"
TOKEN = "secret"  # noqa: S105 - a test value
KEYS = RedisKeys()
LONE_SURROGATE = "\ud800"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def stored_result(symbol: str = "BTCUSDT") -> PredictionResult:
    return PredictionResult(
        symbol=symbol,
        timestamp=now_ms(),
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
def rc(any_redis: tuple[RedisClient, str, bool]) -> RedisClient:
    return any_redis[0]


@pytest.fixture
def env(
    aws_env: pytest.MonkeyPatch, any_redis: tuple[RedisClient, str, bool]
) -> pytest.MonkeyPatch:
    _, url, cluster = any_redis
    for name in ("WEBSOCKET_TOKEN", "WEBSOCKET_TOKEN_SECRET_ARN", "WEBSOCKET_ENDPOINT", "SYMBOLS"):
        aws_env.delenv(name, raising=False)
    aws_env.setenv("REDIS_URL", url)
    aws_env.setenv("REDIS_CLUSTER", "true" if cluster else "false")
    return aws_env


def members(client: RedisClient, symbol: str = "BTCUSDT") -> set[str]:
    raw: list[bytes] = client.zrange(KEYS.connections(symbol), 0, -1)  # type: ignore[assignment]
    return {m.decode() for m in raw}


def ws_keys(client: RedisClient) -> list[Any]:
    return [k for k in client.keys("*") if k.startswith(b"ws:")]  # type: ignore[union-attr]


# -- WebSocket ---------------------------------------------------------------------------------
WsCall = Callable[..., dict[str, Any]]


def ws_event(
    route: str,
    cid: str | None,
    *,
    query: object = None,
    body: object = None,
    is_base64: bool = False,
) -> dict[str, Any]:
    return {
        "requestContext": {
            "routeKey": route,
            "connectionId": cid,
            "eventType": {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE"),
            "domainName": "abc.execute-api.eu-west-1.amazonaws.com",
            "stage": "prod",
            "requestTimeEpoch": now_ms(),
        },
        "queryStringParameters": query,
        "body": body,
        "isBase64Encoded": is_base64,
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

    def call(route: str, cid: str | None, **kwargs: Any) -> dict[str, Any]:
        response: dict[str, Any] = module.handler(ws_event(route, cid, **kwargs), context)
        return response

    return call


@pytest.fixture
def ws(ws_env: pytest.MonkeyPatch) -> WsCall:
    return ws_handler()


def replies(server: ManagementApiServer, cid: str) -> list[dict[str, Any]]:
    return [json.loads(m) for m in server.messages(cid)]


def test_connect_with_the_token_stores_the_connection(ws: WsCall, rc: RedisClient) -> None:
    response = ws("$connect", "c1", query={"token": TOKEN})

    assert response["statusCode"] == 200
    assert members(rc) == {"c1"}
    assert rc.get(KEYS.connection("c1")) == b"BTCUSDT"
    assert 0 < rc.ttl(KEYS.connection("c1")) <= 7200  # type: ignore[operator]


def test_connect_may_choose_a_configured_symbol(ws: WsCall, rc: RedisClient) -> None:
    response = ws("$connect", "c1", query={"token": TOKEN, "symbol": "ethusdt"})

    assert response["statusCode"] == 200
    assert members(rc, "ETHUSDT") == {"c1"}
    assert members(rc) == set()


@pytest.mark.parametrize(
    "query",
    [
        {"token": "wrong"},
        {"token": ""},
        {"symbol": "BTCUSDT"},
        None,
        {"token": TOKEN * 2},
        {"token": LONE_SURROGATE},
        {"token": ["secret"]},
        "token=secret",
    ],
)
def test_connect_without_the_right_token_is_refused_and_not_stored(
    ws: WsCall, rc: RedisClient, query: object
) -> None:
    response = ws("$connect", "c1", query=query)

    assert response["statusCode"] == 401
    assert ws_keys(rc) == []


@pytest.mark.parametrize("symbol", ["DOGEUSDT", LONE_SURROGATE, "BTC{USDT}", 5])
def test_connect_to_an_unknown_symbol_is_a_bad_request(
    ws: WsCall, rc: RedisClient, symbol: object
) -> None:
    response = ws("$connect", "c1", query={"token": TOKEN, "symbol": symbol})

    assert response["statusCode"] == 400
    assert ws_keys(rc) == []


def test_without_a_configured_token_every_client_is_refused(
    env: pytest.MonkeyPatch, server: ManagementApiServer, rc: RedisClient
) -> None:
    env.setenv("WEBSOCKET_ENDPOINT", server.url)
    ws = ws_handler()

    assert ws("$connect", "c1", query={"token": ""})["statusCode"] == 401
    assert ws("$connect", "c2", query={"token": TOKEN})["statusCode"] == 401
    assert ws_keys(rc) == []


def test_the_token_may_come_from_secrets_manager(env: pytest.MonkeyPatch, rc: RedisClient) -> None:
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="btcpred/websocket-token", SecretString="from-the-vault"
        )["ARN"]
        env.setenv("WEBSOCKET_TOKEN_SECRET_ARN", arn)
        ws = ws_handler()

        refused = ws("$connect", "c1", query={"token": TOKEN})
        accepted = ws("$connect", "c2", query={"token": "from-the-vault"})

    assert (refused["statusCode"], accepted["statusCode"]) == (401, 200)
    assert members(rc) == {"c2"}


def test_disconnect_forgets_the_connection(ws: WsCall, rc: RedisClient) -> None:
    ws("$connect", "c1", query={"token": TOKEN})
    ws("$connect", "c2", query={"token": TOKEN})

    response = ws("$disconnect", "c1")
    unknown = ws("$disconnect", "never-connected")

    assert (response["statusCode"], unknown["statusCode"]) == (200, 200)
    assert members(rc) == {"c2"}
    assert rc.exists(KEYS.connection("c1")) == 0


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


def test_a_base64_encoded_body_is_decoded(ws: WsCall, server: ManagementApiServer) -> None:
    server.connect("c1")
    body = base64.b64encode(b'{"action": "ping"}').decode()

    ws("$default", "c1", body=body, is_base64=True)
    ws("$default", "c1", body="not base64 at all!", is_base64=True)

    assert [r["type"] for r in replies(server, "c1")] == ["pong", "error"]


def test_subscribe_answers_subscribed_then_the_latest_prediction(
    ws: WsCall, server: ManagementApiServer, rc: RedisClient
) -> None:
    latest = stored_result("ETHUSDT")
    rc.set(KEYS.predictions("ETHUSDT").latest, latest.to_json())
    server.connect("c1")
    ws("$connect", "c1", query={"token": TOKEN})

    response = ws("$default", "c1", body='{"action": "subscribe", "symbol": "ethusdt"}')

    assert response["statusCode"] == 200
    messages = server.messages("c1")
    assert [json.loads(m) for m in messages[:1]] == [{"type": "subscribed", "symbol": "ETHUSDT"}]
    assert [PredictionResult.from_json(m) for m in messages[1:]] == [latest]
    assert members(rc, "ETHUSDT") == {"c1"}
    assert members(rc, "BTCUSDT") == set()  # moved, not duplicated


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
        '{"action": "' + LONE_SURROGATE + '"}',  # a lone surrogate in the raw text
        '{"action": "subscribe", "symbol": "\\ud800"}',  # ... and as a JSON escape
        '{"action": "\\udfff\\ud800"}',
        "\x00\xff",
        12345,
        {"action": "ping"},  # not a string body at all
    ],
)
def test_a_bad_message_gets_an_error_reply_and_the_connection_stays(
    ws: WsCall, server: ManagementApiServer, rc: RedisClient, body: object
) -> None:
    server.connect("c1")
    ws("$connect", "c1", query={"token": TOKEN})

    response = ws("$default", "c1", body=body)

    assert response["statusCode"] == 200
    (reply,) = replies(server, "c1")
    assert reply["type"] == "error"
    assert isinstance(reply["error"], str)
    assert reply["error"]
    assert members(rc) == {"c1"}


def test_an_error_reply_never_echoes_client_input(ws: WsCall, server: ManagementApiServer) -> None:
    server.connect("c1")

    ws("$default", "c1", body='{"action": "<script>alert(1)</script>"}')

    (reply,) = replies(server, "c1")
    assert "script" not in reply["error"]


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


def test_a_reply_to_a_gone_connection_forgets_it(ws: WsCall, rc: RedisClient) -> None:
    ws("$connect", "c1", query={"token": TOKEN})  # API Gateway has no such connection: 410

    response = ws("$default", "c1", body='{"action": "ping"}')

    assert response["statusCode"] == 200
    assert members(rc) == set()
    assert rc.exists(KEYS.connection("c1")) == 0


def test_an_event_without_a_connection_id_is_a_bad_request(ws: WsCall) -> None:
    assert ws("$connect", None) == {"statusCode": 400}


def test_with_redis_down_connect_is_unavailable_and_subscribe_answers_an_error(
    ws_env: pytest.MonkeyPatch, server: ManagementApiServer
) -> None:
    ws_env.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    ws = ws_handler()  # the cold start itself must not need Redis (cluster clients included)
    server.connect("c1")

    connected = ws("$connect", "c1", query={"token": TOKEN})
    ws("$default", "c1", body='{"action": "subscribe", "symbol": "BTCUSDT"}')

    assert connected["statusCode"] == 503
    (reply,) = replies(server, "c1")
    assert reply == {"type": "error", "error": "service temporarily unavailable; try again"}


# -- HTTP API ----------------------------------------------------------------------------------
HttpCall = Callable[..., tuple[int, dict[str, Any], dict[str, str]]]


def http_handler() -> HttpCall:
    module = load_lambda_module(API, "api_handler")
    context = LocalLambdaContext(function_name="btcpred-api")

    def call(
        path: object, *, method: object = "GET", query: object = None, stage: str = "$default"
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        event = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "queryStringParameters": query,
            "requestContext": {"http": {"method": method, "path": path}, "stage": stage},
            "isBase64Encoded": False,
        }
        response = module.handler(event, context)
        return response["statusCode"], json.loads(response["body"]), response["headers"]

    return call


@pytest.fixture
def http(env: pytest.MonkeyPatch) -> HttpCall:
    env.setenv("SYMBOLS", "BTCUSDT,ETHUSDT")
    return http_handler()


def test_latest_prediction_is_the_stored_result(http: HttpCall, rc: RedisClient) -> None:
    btc, eth = stored_result("BTCUSDT"), stored_result("ETHUSDT")
    rc.set(KEYS.predictions("BTCUSDT").latest, btc.to_json())
    rc.set(KEYS.predictions("ETHUSDT").latest, eth.to_json())

    status, body, headers = http("/prediction/latest")
    eth_status, eth_body, _ = http("/prediction/latest", query={"symbol": "ethusdt"})

    assert status == 200
    assert body == json.loads(btc.to_json())
    assert headers["content-type"] == "application/json"
    assert (eth_status, eth_body) == (200, json.loads(eth.to_json()))


@pytest.mark.parametrize(
    ("path", "stage"),
    [
        ("/prediction/latest/", "$default"),
        ("/prod/prediction/latest", "prod"),
        ("/prod/prediction/latest/", "prod"),
        ("/v1/prediction/latest", "v1"),
    ],
)
def test_routes_work_on_named_stages_and_with_a_trailing_slash(
    http: HttpCall, rc: RedisClient, path: str, stage: str
) -> None:
    rc.set(KEYS.predictions("BTCUSDT").latest, stored_result().to_json())

    status, body, _ = http(path, stage=stage)

    assert status == 200
    assert body["symbol"] == "BTCUSDT"


def test_latest_prediction_without_one_is_unavailable(http: HttpCall, rc: RedisClient) -> None:
    rc.set(KEYS.predictions("ETHUSDT").latest, b"{not a result")

    assert http("/prediction/latest")[0] == 503
    assert http("/prediction/latest", query={"symbol": "ETHUSDT"})[0] == 503


@pytest.mark.parametrize("symbol", ["DOGEUSDT", LONE_SURROGATE, "", "x" * 10_000])
def test_latest_prediction_of_an_unknown_symbol_is_not_found(
    http: HttpCall, rc: RedisClient, symbol: str
) -> None:
    status, body, _ = http("/prediction/latest", query={"symbol": symbol})

    assert status == 404
    assert body["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert symbol not in body["error"] or not symbol


def test_health_without_an_active_predictor_is_unavailable(http: HttpCall) -> None:
    status, body, _ = http("/health")

    assert status == 503
    assert body["redis_reachable"] is True
    assert (body["status"], body["reason"]) == ("unavailable", "no active predictor")


def health_doc(last_prediction_ms: int) -> dict[str, Any]:
    return {
        "owner": "abc123",
        "mode": "stream",
        "model_version": "btcpred-mlp/1.0.0",
        "redis_reachable": True,
        "last_prediction_ms": last_prediction_ms,
        "rss_mb": 123.4,
        "pending_predictions": 40,
        "last_error": "Error 111 connecting to btcpred-redis.abc123.euw1.cache.amazonaws.com",
    }


def test_health_with_a_fresh_predictor_document_is_ok(http: HttpCall, rc: RedisClient) -> None:
    rc.set(KEYS.health, json.dumps(health_doc(now_ms())))
    features = FeatureSnapshot.build("BTCUSDT", now_ms() - 250, {"price": 60_000.0})
    rc.set(KEYS.features_latest("BTCUSDT"), features.to_json())

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
    assert "amazonaws" not in json.dumps(body)  # the predictor's error text stays internal
    assert "owner" not in json.dumps(body)


def test_health_reads_features_under_the_configured_prefix(
    env: pytest.MonkeyPatch, rc: RedisClient
) -> None:
    env.setenv("REDIS_FEATURES_KEY_PREFIX", "feat")
    http = http_handler()
    rc.set(KEYS.health, json.dumps(health_doc(now_ms())))
    features = FeatureSnapshot.build("BTCUSDT", now_ms() - 250, {"price": 60_000.0})
    rc.set(RedisKeys(features_prefix="feat").features_latest("BTCUSDT"), features.to_json())

    status, body, _ = http("/health")

    assert status == 200
    assert 250 <= body["stream_features_age_ms"]["BTCUSDT"] < 5_000


def test_health_with_a_stale_predictor_document_is_unavailable(
    http: HttpCall, rc: RedisClient
) -> None:
    rc.set(KEYS.health, json.dumps(health_doc(now_ms() - 10_000)))  # > 3 intervals

    status, body, _ = http("/health")

    assert status == 503
    assert (body["redis_reachable"], body["reason"]) == (True, "no active predictor")
    assert "abc123" not in json.dumps(body)


def test_health_with_redis_down_is_unavailable_and_names_no_host(env: pytest.MonkeyPatch) -> None:
    port = free_port()
    env.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    http = http_handler()

    status, body, _ = http("/health")
    latest_status, latest_body, _ = http("/prediction/latest")

    assert status == 503
    assert (body["redis_reachable"], body["reason"]) == (False, "store unreachable")
    assert latest_status == 503
    text = json.dumps(body) + json.dumps(latest_body)
    assert "127.0.0.1" not in text
    assert str(port) not in text
    assert "Error" not in text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", None, 7])
def test_other_methods_are_not_allowed(http: HttpCall, method: object) -> None:
    status, _, headers = http("/health", method=method)

    assert status == 405
    assert headers["allow"] == "GET"
    assert http("/prediction/latest", method=method)[0] == 405


@pytest.mark.parametrize(
    "path", ["/", "/predictions", "/healthz", "/prod/health", None, 5, "/" + LONE_SURROGATE]
)
def test_unknown_paths_are_not_found(http: HttpCall, path: object) -> None:
    # "/prod/health" on the $default stage is a path, not a stage prefix
    status, body, _ = http(path)

    assert status == 404
    assert "prod" not in body["error"]


@pytest.mark.parametrize("query", ["symbol=BTCUSDT", ["BTCUSDT"], {"symbol": 5}])
def test_a_malformed_query_is_answered_not_raised(http: HttpCall, query: object) -> None:
    status, _, _ = http("/prediction/latest", query=query)

    assert status in (404, 503)


def test_a_reply_that_fails_is_logged_and_the_route_still_answers(
    ws: WsCall, server: ManagementApiServer, rc: RedisClient
) -> None:
    server.connect("c1")
    ws("$connect", "c1", query={"token": TOKEN})
    server.failing.add("c1")  # the management API answers 500 for it

    response = ws("$default", "c1", body='{"action": "ping"}')

    assert response["statusCode"] == 200
    assert members(rc) == {"c1"}  # failing is not gone: the connection stays


@pytest.mark.parametrize("stored", [b"\xff\xfe", b"BTC{USDT}", b""])
def test_disconnect_with_a_corrupt_stored_symbol_still_forgets_the_connection(
    ws: WsCall, rc: RedisClient, stored: bytes
) -> None:
    rc.set(KEYS.connection("c1"), stored)

    response = ws("$disconnect", "c1")

    assert response["statusCode"] == 200
    assert rc.exists(KEYS.connection("c1")) == 0
