"""Aggregator Lambda: a Kinesis batch of market events → features in Redis (thin edge).

The event's envelope is checked (a malformed event raises ``InvalidEventError``; ``Records: []``
is a no-op), each record decoded (a poison record is skipped or reported as a batch item failure,
per ``POISON_RECORD_POLICY``), then the batch is applied by :class:`btcpred.aggregator.Aggregator`
in one Redis transaction per partition key. A group whose transaction fails is reported by its
lowest sequence number, so Lambda redelivers from there and the (shard, partition key)
checkpoints skip what the other groups already applied; if every group fails the handler raises
and Lambda retries the whole batch. The Redis credentials are read from the secret
``REDIS_AUTH_SECRET_ARN`` at cold start, when set (unreadable: ``CredentialsError``, retried).
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from btcpred.aggregator import (
    Aggregator,
    BatchResult,
    DecodedRecord,
    RedisFeatureStore,
    StoreUnavailableError,
    kinesis_inputs,
    rest_warmer,
)
from btcpred.aws import redis_credentials
from btcpred.records import RecordFormatError
from btcpred.redisconn import connect
from btcpred.settings import AggregatorSettings
from btcpred.sources.binance_rest import BinanceRestClient

logger = Logger(service="aggregator")
metrics = Metrics(namespace="btcpred", service="aggregator")
_aggregator: Aggregator | None = None


def build(settings: AggregatorSettings) -> Aggregator:
    """Wire the aggregator from settings (runs once per cold start)."""
    credentials = redis_credentials(settings.redis_auth_secret_arn)
    try:  # a cluster client reads the slot map on first use: here, for the commit script
        client = connect(
            settings.redis_url,
            cluster=settings.redis_cluster,
            timeout_s=2.0,
            credentials=credentials,
        )
        store = RedisFeatureStore(
            client,
            settings.redis_keys,
            latest_ttl_s=settings.features_ttl_s,
            state_ttl_s=settings.state_ttl_s,
            history_length=settings.history_length,
        )
    except redis.RedisError as exc:
        raise StoreUnavailableError(f"redis unreachable: {exc}") from exc
    warmer = None
    if settings.warmup_from_rest:
        rest = BinanceRestClient(  # 2 attempts, 1 s between at most: bounds one warm-up
            settings.binance_rest_url,
            timeout_s=settings.rest_timeout_s,
            max_attempts=2,
            max_backoff_s=1.0,
        )
        warmer = rest_warmer(lambda s, i, n, end: rest.recent_klines(s, i, n, end_time_ms=end))
    return Aggregator(
        store,
        warmer=warmer,
        poison_policy=settings.poison_policy,
        symbols=settings.symbols,
        warmup_budget_s=settings.warmup_budget_s,
    )


def _emit(result: BatchResult, reported: int, seconds: float) -> None:
    counts = {
        "Records": result.records,
        "Events": result.events,
        "GapMessages": result.gap_messages,
        "GapIds": result.gap_ids,
        "DecodeFailures": result.poison_records + reported,
        "MisroutedRecords": result.misrouted_records,
        "UnknownSymbolRecords": result.unknown_symbol_records,
        "DuplicateRecordsSkipped": result.skipped_records,
        "DuplicateEventsSkipped": result.duplicate_events,
        "ImplausibleEvents": sum(result.implausible_events.values()),
        "TradeIdResets": result.trade_id_resets,
        "WarmupFailures": result.warmup_failures,
        "WarmupSkipped": result.warmup_skipped,
        "FailedGroups": len(result.failed_groups),
    }
    for name, value in counts.items():
        metrics.add_metric(name, MetricUnit.Count, value)
    metrics.add_metric("BatchDuration", MetricUnit.Milliseconds, seconds * 1000)
    if result.newest_event_us > 0:
        lag_ms = time.time() * 1000 - result.newest_event_us / 1000
        metrics.add_metric("EventToFeatureLag", MetricUnit.Milliseconds, lag_ms)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    """Apply one Kinesis batch; return the partial batch failure response."""
    global _aggregator
    if _aggregator is None:
        _aggregator = build(AggregatorSettings.from_env(os.environ))
    aggregator, started = _aggregator, time.perf_counter()
    inputs = kinesis_inputs(event)
    decoded: list[DecodedRecord] = []
    failed: dict[tuple[str, str], int] = {}  # (shard, key) -> lowest reported sequence number
    for r in inputs:
        try:
            decoded.append(
                aggregator.decode(
                    r.shard_id, r.sequence_number, r.data, r.partition_key, r.arrival_us
                )
            )
        except RecordFormatError:
            slot = (r.shard_id, r.partition_key)
            failed[slot] = min(failed.get(slot, r.sequence_number), r.sequence_number)
    result = aggregator.apply(decoded, failed)
    _emit(result, len(inputs) - len(decoded), time.perf_counter() - started)
    reported = {*failed.values(), *(s for g in result.failed_groups.values() for _, s in g)}
    return {"batchItemFailures": [{"itemIdentifier": str(s)} for s in sorted(reported)]}
