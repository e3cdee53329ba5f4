"""Inference Lambda: started every minute by EventBridge, predicts every interval (thin edge).

The service is built once per cold start (model loaded, session warmed up) and kept warm; each
invocation runs :func:`btcpred.inference.run_loop` until ``LOOP_STOP_MARGIN_MS`` before its
time runs out. A Redis lease makes exactly one overlapping invocation the active predictor.
The Redis credentials (secret ``REDIS_AUTH_SECRET_ARN``) are read at cold start; if they cannot
be, the function starts anyway, predicts from REST and reads them again later (btcpred.aws).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from btcpred.aws import lazy_redis_credentials
from btcpred.inference import InferenceService, build_service, run_loop
from btcpred.inference.aws import EmfMetrics
from btcpred.settings import InferenceSettings

logger = Logger(service="inference")
metrics = Metrics(namespace="btcpred", service="inference")
_service: InferenceService | None = None


def build(settings: InferenceSettings) -> InferenceService:
    """Wire the service from settings and AWS clients (once per cold start)."""
    needs_s3 = settings.model_path.startswith("s3://") or (settings.history_uri or "").startswith(
        "s3://"
    )
    apigw = None
    if settings.websocket_endpoint is not None:
        apigw = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=settings.websocket_endpoint,
            config=Config(
                connect_timeout=1,
                read_timeout=1,
                retries={"max_attempts": 1},
                max_pool_connections=settings.max_concurrent_predictions,
            ),
        )
    return build_service(
        settings,
        owner=uuid.uuid4().hex[:12],
        metrics=EmfMetrics(metrics),
        s3_client=boto3.client("s3") if needs_s3 else None,
        apigw_client=apigw,
        credentials=lazy_redis_credentials(settings.redis_auth_secret_arn),
    )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    """Loop until shortly before the invocation's time is up; return the loop's counts."""
    global _service
    if _service is None:
        _service = build(InferenceSettings.from_env(os.environ))
    service = _service
    now_ms = time.time_ns() // 1_000_000
    deadline = now_ms + context.get_remaining_time_in_millis() - service.settings.stop_margin_ms
    report = run_loop(service, clock_ms=lambda: time.time_ns() // 1_000_000, deadline_ms=deadline)
    logger.info("loop finished", extra={"ticks": report.ticks, "active": report.active_ticks})
    return {"ticks": report.ticks, "active_ticks": report.active_ticks, "missed": report.missed}
