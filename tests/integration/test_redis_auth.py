"""Redis authentication end to end: the app user's least-privilege ACL on real servers, its
credentials from Secrets Manager (moto), and what an unreadable secret means per function.

The app user is created with exactly ``acl_access_string(RedisKeys())`` (``ACL SETUSER`` on the
single node, and on every node of the 3-node cluster: the tests taking ``app_user`` run on both
through ``any_redis``), under a unique name deleted afterwards. The real paths then run as that
user: the aggregator handler applying Kinesis batches, the inference service ticking with its
lease, broadcast and hand-over, the inference handler, the WebSocket and HTTP handlers. Each
such test ends by reading the servers' ACL LOG: nothing the real paths sent was refused, not
even a request whose failure the code tolerates (a refused store write is counted and skipped,
which would otherwise pass unnoticed).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from botocore.config import Config
from moto import mock_aws
from redis.cluster import RedisCluster
from redis.exceptions import NoPermissionError

from btcpred.credentials import (
    RedisCredentials,
    SecretMalformedError,
    SecretUnreadableError,
    fetch_redis_credentials,
)
from btcpred.events import DepthSnapshot
from btcpred.features import FeatureSnapshot
from btcpred.inference import RecordingMetrics, build_service
from btcpred.inference.connections import RedisConnectionRegistry
from btcpred.inference.result import PredictionResult
from btcpred.keys import RedisKeys, acl_access_string
from btcpred.klines import Kline
from btcpred.records import pack_records
from btcpred.redisconn import LazyCredentials, RedisClient, connect, is_cluster
from btcpred.settings import InferenceSettings
from btcpred.sim.binance_rest import BinanceRestServer
from btcpred.sim.lambda_events import (
    LocalLambdaContext,
    kinesis_event,
    load_lambda_module,
    sequence_numbers,
)
from btcpred.sim.management_api import ManagementApiServer
from btcpred.sources.capture import Capture
from tests.integration.test_aggregator_handler import events_of, reference
from tests.integration.test_client_handlers import http_handler, stored_result, ws_handler
from tests.integration.test_inference_hardening import inference_handler_env
from tests.samples import COMPLETE_FEATURES

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS = ROOT / "lambdas"
SHIPPED = str(ROOT / "models")
SYMBOL = "BTCUSDT"
SHARD = "shardId-000000000000"
KEYS = RedisKeys()
LATEST = KEYS.features_latest(SYMBOL)
PREDICTION = KEYS.predictions(SYMBOL)
TOKEN = "ws-token"  # noqa: S105 - a test value
TICKER = "/api/v3/ticker/24hr"
NOWHERE = "http://127.0.0.1:9"
T0 = 1_723_161_600_000  # 2024-08-09T00:00:00Z
FAR = T0 + 3_600_000
ACL_LOG_ENTRIES = 1_000
"""More than a server keeps (``acllog-max-len`` is 128): ``ACL LOG`` alone returns only 10."""
MISSING_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:btcpred/nothing-AbCdEf"


def features(ts: int) -> bytes:
    return FeatureSnapshot.build(SYMBOL, ts, COMPLETE_FEATURES).to_json()


def on_every_node(admin: RedisClient, *args: Any) -> Any:
    if is_cluster(admin):
        return admin.execute_command(*args, target_nodes=RedisCluster.ALL_NODES)
    return admin.execute_command(*args)


@dataclass(frozen=True)
class AppUser:
    """The app user on one kind of Redis, and the default user's client to set up and check."""

    admin: RedisClient
    url: str
    cluster: bool
    credentials: RedisCredentials

    @property
    def url_with_credentials(self) -> str:
        """``redis://user:pass@host:port/0``: the local way of giving the credentials."""
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{self.credentials.username}:{self.credentials.password}@{rest}"

    @property
    def secret_string(self) -> str:
        """The credentials as the Secrets Manager secret holds them."""
        c = self.credentials
        return json.dumps({"username": c.username, "password": c.password})

    def connect(self) -> RedisClient:
        return connect(self.url, cluster=self.cluster, timeout_s=2.0, credentials=self.credentials)

    def refused(self, context: str | None = None) -> list[str]:
        """``reason:object`` of this user's ACL LOG entries on every node (of one ``context``:
        ``toplevel``, ``lua``, ``multi``)."""
        if is_cluster(self.admin):
            per_node = self.admin.acl_log(  # type: ignore[call-arg]  # cluster-only argument
                count=ACL_LOG_ENTRIES, target_nodes=RedisCluster.ALL_NODES
            )
            entries = [e for node in per_node.values() for e in node]
        else:
            entries = self.admin.acl_log(count=ACL_LOG_ENTRIES)
        name = self.credentials.username
        return sorted(
            f"{e['reason']}:{e['object']}"
            for e in entries
            if e["username"] == name and context in (None, e["context"])
        )


