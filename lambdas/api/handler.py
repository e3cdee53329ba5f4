"""HTTP API Lambda: ``GET /health`` and ``GET /prediction/latest`` (thin edge).

The logic, routing included, is :class:`btcpred.inference.clients.HttpApi`; events are API
Gateway HTTP API (payload format 2.0) proxy events. The Redis credentials are read from the
secret ``REDIS_AUTH_SECRET_ARN`` at cold start, when set. Light: this function's import graph
holds no numpy, onnxruntime or fastavro (tests/unit/test_light_imports.py), nor boto3 without
a secret to read.
"""

from __future__ import annotations

import os
import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from btcpred.aws import redis_credentials
from btcpred.inference.clients import HttpApi
from btcpred.inference.store import InferenceStore
from btcpred.redisconn import connect
from btcpred.settings import HttpSettings

logger = Logger(service="api")
_api: HttpApi | None = None


def build(settings: HttpSettings) -> HttpApi:
    """Wire the routes (once per cold start); an unreadable secret raises CredentialsError."""
    credentials = redis_credentials(settings.redis_auth_secret_arn)
    client = connect(
        settings.redis_url, cluster=settings.redis_cluster, timeout_s=1.0, credentials=credentials
    )
    return HttpApi(settings, InferenceStore(client, settings.redis_keys))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route one HTTP request."""
    global _api
    if _api is None:
        _api = build(HttpSettings.from_env(os.environ))
    request = event.get("requestContext") or {}
    response = _api.route(
        (request.get("http") or {}).get("method"),
        event.get("rawPath"),
        request.get("stage"),
        event.get("queryStringParameters"),
        time.time_ns() // 1_000_000,
    )
    return response.to_proxy()
