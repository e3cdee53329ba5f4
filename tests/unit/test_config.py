"""Aggregator settings from the environment: defaults, precedence, errors naming the variable."""

from __future__ import annotations

import pytest

from btcpred.aggregator import PoisonPolicy
from btcpred.settings import AggregatorSettings, ConfigError


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