@pytest.fixture
def app_user(any_redis: tuple[RedisClient, str, bool]) -> Iterator[AppUser]:
    """An ACL user with exactly the default schema's access string, on the emptied single node
    and then on the emptied cluster (every node); deleted afterwards."""
    admin, url, cluster = any_redis
    # ElastiCache passwords: 16-128 printable characters, none of , " / @
    credentials = RedisCredentials(f"btcpred-app-{secrets.token_hex(4)}", secrets.token_hex(16))
    rules = acl_access_string(KEYS).split()
    on_every_node(
        admin, "ACL", "SETUSER", credentials.username, "reset", f">{credentials.password}", *rules
    )
    try:
        yield AppUser(admin, url, cluster, credentials)
    finally:
        on_every_node(admin, "ACL", "DELUSER", credentials.username)


@pytest.fixture
def apigw(aws_env: pytest.MonkeyPatch, server: ManagementApiServer) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=server.url,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )


@pytest.fixture
def rest(warmup_klines: list[Kline]) -> Iterator[BinanceRestServer]:
    with BinanceRestServer(warmup_klines) as server:
        yield server


def create_secret(name: str, value: str) -> str:
    """A secret in (moto's) Secrets Manager; its ARN."""
    arn: str = boto3.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
    return arn


# -- what the access string allows and refuses --------------------------------------------------
def test_the_app_user_is_refused_keys_outside_the_schema_and_dangerous_commands(
    app_user: AppUser,
) -> None:
    user, admin = app_user.connect(), app_user.admin
    assert user.set(LATEST, b"kept")

    for refused in (
        lambda: user.set("outside:the:schema", b"x"),
        lambda: user.get("features:no-hash-tag"),  # a family's prefix alone is not enough
        lambda: user.set(f"{KEYS.inference_prefix}:other", b"x"),
        lambda: user.flushall(),
        lambda: user.flushdb(),
        lambda: user.keys("*"),
        lambda: user.config_get("*"),
        lambda: user.eval("return 1", 0),
        lambda: user.execute_command("SCRIPT", "FLUSH"),
        lambda: user.execute_command("ACL", "SETUSER", "intruder", "on", "~*", "+@all"),
    ):
        with pytest.raises(NoPermissionError):
            refused()
    # EVALSHA and SCRIPT LOAD are allowed, but a script's own calls are checked the same way
    for body in ("return redis.call('FLUSHALL')", "return redis.call('SET', 'outside', 'x')"):
        with pytest.raises(redis.ResponseError):
            user.register_script(body)(keys=[LATEST])

    assert admin.get(LATEST) == b"kept"
    assert admin.exists("outside:the:schema", "outside") == 0
    assert admin.execute_command("ACL", "GETUSER", "intruder") is None
    refusals = app_user.refused()
    assert {"command:flushall", "command:keys", "key:outside:the:schema"} <= set(refusals)
    assert {"command:flushall", "key:outside"} <= set(app_user.refused(context="lua"))


def test_connect_authenticates_either_kind_from_the_url_or_the_given_credentials(
    app_user: AppUser,
) -> None:
    through_url = connect(app_user.url_with_credentials, cluster=app_user.cluster, timeout_s=2.0)
    given = app_user.connect()
    wrong = connect(
        app_user.url,
        cluster=app_user.cluster,
        timeout_s=2.0,
        credentials=RedisCredentials(app_user.credentials.username, "not-the-password"),
    )

    for client in (through_url, given):
        assert client.set(PREDICTION.latest, b"1")
        with pytest.raises(NoPermissionError):  # the app user, not the all-powerful default
            client.set("outside:the:schema", b"x")
    with pytest.raises(redis.ConnectionError):  # AuthenticationError, or no cluster node answered
        wrong.get(PREDICTION.latest)


