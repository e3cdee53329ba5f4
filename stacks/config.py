"""Per-environment configuration: one frozen, validated table that is the only way the
environments differ.

``app.py`` picks a row by the ``env`` context value (``cdk deploy -c env=prod``); ``account`` and
``region`` may be overridden from context (``-c account=… -c region=…``), and so may the
ingestor's desired count for a first deploy (``-c ingestor_tasks=0``). The default account is
a placeholder whose availability zones are committed in ``cdk.context.json`` so that ``cdk synth``
works offline; a real deploy passes the operator's account (docs/deploy.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_REGION",
    "ENVIRONMENTS",
    "INFERENCE_MAX_FEATURE_AGE_MS",
    "AlarmThresholds",
    "ConfigError",
    "EnvConfig",
    "config_for",
]

DEFAULT_ACCOUNT: Final = "123456789012"
# Tokyo: Binance serves it (it refuses US regions with HTTP 451) and its matching engine and
# stream endpoints are close, so the stream and REST round trips are shortest from here.
DEFAULT_REGION: Final = "ap-northeast-1"
# Regions from which Binance answers 451 (US) are refused outright.
_REFUSED_REGION: Final = re.compile(r"us-(east|west|gov-east|gov-west)-\d")
_LOG_LEVELS: Final = frozenset({"DEBUG", "INFO", "WARNING", "ERROR"})
# Fargate's task sizes (Linux): CPU units -> the memory sizes (MiB) allowed with them.
_FARGATE_MEMORY_MB: Final[Mapping[int, frozenset[int]]] = {
    256: frozenset({512, 1024, 2048}),
    512: frozenset(range(1024, 4097, 1024)),
    1024: frozenset(range(2048, 8193, 1024)),
    2048: frozenset(range(4096, 16385, 1024)),
    4096: frozenset(range(8192, 30721, 1024)),
}
# CloudWatch Logs accepts only these retention periods (days).
_RETENTION_DAYS: Final = frozenset({1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545})
# The inference function's MAX_FEATURE_AGE_MS (btcpred.settings.InferenceSettings' default):
# stream features older than this are not served, so no FeatureAge value exceeds it.
INFERENCE_MAX_FEATURE_AGE_MS: Final = 5000


class ConfigError(ValueError):
    """An environment's configuration is invalid; the message names the field."""


