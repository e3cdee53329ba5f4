"""The alarms: one table row each, what needs a person and what to do first.

Every alarm is named ``{prefix}-{name}`` and sends both its ALARM and its OK transition to the
environment's topic. Missing data is chosen per alarm:

- ``BREACHING`` where silence is the failure (no predictions, no records on the stream, no
  frames from Binance, no running ingestor task);
- ``NOT_BREACHING`` for counts of bad events, which CloudWatch reports only when something ran
  (no invocation means no error);
- ``MISSING`` where no data says nothing either way (no predictions to judge accuracy, latency or
  feature age by: the stall alarm pages for that; a database that reports nothing): the alarm
  judges the data points it has and turns INSUFFICIENT_DATA when it has none, which notifies
  no one, rather than sending an OK that is not known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import EnvConfig
from stacks.signals import FUNCTION_KEYS, MINUTE, Signals

__all__ = ["ALARMS", "RUNBOOK", "AlarmSpec", "alarm_specs", "build_alarms", "function_alarms"]

RUNBOOK: Final = "docs/deploy.md, section Alarms"
"""Where an operator reads what each alarm means and what to do (alarm descriptions, dashboard)."""
_FIVE_MINUTES: Final = Duration.minutes(5)
_Op = cw.ComparisonOperator
_Missing = cw.TreatMissingData
_GIB: Final = 1024**3


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    """One alarm: its metric, threshold, comparison and how it reads missing data.

    ``metric`` and ``threshold`` take the signals and the environment's configuration (the
    thresholds are ``config.alarms``); ``periods`` of the metric's period are evaluated, of
    which ``datapoints`` (default: all) must breach.
    """

    name: str
    metric: Callable[[Signals, EnvConfig], cw.IMetric]
    threshold: Callable[[EnvConfig], float]
    comparison: cw.ComparisonOperator
    missing: cw.TreatMissingData
    meaning: str
    first: str
    periods: int = 1
    datapoints: int | None = None


ALARMS: Final[tuple[AlarmSpec, ...]] = (
    AlarmSpec(
        "predictor-stalled",
        lambda s, c: s.inference("Predictions", "Sum", _FIVE_MINUTES),
        lambda c: c.alarms.min_predictions_per_5min * len(c.symbols),
        _Op.LESS_THAN_THRESHOLD,
        _Missing.BREACHING,
        "Too few predictions in 5 minutes (one per symbol every interval expected); no data at "
        "all means no predictor is running.",
        "GET /health for the reason; then the inference function's Errors, Throttles and logs "
        "(lease, Redis, model load) and its EventBridge schedule.",
    ),
    AlarmSpec(
        "stale-features",
        lambda s, c: s.inference("FeatureAge", "p95", _FIVE_MINUTES),
        lambda c: c.alarms.max_feature_age_ms,
        _Op.GREATER_THAN_THRESHOLD,
        _Missing.MISSING,
        "The stream features predictions are made from are getting old (p95, ms); past "
        "MAX_FEATURE_AGE_MS the predictor stops using them and falls back.",
        "Aggregator iterator age, EventToFeatureLag and errors; then the ingestor (stream "
        "incoming records).",
    ),
    AlarmSpec(
        "fallback-share-high",
        lambda s, c: s.fallback_share(Duration.minutes(15)),
        lambda c: c.alarms.max_fallback_share,
        _Op.GREATER_THAN_THRESHOLD,
        _Missing.MISSING,
        "Too many predictions in 15 minutes came from fallback features (Redis fallback "
        "document or Binance REST) instead of the stream's.",
        "Dashboard row 'Fallbacks': FallbackStaleFeatures means the stream pipeline (aggregator, "
        "ingestor), RedisUnavailable means the cache.",
    ),
    AlarmSpec(
        "model-worse-than-random-walk",
        lambda s, c: s.error_ratio(Duration.hours(1), c.alarms.min_scored_predictions_per_hour),
        lambda c: c.alarms.max_error_ratio_vs_random_walk,
        _Op.GREATER_THAN_THRESHOLD,
        _Missing.MISSING,
        "Over the last hour the model's mean absolute error exceeded the random walk's by the "
        "threshold ratio (judged only on enough scored predictions).",
        "Check the served model version (ModelVersion in the EMF logs, /health) and recent "
        "reloads; roll current.json back to the previous version if it changed.",
    ),
    AlarmSpec(
        "inference-latency-p99",
        lambda s, c: s.inference("InferenceLatency", "p99", _FIVE_MINUTES),
        lambda c: c.alarms.max_inference_latency_p99_ms,
        _Op.GREATER_THAN_THRESHOLD,
        _Missing.MISSING,
        "Inference latency p99 (Redis read to result, ms) was high in 2 of 3 5-minute periods.",
        "Redis latency and throttling on the dashboard, then the inference function's memory "
        "and Duration.",
        periods=3,
        datapoints=2,
    ),
    AlarmSpec(
        "aggregator-iterator-age",
        lambda s, c: s.function("aggregator", "IteratorAge", "Maximum", MINUTE),
        lambda c: c.alarms.max_iterator_age_ms,
        _Op.GREATER_THAN_THRESHOLD,
        _Missing.MISSING,
        "The aggregator falls behind the stream (iterator age, ms) for 3 minutes.",
        "Aggregator errors and FailedGroups (a failing batch is retried and blocks its shard), "
        "then its Duration and Redis health.",
        periods=3,
    ),
    AlarmSpec(
        "stream-silent",
        lambda s, c: s.stream("IncomingRecords", "Sum", _FIVE_MINUTES),
        lambda c: c.alarms.min_incoming_records_per_5min,
        _Op.LESS_THAN_THRESHOLD,
        _Missing.BREACHING,
        "Nothing (or almost nothing) was written to the Kinesis stream in 5 minutes: the "
        "ingestor is down or cut off from Binance.",
        "The ingestor's ECS service (running tasks, logs: the Binance connection, 451 or auth "
        "errors).",
    ),
    AlarmSpec(
        "ingestor-no-tasks",
        lambda s, c: s.ingestor_tasks("RunningTaskCount", "Maximum", MINUTE),
        lambda c: 1,
        _Op.LESS_THAN_THRESHOLD,
        _Missing.BREACHING,
        "No ingestor task was running for 2 minutes (Container Insights' RunningTaskCount): "
        "ECS cannot start one or it keeps stopping.",
        "The service's events and stopped tasks' reasons (aws ecs describe-services, "
        "describe-tasks): image pull, secret access, health check or out of memory.",
        periods=2,
    ),
    AlarmSpec(
        "ingestor-no-frames",
        lambda s, c: s.ingestor("Frames", "Sum", MINUTE),
        lambda c: 1,
        _Op.LESS_THAN_THRESHOLD,
        _Missing.BREACHING,
        "The ingestor received no frame from Binance for 2 minutes (or reported nothing at "
        "all): it is down, cannot connect, or the stream went silent.",
        "The ingestor's logs (connect errors, HTTP 451/401 from Binance, the API key secret); "
        "Reconnects and ConnectionAgeS on the dashboard; then ingestor-no-tasks.",
        periods=2,
    ),
    AlarmSpec(
        "ingestor-put-failures",
        lambda s, c: s.ingest_put_failures(_FIVE_MINUTES),
        lambda c: c.alarms.max_ingest_put_failures_per_5min,
        _Op.GREATER_THAN_THRESHOLD,
        _Missing.NOT_BREACHING,
        "Ingestor writes to Kinesis failed in 5 minutes (PutRecords calls that raised plus "
        "entries the stream rejected; both are resent, but events are delayed).",
        "kinesis-write-throttled and the stream's incoming bytes against the shard limits; "
        "the ingestor's logs for the error (AccessDenied, network, throttling).",
    ),
    AlarmSpec(
        "ingestor-gaps",
        lambda s, c: s.ingestor("Gaps", "Sum", _FIVE_MINUTES),
        lambda c: c.alarms.ingest_gap_count,
        _Op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        _Missing.NOT_BREACHING,
        "The ingestor saw gaps in Binance's update ids in 5 minutes: market events were lost "
        "between Binance and the ingestor (the depth book is resynchronized).",
        "GapEvents, Reconnects, ShedEvents and BufferFillPercent on the dashboard: shedding "
        "means the task is too small or Kinesis too slow; reconnects mean the network.",
    ),
    AlarmSpec(
        "ingestor-lag",
        lambda s, c: s.ingestor("ExchangeLagMs", "p99", MINUTE),
        lambda c: c.alarms.max_ingest_lag_p99_ms,
        _Op.GREATER_THAN_THRESHOLD,
        _Missing.MISSING,
        "Events reach Kinesis late (exchange event time to put acknowledged, p99 ms) for 3 "
        "minutes: the ingestor, its network or the stream is slow.",
        "BufferFillPercent and PutCalls on the dashboard, the task's CPU (Container Insights), "
        "ingestor-put-failures; then clock skew in the logs.",
        periods=3,
    ),
    AlarmSpec(
        "kinesis-write-throttled",
        lambda s, c: s.stream("WriteProvisionedThroughputExceeded", "Sum", _FIVE_MINUTES),
        lambda c: c.alarms.kinesis_write_throttle_count,
        _Op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        _Missing.NOT_BREACHING,
        "The stream refused writes for throughput: events are delayed or lost.",
        "Stream incoming bytes and records against the shard limits; add shards (kinesis_shards) "
        "or switch to on-demand.",
    ),
    AlarmSpec(
        "dlq-not-empty",
        lambda s, c: s.dlq("ApproximateNumberOfMessagesVisible", "Maximum", _FIVE_MINUTES),
        lambda c: 1,
        _Op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        _Missing.NOT_BREACHING,
        "The aggregator gave up on a batch (retries or record age exhausted): those records' "
        "events were never applied.",
        "Read a message (it names the shard and sequence range), then the aggregator's logs for "
        "that batch.",
    ),
    AlarmSpec(
        "redis-throttled",
        lambda s, c: s.cache("ThrottledCmds", "Sum", _FIVE_MINUTES),
        lambda c: c.alarms.redis_throttled_cmds,
        _Op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        _Missing.NOT_BREACHING,
        "ElastiCache throttled commands (the load grew faster than the cache scales, or hit "
        "its ECPU limit).",
        "ECPU per second against cache_max_ecpu_per_second on the dashboard; raise the limit.",
    ),
    AlarmSpec(
        "db-free-storage-low",
        lambda s, c: s.database("FreeStorageSpace", "Minimum", _FIVE_MINUTES),
        lambda c: c.alarms.min_db_free_storage_gb * _GIB,
        _Op.LESS_THAN_THRESHOLD,
        _Missing.MISSING,
        "The database is running out of storage (bytes free).",
        "Storage autoscaling stops at db_max_allocated_storage_gb: raise it, or find what grew.",
    ),
    AlarmSpec(
        "db-cpu-high",
        lambda s, c: s.database("CPUUtilization", "Average", _FIVE_MINUTES),
        lambda c: c.alarms.max_db_cpu_percent,
        _Op.GREATER_THAN_THRESHOLD,
        _Missing.MISSING,
        "Database CPU (%) was high for 15 minutes.",
        "Database connections and the queries running (Performance Insights or "
        "pg_stat_activity); then the instance class.",
        periods=3,
    ),
    AlarmSpec(
        "websocket-execution-errors",
        lambda s, c: s.websocket("ExecutionError", "Sum", _FIVE_MINUTES),
        lambda c: c.alarms.websocket_execution_errors,
        _Op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        _Missing.NOT_BREACHING,
        "The WebSocket API failed to call its function: clients get errors on connect or on "
        "messages.",
        "The websocket function's Errors and Throttles, then its logs.",
    ),
    AlarmSpec(
        "http-5xx",
        lambda s, c: s.http("5xx", "Sum", _FIVE_MINUTES),
        lambda c: c.alarms.http_5xx_count,
        _Op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        _Missing.NOT_BREACHING,
        "The HTTP API answered 5xx: 503 means no fresh prediction or no active predictor (see "
        "the predictor alarms), 500 a failing api function.",
        "The predictor alarms first; then the api function's Errors and logs.",
    ),
    AlarmSpec(
        "price-divergence",
        lambda s, c: s.poller("PriceDivergenceBps", "Maximum", MINUTE),
        lambda c: c.alarms.max_price_divergence_bps,
        _Op.GREATER_THAN_THRESHOLD,
        _Missing.MISSING,
        "The stream features' price and Binance's REST last price differ (basis points, maximum "
        "per minute) for 3 minutes: the stream pipeline is wrong or stale while REST is fine.",
        "StreamFeatureAgeMs on the dashboard (old features: the aggregator or the ingestor), "
        "stale-features and stream-silent; then the aggregator's ImplausibleEvents and logs.",
        periods=3,
    ),
    AlarmSpec(
        "poller-errors",
        lambda s, c: s.poller("PollerErrors", "Sum", _FIVE_MINUTES),
        lambda c: c.alarms.poller_errors_per_5min,
        _Op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        _Missing.NOT_BREACHING,
        "Polls of Binance REST or writes of the fallback features failed in 5 minutes: the "
        "predictor's fallback may be missing or old.",
        "PollerRateLimited (Binance's 429/418: the poll interval or the IP's weight), then the "
        "poller's logs (REST timeouts through NAT, Redis errors).",
    ),
    AlarmSpec(
        "poller-silent",
        lambda s, c: s.poller("PollerPolls", "Sum", _FIVE_MINUTES),
        lambda c: 1,
        _Op.LESS_THAN_THRESHOLD,
        _Missing.BREACHING,
        "The poller made no poll in 5 minutes (or reported nothing): no fallback features are "
        "being written.",
        "lambda-errors-poller and lambda-throttles-poller, the poller's PollEveryMinute schedule "
        "(enabled, its target) and its logs.",
    ),
    AlarmSpec(
        "loader-rejected",
        lambda s, c: s.loader("LoaderRejected", "Sum", _FIVE_MINUTES),
        lambda c: c.alarms.loader_rejected_count,
        _Op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        _Missing.NOT_BREACHING,
        "The loader rejected history objects as malformed in 5 minutes: nothing of them was "
        "written to the database.",
        "The loader's logs name each object and why (schema, key layout); fix or re-export the "
        "object, then upload it again (a new object is loaded; a loaded one is skipped).",
    ),
    AlarmSpec(
        "loader-dlq-not-empty",
        lambda s, c: s.loader_queue(
            "ApproximateNumberOfMessagesVisible", "Maximum", _FIVE_MINUTES, dead_letters=True
        ),
        lambda c: 1,
        _Op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        _Missing.NOT_BREACHING,
        "A history object's notification failed to load five times and went to the loader's "
        "dead-letter queue: that object is not in the database.",
        "Read a message (the S3 notification names the key), the loader's logs for it "
        "(database reachable? secret?); after the fix, redrive the DLQ to the loader's queue.",
    ),
)
"""The alarms that are not per function."""

_FUNCTION_FIRST_STEP: Final[Mapping[str, str]] = {
    "aggregator": "logs (a batch that raises is retried until the DLQ) and Redis health.",
    "inference": "logs (model load, Redis, REST) and /health.",
    "api": "logs and Redis health.",
    "websocket": "logs, Redis health and the token secret.",
    "poller": "logs (Binance REST, Redis) and its timeout against POLLER_STOP_MARGIN_MS.",
    "loader": "logs (the database, its secret, the object) and loader-dlq-not-empty.",
}


def function_alarms(key: str) -> tuple[AlarmSpec, ...]:
    """The errors and throttles alarms of the function ``key`` (one of ``FUNCTION_KEYS``)."""
    first = f"The {key} function's {_FUNCTION_FIRST_STEP[key]}"
    return (
        AlarmSpec(
            f"lambda-errors-{key}",
            lambda s, c: s.function(key, "Errors", "Sum", _FIVE_MINUTES),
            lambda c: c.alarms.lambda_error_count,
            _Op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            _Missing.NOT_BREACHING,
            f"Invocations of the {key} function failed (an exception or a timeout).",
            first,
        ),
        AlarmSpec(
            f"lambda-throttles-{key}",
            lambda s, c: s.function(key, "Throttles", "Sum", _FIVE_MINUTES),
            lambda c: c.alarms.lambda_throttle_count,
            _Op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            _Missing.NOT_BREACHING,
            f"Invocations of the {key} function were throttled (concurrency exhausted).",
            "Concurrent executions on the dashboard against the function's reserved "
            "concurrency and the account limit.",
        ),
    )


def alarm_specs() -> tuple[AlarmSpec, ...]:
    """Every alarm: :data:`ALARMS`, then each function's errors and throttles."""
    return ALARMS + tuple(a for key in FUNCTION_KEYS for a in function_alarms(key))


