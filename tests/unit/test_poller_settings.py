"""The poller's settings: defaults, the contract's variables, and errors naming the variable."""

from __future__ import annotations

import pytest

from btcpred.keys import RedisKeys
from btcpred.settings import ConfigError, Env, PollerSettings


def test_defaults_are_the_contracts() -> None:
    s = PollerSettings.from_env({})

    assert s.symbols == ("BTCUSDT",)
    assert (s.interval_s, s.fallback_ttl_s, s.stop_margin_ms) == (2.0, 30, 3_000)
    assert s.binance_rest_url == "https://data-api.binance.vision"
    assert s.rest_timeout_s == 1.0
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.redis_auth_secret_arn is None


def test_every_variable_is_read() -> None:
    env = {
        "SYMBOLS": "btcusdt, ETHUSDT",
        "BINANCE_REST_URL": "http://127.0.0.1:8080/",
        "REST_TIMEOUT_SECONDS": "0.5",
        "REDIS_HOST": "cache.internal",
        "REDIS_PORT": "6380",
        "REDIS_TLS": "true",
        "REDIS_CLUSTER": "true",
        "REDIS_FEATURES_KEY_PREFIX": "f",
        "POLLER_INTERVAL_SECONDS": "2",
        "FALLBACK_TTL_SECONDS": "10",
        "POLLER_STOP_MARGIN_MS": "4000",
    }

    s = PollerSettings.from_env(env)

    assert s.symbols == ("BTCUSDT", "ETHUSDT")
    assert s.binance_rest_url == "http://127.0.0.1:8080"
    assert s.rest_timeout_s == 0.5
    assert s.redis_url == "rediss://cache.internal:6380/0"
    assert s.redis_cluster is True
    assert s.redis_keys.features_fallback("BTCUSDT") == "f:{BTCUSDT}:fallback"
    assert (s.interval_s, s.fallback_ttl_s, s.stop_margin_ms) == (2.0, 10, 4_000)
    config = s.poller_config()
    assert (config.symbols, config.interval_s, config.stop_margin_ms) == (s.symbols, 2.0, 4_000)


def test_the_poller_names_live_in_the_one_env_module() -> None:
    names = {e.value for e in Env}

    assert {"POLLER_INTERVAL_SECONDS", "FALLBACK_TTL_SECONDS", "POLLER_STOP_MARGIN_MS"} <= names
    assert PollerSettings.from_env({}).redis_keys == RedisKeys()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POLLER_INTERVAL_SECONDS", "0.5"),
        ("POLLER_INTERVAL_SECONDS", "five"),
        ("FALLBACK_TTL_SECONDS", "0"),
        ("POLLER_STOP_MARGIN_MS", "60000"),
        ("POLLER_STOP_MARGIN_MS", "-1"),
        ("REST_TIMEOUT_SECONDS", "11"),
        ("SYMBOLS", "BTC-USDT"),
        ("BINANCE_REST_URL", "ftp://x"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}="):
        PollerSettings.from_env({name: value})


def test_the_ttl_must_outlive_the_interval() -> None:
    with pytest.raises(ConfigError, match="FALLBACK_TTL_SECONDS=5 must be longer than"):
        PollerSettings.from_env({"FALLBACK_TTL_SECONDS": "5", "POLLER_INTERVAL_SECONDS": "5"})


def test_a_poll_must_fit_in_the_stop_margin() -> None:
    # two requests at 2 s and a Redis round trip (0.5 s) do not fit in 3 s
    with pytest.raises(ConfigError, match="POLLER_STOP_MARGIN_MS=3000 must be longer"):
        PollerSettings.from_env({"REST_TIMEOUT_SECONDS": "2"})