@dataclass(frozen=True, slots=True)
class AlarmThresholds:
    """What pages a person (every alarm goes to the environment's SNS topic).

    The alarms that use each field are in ``stacks/alarms.py``; what to do when one fires is in
    docs/deploy.md (Alarms).
    """

    max_feature_age_ms: int = 4000
    """Feature age p95 over 5 minutes above this: the stream pipeline lags. Must stay below
    :data:`INFERENCE_MAX_FEATURE_AGE_MS`: older features are never served (the predictor falls
    back instead), so a threshold at or above it could never be crossed."""
    max_fallback_share: float = 0.5
    """Share of predictions served from the fallback over 15 minutes above this."""
    min_predictions_per_5min: int = 150
    """Fewer predictions than this per symbol in 5 minutes (200 expected at 1.5 s): the
    predictor stalls. The alarm multiplies it by the number of symbols."""
    max_iterator_age_ms: int = 60_000
    """Aggregator iterator age above this: the aggregator falls behind the stream."""
    max_inference_latency_p99_ms: float = 250.0
    max_error_ratio_vs_random_walk: float = 1.2
    """Online MAE over the random walk's MAE over 1 hour above this: the model is worse."""
    min_scored_predictions_per_hour: int = 600
    """The MAE ratio is judged only on at least this many scored predictions in the hour
    (2400 per symbol expected at 1.5 s)."""
    lambda_error_count: int = 1
    """Errors of any function in 5 minutes at or above this."""
    lambda_throttle_count: int = 1
    """Throttled invocations of any function in 5 minutes at or above this."""
    min_incoming_records_per_5min: int = 1
    """Fewer records than this written to the stream in 5 minutes: the ingestor is down."""
    kinesis_write_throttle_count: int = 1
    """Stream writes refused for throughput in 5 minutes at or above this."""
    redis_throttled_cmds: int = 1
    """Redis commands throttled by ElastiCache in 5 minutes at or above this."""
    min_db_free_storage_gb: float = 2.0
    """Database free storage below this (GiB)."""
    max_db_cpu_percent: float = 80.0
    """Database CPU above this (%) for 15 minutes."""
    websocket_execution_errors: int = 5
    """WebSocket API errors calling its function in 5 minutes at or above this."""
    http_5xx_count: int = 10
    """HTTP API 5xx responses in 5 minutes at or above this (503 means no fresh prediction)."""
    max_ingest_put_failures_per_5min: int = 10
    """Ingestor writes that failed in 5 minutes (whole PutRecords calls that raised plus entries
    Kinesis rejected and the ingestor resent) above this: the stream refuses or the network to
    it fails. A few rejected entries under a burst are normal, they are resent."""
    ingest_gap_count: int = 1
    """Sequence gaps the ingestor detected in 5 minutes at or above this (events lost between
    Binance and the ingestor; the depth book is resynchronized)."""
    max_ingest_lag_p99_ms: float = 1500.0
    """Exchange event time to Kinesis acknowledgement, p99 per minute, above this for 3 minutes.
    Must stay below ``max_feature_age_ms``: events that arrive later than that make the features
    stale anyway, and the lag alarm should name the ingestor first."""
    max_price_divergence_bps: float = 50.0
    """The poller's REST last price against the stream features' price, maximum per minute, above
    this (basis points) for 3 minutes: the stream is wrong or stale while REST is fine."""
    poller_errors_per_5min: int = 6
    """Failed polls in 5 minutes at or above this (one poll every 5 s: 60 expected, so a tenth
    failing). A single failed poll is retried 5 s later and is not worth a page."""
    loader_rejected_count: int = 1
    """History objects the loader rejected as malformed in 5 minutes at or above this (nothing of
    such an object is written: it must be looked at)."""


@dataclass(frozen=True, slots=True)
class EnvConfig:
    """One environment: sizes, redundancy, retention, protection, thresholds, log levels."""

    name: str
    account: str = DEFAULT_ACCOUNT
    region: str = DEFAULT_REGION
    symbols: tuple[str, ...] = ("BTCUSDT",)
    # network
    max_azs: int = 2
    nat_gateways: int = 1
    # Kinesis: a shard count, or 0 for on-demand
    kinesis_shards: int = 1
    kinesis_retention_hours: int = 24
    # aggregator event source mapping
    aggregator_batch_size: int = 500
    aggregator_batching_window_s: int = 1
    aggregator_parallelization_factor: int = 1
    aggregator_retry_attempts: int = 3
    aggregator_max_record_age_s: int = 3600
    aggregator_memory_mb: int = 512
    # inference
    inference_memory_mb: int = 1024
    inference_timeout_s: int = 90
    prediction_interval_s: float = 1.5
    # the fallback poller (REST -> Redis every poller_interval_s, one invocation a minute)
    poller_memory_mb: int = 256
    poller_interval_s: float = 2.0
    fallback_ttl_s: int = 30
    """How long a fallback features document lives in Redis (several polls' worth)."""
    # the history loader (S3 Avro -> PostgreSQL, from an SQS queue)
    loader_memory_mb: int = 1024
    loader_max_concurrency: int = 2
    """At most this many loader invocations at once (the SQS event source's maximum
    concurrency): bounds the connections a backfill of many objects opens on the database."""
    # ElastiCache Serverless (Valkey) limits
    cache_max_data_gb: int = 1
    cache_max_ecpu_per_second: int = 5000
    cache_snapshot_retention_days: int = 0
    # RDS PostgreSQL
    db_instance_class: str = "t4g.micro"
    db_allocated_storage_gb: int = 20
    db_max_allocated_storage_gb: int = 50
    db_multi_az: bool = False
    db_backup_retention_days: int = 1
    deletion_protection: bool = False
    # S3 and logs
    retain_data: bool = False
    """Keep buckets, the database and the stream when the stack is deleted."""
    log_retention_days: int = 14
    history_expiry_days: int = 90
    access_log_expiry_days: int = 90
    log_level: str = "INFO"
    # WebSocket stage throttling (requests/s and burst, per stage)
    websocket_rate_limit: float = 200.0
    websocket_burst_limit: int = 500
    http_rate_limit: float = 50.0
    http_burst_limit: int = 100
    # the ingestor's Fargate task (a legal Fargate cpu/memory pair, ARM64)
    ingestor_cpu: int = 256
    """CPU units (1024 = 1 vCPU)."""
    ingestor_memory_mb: int = 512
    ingestor_desired_count: int = 1
    """1; 0 only for an environment's first deploy, before the Binance key is set (context
    ``-c ingestor_tasks=0``, docs/deploy.md): with the placeholder key no task becomes healthy,
    the circuit breaker fails the service and with it the stack's creation."""
    alarms: AlarmThresholds = field(default_factory=AlarmThresholds)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def prefix(self) -> str:
        """Resource name prefix, e.g. ``btcpred-dev``."""
        return f"btcpred-{self.name}"

    def with_overrides(self, context: Mapping[str, Any]) -> EnvConfig:
        """This row with ``account``, ``region`` and ``ingestor_tasks`` (the ingestor's
        desired count) from CDK context when given."""
        account = str(context.get("account") or self.account)
        region = str(context.get("region") or self.region)
        tasks = context.get("ingestor_tasks")
        desired = self.ingestor_desired_count if tasks in (None, "") else _count(tasks)
        return replace(self, account=account, region=region, ingestor_desired_count=desired)


