"""Loader Lambda: S3 ``ObjectCreated`` notifications (through SQS) → rows in PostgreSQL
``market_data`` (thin edge over :class:`btcpred.history.service.LoaderService`).

Each object is loaded exactly once (docs/history.md): a redelivered or concurrent notification
of an object already loaded writes nothing. A malformed object is logged and counted
(``LoaderRejected``) and not retried; a database or S3 failure reports the SQS message as a
batch-item failure, so it comes again and, after five receives, lands in the dead-letter
queue. A direct S3 notification (no SQS) raises on such a failure instead, for Lambda's retry.
The database credentials come from ``DATABASE_SECRET_ARN`` (or ``DATABASE_URL``), read when the
first connection is made; the schema is migrated then, under an advisory lock.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg2
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from btcpred.history.aws import connect, s3_client
from btcpred.history.service import LoaderService
from btcpred.settings.history import DatabaseSettings

logger = Logger(service="loader")
metrics = Metrics(namespace="btcpred", service="loader")
_service: LoaderService | None = None


def build(settings: DatabaseSettings) -> LoaderService:
    """Wire the service (once per cold start; the connection is made on first use)."""
    s3 = s3_client()

    def fetch(bucket: str, key: str) -> tuple[bytes, str | None]:
        answer = s3.get_object(Bucket=bucket, Key=key)
        return answer["Body"].read(), answer.get("ETag", "").strip('"') or None

    return LoaderService(
        lambda: connect(settings), fetch, transient=(psycopg2.Error, BotoCoreError, ClientError)
    )


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Load the event's objects; answer with the SQS batch-item failures."""
    global _service
    if _service is None:
        _service = build(DatabaseSettings.from_env(os.environ))
    outcome = _service.handle(event)
    metrics.add_metric("LoaderObjects", MetricUnit.Count, len(outcome.loaded))
    metrics.add_metric("LoaderRows", MetricUnit.Count, outcome.rows)
    metrics.add_metric(
        "LoaderSkipped", MetricUnit.Count, sum(1 for r in outcome.loaded if r.skipped)
    )
    metrics.add_metric("LoaderRejected", MetricUnit.Count, len(outcome.rejected))
    for result in outcome.loaded:
        metrics.add_metric("LoaderDurationMs", MetricUnit.Milliseconds, result.seconds * 1000)
    direct = [(ref, why) for ref, why in outcome.failed if ref.message_id is None]
    if direct:  # a direct S3 event: raising makes Lambda retry it
        raise RuntimeError(f"could not load {direct[0][0].key}: {direct[0][1]}")
    return outcome.response()
