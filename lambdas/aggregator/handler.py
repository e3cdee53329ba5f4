"""Aggregator Lambda: a Kinesis batch of market events → features in Redis (thin edge).

Powertools' BatchProcessor decodes record by record (a poison record becomes a batch item
failure or is skipped, per ``POISON_RECORD_POLICY``); the whole batch is then applied in one
Redis transaction by :class:`btcpred.aggregator.Aggregator`. If Redis fails, the handler raises
and Lambda retries the batch: nothing partial was written.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from btcpred.aggregator import (
    Aggregator,
    BatchResult,
    DecodedRecord,
    RedisFeatureStore,
    StoreKeys,
    rest_warmer,
)
from btcpred.records import RecordFormatError
from btcpred.settings import AggregatorSettings
from btcpred.sources.binance_rest import BinanceRestClient

logger = Logger(service="aggregator")
metrics = Metrics(namespace="btcpred", service="aggregator")
processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
_aggregator: Aggregator | None = None


def build(settings: AggregatorSettings) -> Aggregator:
    """Wire the aggregator from settings (runs once per cold start)."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    store = RedisFeatureStore(
        client,
        StoreKeys(settings.features_prefix, settings.state_prefix),
        latest_ttl_s=settings.features_ttl_s,
        state_ttl_s=settings.state_ttl_s,
        history_length=settings.history_length,
    )
    warmer = None
    if settings.warmup_from_rest:
        rest = BinanceRestClient(settings.binance_rest_url, timeout_s=settings.rest_timeout_s)
        warmer = rest_warmer(lambda s, i, n, end: rest.recent_klines(s, i, n, end_time_ms=end))
    return Aggregator(store, warmer=warmer, poison_policy=settings.poison_policy)


def _emit(result: BatchResult, decoded: list[DecodedRecord], failed: int, seconds: float) -> None:
    metrics.add_metric("Records", MetricUnit.Count, result.records)
    metrics.add_metric("Events", MetricUnit.Count, result.events)
    metrics.add_metric("DecodeFailures", MetricUnit.Count, failed + sum(r.poison for r in decoded))
    metrics.add_metric("DuplicateRecordsSkipped", MetricUnit.Count, result.skipped_records)
    metrics.add_metric("DuplicateEventsSkipped", MetricUnit.Count, result.duplicate_events)
    metrics.add_metric("WarmupFailures", MetricUnit.Count, result.warmup_failures)
    metrics.add_metric("BatchDuration", MetricUnit.Milliseconds, seconds * 1000)
    if result.newest_event_us > 0:
        lag_ms = time.time() * 1000 - result.newest_event_us / 1000
        metrics.add_metric("EventToFeatureLag", MetricUnit.Milliseconds, lag_ms)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Apply one Kinesis batch; return the partial batch failure response."""
    global _aggregator
    if _aggregator is None:
        _aggregator = build(AggregatorSettings.from_env(os.environ))
    aggregator, started = _aggregator, time.perf_counter()
    decoded: list[DecodedRecord] = []
    failed: dict[str, int] = {}  # shard -> lowest failed sequence number
    failures: list[int] = []

    def on_record(record: KinesisStreamRecord) -> None:
        shard, sequence = record.event_id.split(":", 1)[0], int(record.kinesis.sequence_number)
        try:
            decoded.append(aggregator.decode(shard, sequence, record.kinesis.data))
        except RecordFormatError:
            failed[shard] = min(failed.get(shard, sequence), sequence)
            failures.append(sequence)
            raise

    with processor(records=event["Records"], handler=on_record, lambda_context=context):
        processor.process()
    result = aggregator.apply(decoded, failed)
    _emit(result, decoded, len(failures), time.perf_counter() - started)
    logger.debug("batch applied", extra={"events": result.events, "records": result.records})
    return processor.response()
