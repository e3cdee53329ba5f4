"""Aggregator settings from the environment: defaults, precedence, errors naming the variable."""

from __future__ import annotations

import pytest

from btcpred.aggregator import PoisonPolicy
from btcpred.settings import (
    AggregatorSettings,
    ConfigError,
    HttpSettings,
    InferenceSettings,
    WebSocketSettings,
)


def test_defaults_without_environment() -> None:
    settings = AggregatorSettings.from_env({})

    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.poison_policy is PoisonPolicy.SKIP
    assert (settings.features_ttl_s, settings.history_length) == (300, 10)


def test_elasticache_host_with_tls_builds_a_rediss_url() -> None:
    host = "master.btcpred-prod-features.a1b2c3.euw1.cache.amazonaws.com"  # > 64 characters

    settings = AggregatorSettings.from_env(
        {"REDIS_HOST": host, "REDIS_PORT": "6380", "REDIS_TLS": "true"}
    )

    assert settings.redis_url == f"rediss://{host}:6380/0"


def test_redis_url_wins_over_host() -> None:
    env = {"REDIS_URL": "redis://cache:6379/2", "REDIS_HOST": "ignored"}

    assert AggregatorSettings.from_env(env).redis_url == "redis://cache:6379/2"


def test_poison_policy_is_parsed_case_insensitively() -> None:
    settings = AggregatorSettings.from_env({"POISON_RECORD_POLICY": "Report"})

    assert settings.poison_policy is PoisonPolicy.REPORT


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POISON_RECORD_POLICY", "drop"),
        ("REDIS_HOST", "bad host"),
        ("REDIS_PORT", "0"),
        ("REDIS_TLS", "maybe"),
        ("FEATURES_TTL_SECONDS", "-5"),
        ("BINANCE_REST_URL", "ftp://x"),
        ("REST_TIMEOUT_SECONDS", "nan"),
    ],
)
def test_bad_values_name_their_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        AggregatorSettings.from_env({name: value})


def test_client_settings_defaults_match_the_inference_function() -> None:
    http, ws, inference = (
        HttpSettings.from_env({}),
        WebSocketSettings.from_env({}),
        InferenceSettings.from_env({}),
    )

    for client in (http, ws):
        assert client.symbols == inference.symbols
        assert client.interval_s == inference.interval_s
        assert client.redis_keys == inference.redis_keys
        assert (client.redis_url, client.redis_cluster) == ("redis://localhost:6379/0", False)
    assert (ws.websocket_token, ws.connection_ttl_s, ws.max_message_bytes) == (None, 7200, 1024)


def test_websocket_settings_from_the_environment() -> None:
    ws = WebSocketSettings.from_env(
        {
            "SYMBOLS": "btcusdt,ethusdt",
            "WEBSOCKET_TOKEN": "t0ken",
            "MAX_MESSAGE_BYTES": "64",
            "REDIS_CLUSTER": "true",
            "REDIS_FEATURES_KEY_PREFIX": "feat",
        }
    )

    assert ws.symbols == ("BTCUSDT", "ETHUSDT")
    assert (ws.websocket_token, ws.max_message_bytes, ws.redis_cluster) == ("t0ken", 64, True)
    assert ws.redis_keys.features_latest("ETHUSDT") == "feat:{ETHUSDT}:latest"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"SYMBOLS": "BTC USDT"}, "SYMBOLS"),
        (
            {"SYMBOLS": "BTCUSDT,ETHUSDT", "REDIS_PREDICTION_KEY": "p:latest"},
            "REDIS_PREDICTION_KEY",
        ),
        ({"PREDICTION_INTERVAL_SECONDS": "0"}, "PREDICTION_INTERVAL_SECONDS"),
        ({"REDIS_CLUSTER": "maybe"}, "REDIS_CLUSTER"),
    ],
)
def test_a_bad_client_setting_names_the_variable(env: dict[str, str], name: str) -> None:
    for settings in (HttpSettings, WebSocketSettings):
        with pytest.raises(ConfigError, match=name):
            settings.from_env(env)


# -- REDIS_AUTH_SECRET_ARN: every settings object that connects to Redis ------------------------
EVERY_REDIS_SETTINGS = (AggregatorSettings, InferenceSettings, HttpSettings, WebSocketSettings)
SECRET_ARN = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:btcpred/redis-AbCdEf"  # noqa: S105


@pytest.mark.parametrize("settings", EVERY_REDIS_SETTINGS)
@pytest.mark.parametrize(
    "arn",
    [
        SECRET_ARN,
        "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:app",
        "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:a/b_c+d=e.f@g-h",
    ],
)
def test_the_redis_auth_secret_arn_is_parsed_by_every_redis_function(
    settings: type[AggregatorSettings | InferenceSettings | HttpSettings | WebSocketSettings],
    arn: str,
) -> None:
    found = settings.from_env({"REDIS_AUTH_SECRET_ARN": f" {arn} ", "REDIS_TLS": "true"})

    assert found.redis_auth_secret_arn == arn
    assert settings.from_env({}).redis_auth_secret_arn is None


@pytest.mark.parametrize("settings", EVERY_REDIS_SETTINGS)
@pytest.mark.parametrize(
    "value",
    [
        "btcpred/redis-app",  # a name, not an ARN
        SECRET_ARN.replace("secretsmanager", "ssm"),
        SECRET_ARN.replace("123456789012", "1234"),
        SECRET_ARN.replace(":secret:", ":parameter:"),
        SECRET_ARN.replace("ap-northeast-1", "tokyo"),
        SECRET_ARN.replace("arn:aws", "arn:gcp"),
        SECRET_ARN + " extra",
    ],
)
def test_a_bad_redis_auth_secret_arn_names_the_variable(
    settings: type[AggregatorSettings | InferenceSettings | HttpSettings | WebSocketSettings],
    value: str,
) -> None:
    with pytest.raises(ConfigError, match="REDIS_AUTH_SECRET_ARN"):
        settings.from_env({"REDIS_AUTH_SECRET_ARN": value})


@pytest.mark.parametrize("settings", EVERY_REDIS_SETTINGS)
def test_credentials_in_both_the_url_and_a_secret_are_refused(
    settings: type[AggregatorSettings | InferenceSettings | HttpSettings | WebSocketSettings],
) -> None:
    env = {"REDIS_URL": "redis://app:pw@cache:6379/0", "REDIS_AUTH_SECRET_ARN": SECRET_ARN}

    with pytest.raises(ConfigError, match="REDIS_AUTH_SECRET_ARN") as raised:
        settings.from_env(env)

    assert "pw" not in str(raised.value)
    assert settings.from_env({"REDIS_URL": env["REDIS_URL"]}).redis_url == env["REDIS_URL"]


def test_the_websocket_token_secret_arn_is_checked_like_the_redis_one() -> None:
    ws = WebSocketSettings.from_env({"WEBSOCKET_TOKEN_SECRET_ARN": SECRET_ARN})
    assert ws.websocket_token_secret_arn == SECRET_ARN
    with pytest.raises(ConfigError, match="WEBSOCKET_TOKEN_SECRET_ARN"):
        WebSocketSettings.from_env({"WEBSOCKET_TOKEN_SECRET_ARN": "btcpred/websocket-token"})