# -- the real paths as the app user --------------------------------------------------------------
def test_the_aggregator_handler_applies_batches_as_the_app_user(
    app_user: AppUser, monkeypatch: pytest.MonkeyPatch, capture: Capture
) -> None:
    stream = [e for e in capture.events if not isinstance(e, DepthSnapshot)][:4000]
    records = pack_records(stream, ingest_ts_ms=0, max_record_bytes=32 * 1024)
    seqs = sequence_numbers(len(records))
    for name, value in {
        "REDIS_URL": app_user.url_with_credentials,
        "REDIS_CLUSTER": str(app_user.cluster).lower(),
        "WARMUP_FROM_REST": "false",
        "POWERTOOLS_METRICS_NAMESPACE": "btcpred",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDIS_AUTH_SECRET_ARN", raising=False)
    module = load_lambda_module(LAMBDAS / "aggregator" / "handler.py", "aggregator_acl")

    def invoke(upto: slice) -> Any:
        return module.handler(kinesis_event(records[upto], seqs[upto]), LocalLambdaContext())

    first, again, rest = invoke(slice(0, 20)), invoke(slice(10, 20)), invoke(slice(20, None))

    assert first == again == rest == {"batchItemFailures": []}
    expected = reference(events_of(stream, records, len(records))).snapshot()
    assert json.loads(app_user.admin.get(LATEST) or b"") == json.loads(expected.to_json())
    assert int(app_user.admin.get(KEYS.checkpoint(SYMBOL, SHARD)) or 0) == seqs[-1]
    assert app_user.admin.llen(KEYS.features_history(SYMBOL)) == 2
    assert app_user.refused() == []


def test_the_inference_service_predicts_broadcasts_and_hands_over_as_the_app_user(
    app_user: AppUser, server: ManagementApiServer, apigw: Any
) -> None:
    admin = app_user.admin
    settings = InferenceSettings(
        model_path=SHIPPED,
        redis_url=app_user.url,
        redis_cluster=app_user.cluster,
        binance_rest_url=NOWHERE,
        broadcast_budget_ms=300,
    )
    interval = round(settings.interval_s * 1000)

    def service(owner: str) -> Any:
        return build_service(
            settings,
            owner=owner,
            metrics=RecordingMetrics(),
            apigw_client=apigw,
            credentials=app_user.credentials,
        )

    first = service("a")
    registry = RedisConnectionRegistry(app_user.connect())
    server.connect("listening")
    registry.add("listening", SYMBOL, T0)
    registry.add("gone", SYMBOL, T0)  # the management API answers 410 Gone: forgotten
    ticks = []
    for k in range(3):
        admin.set(LATEST, features(T0 + k * interval))
        ticks.append(first.tick(T0 + k * interval, FAR))
    first.close(T0 + 3 * interval)  # pending predictions handed over, lease released
    second = service("b")
    admin.set(LATEST, features(T0 + 3 * interval))
    taken_over = second.tick(T0 + 3 * interval, FAR)
    second.close(T0 + 4 * interval)

    assert [t.role for t in [*ticks, taken_over]] == ["active"] * 4
    assert {r.source for t in [*ticks, taken_over] for r in t.results} == {"redis"}
    assert second.accuracy.pending(SYMBOL) == []  # drained again at its own close
    stored = PredictionResult.from_json(admin.get(PREDICTION.latest) or b"")
    assert stored.timestamp == T0 + 3 * interval
    assert admin.llen(PREDICTION.history) == 4
    assert (admin.get(KEYS.lease) or b"").startswith(b"|released|")
    assert len(json.loads(admin.get(PREDICTION.pending) or b"[]")) == 4  # a's 3, then b's 1
    assert json.loads(admin.get(KEYS.health) or b"{}")["mode"] == "stream"
    assert len(server.messages("listening")) == 4
    assert registry.connections(SYMBOL, T0) == ["listening"]
    for s in (first, second):
        assert s.metrics.total("RedisErrors") == s.metrics.total("RedisUnavailable") == 0
    assert app_user.refused() == []


def test_the_inference_handler_reads_its_secret_and_predicts_as_the_app_user(
    app_user: AppUser, aws_env: pytest.MonkeyPatch, rest: BinanceRestServer
) -> None:
    app_user.admin.set(LATEST, features(time.time_ns() // 1_000_000))
    with mock_aws():
        arn = create_secret("btcpred/redis-app", app_user.secret_string)
        inference_handler_env(
            aws_env, app_user.url, cluster=app_user.cluster, rest_url=rest.url, secret_arn=arn
        )
        module = load_lambda_module(LAMBDAS / "inference" / "handler.py", "inference_acl")

        response = module.handler(
            {"source": "aws.events"},
            LocalLambdaContext(function_name="btcpred-inference", remaining_ms=1_500),
        )

    assert response["active_ticks"] >= 5
    latest = PredictionResult.from_json(app_user.admin.get(PREDICTION.latest) or b"")
    assert latest.source == "redis"
    assert app_user.admin.llen(PREDICTION.history) == response["active_ticks"]
    assert (app_user.admin.get(KEYS.lease) or b"").startswith(b"|released|")
    assert rest.requests.count(TICKER) == 0
    assert app_user.refused() == []


def test_the_websocket_and_http_handlers_read_their_secrets_and_serve_as_the_app_user(
    app_user: AppUser, aws_env: pytest.MonkeyPatch, server: ManagementApiServer
) -> None:
    admin = app_user.admin
    prediction = stored_result()
    with mock_aws():
        for name, value in {
            "REDIS_URL": app_user.url,
            "REDIS_CLUSTER": str(app_user.cluster).lower(),
            "REDIS_AUTH_SECRET_ARN": create_secret("btcpred/redis-app", app_user.secret_string),
            "WEBSOCKET_TOKEN_SECRET_ARN": create_secret("btcpred/ws-token", TOKEN),
            "WEBSOCKET_ENDPOINT": server.url,
            "SYMBOLS": "BTCUSDT,ETHUSDT",
        }.items():
            aws_env.setenv(name, value)
        aws_env.delenv("WEBSOCKET_TOKEN", raising=False)
        ws, http = ws_handler(), http_handler()
        server.connect("c1")
        connected = ws("$connect", "c1", query={"token": TOKEN})  # the cold starts read the
        before = http("/prediction/latest")  # secrets; replies below go to the local API
    admin.set(PREDICTION.latest, prediction.to_json())

    ws("$default", "c1", body='{"action": "subscribe", "symbol": "BTCUSDT"}')
    status, body, _ = http("/prediction/latest")
    health, _, _ = http("/health")  # no predictor document: unavailable, but read as the app user
    stored_symbol = admin.get(KEYS.connection("c1"))
    disconnected = ws("$disconnect", "c1")

    assert (connected["statusCode"], before[0], status, health) == (200, 503, 200, 503)
    assert body == json.loads(prediction.to_json())
    subscribed, sent = server.messages("c1")
    assert json.loads(subscribed) == {"type": "subscribed", "symbol": SYMBOL}
    assert PredictionResult.from_json(sent) == prediction
    assert stored_symbol == b"BTCUSDT"
    assert disconnected["statusCode"] == 200
    assert admin.exists(KEYS.connection("c1"), KEYS.connections(SYMBOL)) == 0
    assert app_user.refused() == []


# -- an unreadable secret -------------------------------------------------------------------------
def test_fetch_redis_credentials_reads_the_secret_through_a_real_client(
    aws_env: pytest.MonkeyPatch,
) -> None:
    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = create_secret("btcpred/redis-app", '{"username": "app", "password": "p@ss w0rd"}')

        found = fetch_redis_credentials(client, arn)

    assert found == RedisCredentials("app", "p@ss w0rd")
    assert "p@ss" not in repr(found)


@pytest.mark.parametrize(
    ("secret", "error", "says"),
    [
        (None, SecretUnreadableError, "ResourceNotFoundException"),
        ("not json", SecretMalformedError, "not JSON"),
        ('{"username": "app"}', SecretMalformedError, "no 'password'"),
        ('{"username": "app", "password": 42}', SecretMalformedError, "not a non-empty string"),
        (b"\x00binary", SecretMalformedError, "no SecretString"),
    ],
    ids=["missing", "not-json", "no-password", "password-not-a-string", "binary"],
)
def test_a_bad_secret_is_a_typed_error_naming_the_variable_and_the_arn(
    aws_env: pytest.MonkeyPatch, secret: str | bytes | None, error: type[Exception], says: str
) -> None:
    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = MISSING_ARN
        if isinstance(secret, bytes):
            arn = client.create_secret(Name="btcpred/redis-app", SecretBinary=secret)["ARN"]
        elif secret is not None:
            arn = create_secret("btcpred/redis-app", secret)

        with pytest.raises(error, match=says) as raised:
            fetch_redis_credentials(client, arn)

    assert str(raised.value).startswith(f"REDIS_AUTH_SECRET_ARN={arn}: ")
    assert "42" not in str(raised.value)


@pytest.mark.parametrize("function", ["aggregator", "api", "websocket"])
def test_an_unreadable_secret_fails_the_cold_start_of_the_other_functions(
    function: str, aws_env: pytest.MonkeyPatch, redis_url: str
) -> None:
    for name, value in {
        "REDIS_URL": redis_url,
        "REDIS_AUTH_SECRET_ARN": MISSING_ARN,
        "WEBSOCKET_TOKEN": TOKEN,
        "WARMUP_FROM_REST": "false",
        "POWERTOOLS_METRICS_NAMESPACE": "btcpred",
    }.items():
        aws_env.setenv(name, value)
    aws_env.delenv("WEBSOCKET_TOKEN_SECRET_ARN", raising=False)
    module = load_lambda_module(LAMBDAS / function / "handler.py", f"{function}_no_secret")
    event = {"Records": []} if function == "aggregator" else {"requestContext": {}}

    with mock_aws(), pytest.raises(SecretUnreadableError, match="ResourceNotFoundException"):
        module.handler(event, LocalLambdaContext(function_name=f"btcpred-{function}"))


def test_the_inference_function_starts_without_its_secret_and_predicts_from_rest(
    app_user: AppUser,
    aws_env: pytest.MonkeyPatch,
    rest: BinanceRestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app_user.admin.set(LATEST, features(time.time_ns() // 1_000_000))  # fresh, but unreachable
    inference_handler_env(
        aws_env, app_user.url, cluster=app_user.cluster, rest_url=rest.url, secret_arn=MISSING_ARN
    )
    module = load_lambda_module(LAMBDAS / "inference" / "handler.py", "inference_no_secret")

    with mock_aws(), caplog.at_level(logging.WARNING):
        response = module.handler(
            {"source": "aws.events"},
            LocalLambdaContext(function_name="btcpred-inference", remaining_ms=1_000),
        )

    assert response["ticks"] >= 3
    assert response["active_ticks"] == response["ticks"]  # direct-REST mode predicts
    assert rest.requests.count(TICKER) >= 1
    assert app_user.admin.exists(PREDICTION.latest, KEYS.lease, KEYS.health) == 0
    logged = [r for r in caplog.records if r.name == "btcpred.aws"]
    assert [r.levelno for r in logged] == [logging.ERROR]  # once at cold start; retries wait 30 s
    assert isinstance(logged[0].args, tuple)
    assert isinstance(logged[0].args[0], SecretUnreadableError)


def test_the_inference_service_reaches_redis_once_its_secret_is_fixed(
    app_user: AppUser, aws_env: pytest.MonkeyPatch, rest: BinanceRestServer
) -> None:
    clock = [0.0]
    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = create_secret("btcpred/redis-app", "{}")  # created, but without its values yet
        attempts: list[float] = []

        def fetch() -> RedisCredentials:
            attempts.append(clock[0])
            return fetch_redis_credentials(client, arn)

        credentials = LazyCredentials(fetch, retry_s=30.0, clock=lambda: clock[0])
        settings = InferenceSettings(
            model_path=SHIPPED,
            redis_url=app_user.url,
            redis_cluster=app_user.cluster,
            binance_rest_url=rest.url,
        )
        service = build_service(
            settings, owner="a", metrics=RecordingMetrics(), credentials=credentials
        )
        app_user.admin.set(LATEST, features(T0))
        without = service.tick(T0, FAR)
        why = credentials.last_error
        client.put_secret_value(SecretId=arn, SecretString=app_user.secret_string)
        too_soon = service.tick(T0 + 1_500, FAR)  # Redis retried, the secret not yet again
        clock[0] = 30.0
        app_user.admin.set(LATEST, features(T0 + 3_000))
        fixed = service.tick(T0 + 3_000, FAR)

    assert [r.role for r in (without, too_soon, fixed)] == ["direct-rest", "direct-rest", "active"]
    assert [r.source for r in without.results] == ["fallback"]  # from REST
    assert [r.source for r in fixed.results] == ["redis"]
    assert attempts == [0.0, 30.0]
    assert credentials.last_error is None
    assert isinstance(why, SecretMalformedError)  # "{}": no username yet
    stored = PredictionResult.from_json(app_user.admin.get(PREDICTION.latest) or b"")
    assert stored.timestamp == T0 + 3_000
    assert app_user.refused() == []
