"""The alarm thresholds of ``stacks/config.py``: every environment's are valid, and a threshold an
alarm could never cross (or would always cross) is refused with the field's name."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from btcpred.settings import InferenceSettings
from stacks.config import (
    ENVIRONMENTS,
    INFERENCE_MAX_FEATURE_AGE_MS,
    AlarmThresholds,
    ConfigError,
    EnvConfig,
)


def _with(**alarms: Any) -> EnvConfig:
    return EnvConfig(name="dev", alarms=AlarmThresholds(**alarms))


def test_the_feature_age_limit_is_the_inference_functions_default() -> None:
    assert InferenceSettings().max_feature_age_ms == INFERENCE_MAX_FEATURE_AGE_MS


@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_every_environments_feature_age_alarm_can_fire(env: str) -> None:
    # features older than the limit are never served, so FeatureAge never exceeds it
    assert ENVIRONMENTS[env].alarms.max_feature_age_ms < INFERENCE_MAX_FEATURE_AGE_MS


def test_a_feature_age_threshold_at_the_served_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"alarms\.max_feature_age_ms"):
        _with(max_feature_age_ms=INFERENCE_MAX_FEATURE_AGE_MS)
    assert _with(max_feature_age_ms=INFERENCE_MAX_FEATURE_AGE_MS - 1).alarms.max_feature_age_ms


def test_the_stall_threshold_must_be_below_the_expected_count() -> None:
    with pytest.raises(ConfigError, match=r"below the 200 expected"):
        _with(min_predictions_per_5min=200)  # one per 1.5 s is 200 in 5 minutes
    faster = EnvConfig(
        name="dev",
        prediction_interval_s=1.0,
        alarms=AlarmThresholds(min_predictions_per_5min=250),
    )
    assert faster.alarms.min_predictions_per_5min == 250  # 300 expected at 1 s
    with pytest.raises(ConfigError, match=r"alarms\.min_predictions_per_5min"):
        replace(faster, prediction_interval_s=2.0)  # 150 expected


def test_the_scored_sample_floor_must_be_reachable_in_an_hour() -> None:
    with pytest.raises(ConfigError, match=r"alarms\.min_scored_predictions_per_hour"):
        _with(min_scored_predictions_per_hour=2400)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_fallback_share", 0.0),
        ("max_fallback_share", 1.0),
        ("max_error_ratio_vs_random_walk", 0.9),
        ("max_inference_latency_p99_ms", 0.0),
        ("max_iterator_age_ms", 500),
        ("min_db_free_storage_gb", 20.0),  # the whole allocated storage
        ("min_db_free_storage_gb", 0.0),
        ("max_db_cpu_percent", 100.0),
        ("lambda_error_count", 0),
        ("lambda_throttle_count", 0),
        ("min_incoming_records_per_5min", 0),
        ("kinesis_write_throttle_count", 0),
        ("redis_throttled_cmds", 0),
        ("websocket_execution_errors", 0),
        ("http_5xx_count", 0),
        ("max_ingest_put_failures_per_5min", 0),
        ("ingest_gap_count", 0),
        ("max_ingest_lag_p99_ms", 0.0),
        ("max_ingest_lag_p99_ms", 4000.0),  # the feature-age threshold: stale features first
    ],
)
def test_a_threshold_that_never_or_always_alarms_is_refused(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"alarms\.{field}"):
        _with(**{field: value})


def test_prod_is_stricter_than_the_default() -> None:
    prod, default = ENVIRONMENTS["prod"].alarms, AlarmThresholds()
    assert prod.max_feature_age_ms < default.max_feature_age_ms
    assert prod.max_fallback_share < default.max_fallback_share