def build_alarms(
    scope: Construct, *, config: EnvConfig, signals: Signals, topic: sns.ITopic
) -> dict[str, cw.Alarm]:
    """Create every alarm in ``scope`` with ``topic`` as its alarm and OK action.

    Returns
    -------
    dict
        The alarms by their short name (``predictor-stalled``, ``lambda-errors-api``, …).
    """
    action = cw_actions.SnsAction(topic)
    alarms: dict[str, cw.Alarm] = {}
    for spec in alarm_specs():
        threshold = spec.threshold(config)
        alarm = cw.Alarm(
            scope,
            "".join(part.capitalize() for part in spec.name.split("-")),
            alarm_name=f"{config.prefix}-{spec.name}",
            alarm_description=_description(spec, threshold),
            metric=spec.metric(signals, config),
            threshold=threshold,
            comparison_operator=spec.comparison,
            evaluation_periods=spec.periods,
            datapoints_to_alarm=spec.datapoints or spec.periods,
            treat_missing_data=spec.missing,
        )
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        alarms[spec.name] = alarm
    return alarms


_SYMBOL: Final[Mapping[cw.ComparisonOperator, str]] = {
    _Op.LESS_THAN_THRESHOLD: "<",
    _Op.GREATER_THAN_THRESHOLD: ">",
    _Op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD: ">=",
}


_NO_DATA: Final[Mapping[cw.TreatMissingData, str]] = {
    _Missing.BREACHING: "counts as breaching",
    _Missing.NOT_BREACHING: "counts as fine",
    _Missing.MISSING: "is ignored (with none at all the alarm shows INSUFFICIENT_DATA, silently)",
}


def _description(spec: AlarmSpec, threshold: float) -> str:
    return (
        f"{spec.meaning} Alarm when {_SYMBOL[spec.comparison]} {threshold:g}. "
        f"First: {spec.first} No data {_NO_DATA[spec.missing]}. Runbook: {RUNBOOK}."
    )
