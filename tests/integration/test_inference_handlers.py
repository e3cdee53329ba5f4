"""The WebSocket, HTTP and inference Lambda handlers end to end: Lambda-shaped events, real
Redis, replies through boto3 to the local management API, the shipped model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis

from btcpred.features import FeatureSnapshot
from btcpred.inference.result import PredictionResult
from btcpred.inference.store import HEALTH_KEY, LEASE_KEY
from btcpred.klines import Kline
from btcpred.settings import ConfigError
from btcpred.sim.binance_rest import BinanceRestServer
from btcpred.sim.lambda_events import LocalLambdaContext, load_lambda_module
from tests.samples import COMPLETE_FEATURES

ROOT = Path(__file__).resolve().parents[2]
WEBSOCKET = ROOT / "lambdas" / "websocket" / "handler.py"
API = ROOT / "lambdas" / "api" / "handler.py"
INFERENCE = ROOT / "lambdas" / "inference" / "handler.py"
MODELS = ROOT / "models"
TOKEN = "secret"  # noqa: S105 - a test value


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def env(aws_env: pytest.MonkeyPatch, redis_url: str) -> pytest.MonkeyPatch:
    for name in ("WEBSOCKET_TOKEN", "WEBSOCKET_TOKEN_SECRET_ARN", "WEBSOCKET_ENDPOINT", "SYMBOLS"):
        aws_env.delenv(name, raising=False)
    aws_env.setenv("REDIS_URL", redis_url)
    aws_env.setenv("POWERTOOLS_METRICS_NAMESPACE", "btcpred")
    return aws_env


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
    released = redis_client.get(LEASE_KEY) or b""
    assert released.startswith(b"|released|")  # released, not left to expire
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
    assert (redis_client.get(LEASE_KEY) or b"").startswith(b"|released|")


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