def _count(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise ConfigError(f"ingestor_tasks: {value!r} is not 0 or 1") from None


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {message}")


def _validate(c: EnvConfig) -> None:
    _check(bool(re.fullmatch(r"[a-z][a-z0-9]{1,15}", c.name)), "name", "lowercase, 2-16 chars")
    _check(bool(re.fullmatch(r"\d{12}", c.account)), "account", "must be 12 digits")
    _check(bool(re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", c.region)), "region", "not a region")
    _check(
        not _REFUSED_REGION.fullmatch(c.region),
        "region",
        f"{c.region}: Binance refuses US regions (HTTP 451); pick one it serves",
    )
    _check(2 <= c.max_azs <= 3, "max_azs", "2 or 3 (the database needs two)")
    _check(1 <= c.nat_gateways <= c.max_azs, "nat_gateways", "between 1 and max_azs")
    _check(0 <= c.kinesis_shards <= 50, "kinesis_shards", "0 (on-demand) to 50")
    _check(24 <= c.kinesis_retention_hours <= 8760, "kinesis_retention_hours", "24 to 8760")
    _check(1 <= c.aggregator_batch_size <= 10_000, "aggregator_batch_size", "1 to 10000")
    _check(0 <= c.aggregator_batching_window_s <= 300, "aggregator_batching_window_s", "0-300")
    _check(
        1 <= c.aggregator_parallelization_factor <= 10,
        "aggregator_parallelization_factor",
        "1 to 10",
    )
    _check(0 <= c.aggregator_retry_attempts <= 10_000, "aggregator_retry_attempts", "0-10000")
    _check(
        60 <= c.aggregator_max_record_age_s <= 604_800,
        "aggregator_max_record_age_s",
        "60 to 604800 (never -1: a poison record would block the shard)",
    )
    _check(
        c.inference_timeout_s > 60 and c.inference_timeout_s <= 900,
        "inference_timeout_s",
        "longer than the 60 s schedule (so two invocations overlap for the lease handover)",
    )
    _check(0.05 <= c.prediction_interval_s <= 30, "prediction_interval_s", "0.05 to 30")
    _check(128 <= c.poller_memory_mb <= 10_240, "poller_memory_mb", "128 to 10240")
    _check(1 <= c.poller_interval_s <= 30, "poller_interval_s", "1 to 30 (within one minute)")
    _check(
        c.fallback_ttl_s > c.poller_interval_s,
        "fallback_ttl_s",
        "longer than poller_interval_s (else the fallback expires between polls)",
    )
    _check(128 <= c.loader_memory_mb <= 10_240, "loader_memory_mb", "128 to 10240")
    _check(
        2 <= c.loader_max_concurrency <= 1000,
        "loader_max_concurrency",
        "2 to 1000 (the SQS event source's range)",
    )
    _check(1 <= c.cache_max_data_gb <= 5000, "cache_max_data_gb", "1 to 5000")
    _check(
        1000 <= c.cache_max_ecpu_per_second <= 15_000_000,
        "cache_max_ecpu_per_second",
        "1000 to 15000000",
    )
    _check(0 <= c.cache_snapshot_retention_days <= 35, "cache_snapshot_retention_days", "0-35")
    _check(
        bool(re.fullmatch(r"[a-z0-9]+\.[a-z0-9]+", c.db_instance_class)),
        "db_instance_class",
        "like t4g.micro",
    )
    _check(
        20 <= c.db_allocated_storage_gb <= c.db_max_allocated_storage_gb,
        "db_allocated_storage_gb",
        "at least 20 and at most db_max_allocated_storage_gb",
    )
    _check(1 <= c.db_backup_retention_days <= 35, "db_backup_retention_days", "1 to 35")
    _check(c.log_retention_days in _RETENTION_DAYS, "log_retention_days", "a CloudWatch period")
    _check(c.history_expiry_days >= 30, "history_expiry_days", "at least 30")
    _check(c.access_log_expiry_days >= 30, "access_log_expiry_days", "at least 30")
    _check(c.log_level in _LOG_LEVELS, "log_level", f"one of {sorted(_LOG_LEVELS)}")
    _check(
        c.websocket_rate_limit > 0 and c.websocket_burst_limit > 0,
        "websocket throttling",
        "positive",
    )
    _check(c.http_rate_limit > 0 and c.http_burst_limit > 0, "http throttling", "positive")
    _check(c.ingestor_desired_count in (0, 1), "ingestor_tasks", "0 (first deploy) or 1")
    _check(
        c.ingestor_memory_mb in _FARGATE_MEMORY_MB.get(c.ingestor_cpu, ()),
        "ingestor_cpu/ingestor_memory_mb",
        f"{c.ingestor_cpu}/{c.ingestor_memory_mb} is not a Fargate size "
        "(256: 512-2048, 512: 1024-4096, 1024: 2048-8192, 2048: 4096-16384, 4096: 8192-30720)",
    )
    _check(
        not (c.name == "prod" and not (c.deletion_protection and c.retain_data)),
        "prod",
        "must keep deletion protection and retain its data",
    )
    _validate_alarms(c)


# Alarm thresholds that count events: below 1, "at or above" would alarm all the time and
# "fewer than" never.
_COUNT_THRESHOLDS: Final = (
    "lambda_error_count",
    "lambda_throttle_count",
    "min_incoming_records_per_5min",
    "kinesis_write_throttle_count",
    "redis_throttled_cmds",
    "websocket_execution_errors",
    "http_5xx_count",
    "max_ingest_put_failures_per_5min",
    "ingest_gap_count",
    "poller_errors_per_5min",
    "loader_rejected_count",
)


def _validate_alarms(c: EnvConfig) -> None:
    a = c.alarms
    per_5min = 300 / c.prediction_interval_s  # predictions per symbol expected in 5 minutes
    _check(
        0 < a.max_feature_age_ms < INFERENCE_MAX_FEATURE_AGE_MS,
        "alarms.max_feature_age_ms",
        f"positive and below {INFERENCE_MAX_FEATURE_AGE_MS} (older features are never served)",
    )
    _check(0 < a.max_fallback_share < 1, "alarms.max_fallback_share", "between 0 and 1")
    _check(
        0 < a.min_predictions_per_5min < per_5min,
        "alarms.min_predictions_per_5min",
        f"positive and below the {per_5min:g} expected at one per {c.prediction_interval_s} s",
    )
    _check(
        0 < a.min_scored_predictions_per_hour < 12 * per_5min,
        "alarms.min_scored_predictions_per_hour",
        f"positive and below the {12 * per_5min:g} expected per symbol",
    )
    _check(
        a.max_error_ratio_vs_random_walk >= 1,
        "alarms.max_error_ratio_vs_random_walk",
        "at least 1 (below it the model beats the random walk)",
    )
    _check(a.max_inference_latency_p99_ms > 0, "alarms.max_inference_latency_p99_ms", "positive")
    _check(a.max_iterator_age_ms >= 1000, "alarms.max_iterator_age_ms", "at least 1000")
    _check(
        0 < a.min_db_free_storage_gb < c.db_allocated_storage_gb,
        "alarms.min_db_free_storage_gb",
        "positive and below db_allocated_storage_gb",
    )
    _check(0 < a.max_db_cpu_percent < 100, "alarms.max_db_cpu_percent", "between 0 and 100")
    _check(
        0 < a.max_ingest_lag_p99_ms < a.max_feature_age_ms,
        "alarms.max_ingest_lag_p99_ms",
        "positive and below max_feature_age_ms (later events make stale features anyway)",
    )
    _check(
        a.max_price_divergence_bps > 0,
        "alarms.max_price_divergence_bps",
        "positive (basis points)",
    )
    _check(
        a.poller_errors_per_5min <= 300 / c.poller_interval_s,
        "alarms.poller_errors_per_5min",
        f"at most the {300 / c.poller_interval_s:g} polls made in 5 minutes",
    )
    for name in _COUNT_THRESHOLDS:
        _check(getattr(a, name) >= 1, f"alarms.{name}", "at least 1")


ENVIRONMENTS: Final[Mapping[str, EnvConfig]] = {
    "dev": EnvConfig(name="dev", log_level="DEBUG", log_retention_days=7),
    "staging": EnvConfig(
        name="staging",
        db_instance_class="t4g.small",
        db_backup_retention_days=7,
        cache_snapshot_retention_days=1,
        log_retention_days=30,
        aggregator_retry_attempts=5,
        ingestor_cpu=512,
        ingestor_memory_mb=1024,
    ),
    "prod": EnvConfig(
        name="prod",
        max_azs=3,
        nat_gateways=2,
        kinesis_retention_hours=168,
        aggregator_retry_attempts=10,
        aggregator_max_record_age_s=21_600,
        inference_memory_mb=1769,
        cache_max_data_gb=2,
        cache_max_ecpu_per_second=20_000,
        cache_snapshot_retention_days=7,
        db_instance_class="t4g.medium",
        db_allocated_storage_gb=50,
        db_max_allocated_storage_gb=200,
        db_multi_az=True,
        db_backup_retention_days=14,
        deletion_protection=True,
        retain_data=True,
        log_retention_days=90,
        history_expiry_days=730,
        access_log_expiry_days=365,
        websocket_rate_limit=1000.0,
        websocket_burst_limit=2000,
        http_rate_limit=200.0,
        http_burst_limit=400,
        ingestor_cpu=512,
        ingestor_memory_mb=1024,
        alarms=AlarmThresholds(
            max_feature_age_ms=3000, max_fallback_share=0.2, max_ingest_lag_p99_ms=1000.0
        ),
    ),
}


def config_for(context: Mapping[str, Any]) -> EnvConfig:
    """The environment named by context ``env`` (default ``dev``), with context overrides.

    Raises
    ------
    ConfigError
        ``env`` names no environment, or an override is invalid.
    """
    name = str(context.get("env") or "dev")
    if name not in ENVIRONMENTS:
        raise ConfigError(f"env={name!r}: must be one of {', '.join(ENVIRONMENTS)}")
    return ENVIRONMENTS[name].with_overrides(context)
