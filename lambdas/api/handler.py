"""HTTP API Lambda: ``GET /health`` and ``GET /prediction/latest`` (thin edge).

The logic is :class:`btcpred.inference.clients.HttpApi`; events are API Gateway HTTP API
(payload format 2.0) proxy events.
"""

from __future__ import annotations

import os
import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from btcpred.inference import redis_client
from btcpred.inference.clients import HttpApi, HttpResponse
from btcpred.inference.store import InferenceStore
from btcpred.settings import InferenceSettings

logger = Logger(service="api")
_api: HttpApi | None = None


def build(settings: InferenceSettings) -> HttpApi:
    """Wire the routes (once per cold start)."""
    client = redis_client(settings.redis_url, timeout_s=1.0)
    return HttpApi(
        settings,
        InferenceStore(client, settings.prediction_keys, features_prefix=settings.features_prefix),
    )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route one HTTP request."""
    global _api
    if _api is None:
        _api = build(InferenceSettings.from_env(os.environ))
    method = (event.get("requestContext") or {}).get("http", {}).get("method", "GET")
    path = event.get("rawPath") or "/"
    if method != "GET":
        return HttpResponse(405, {"error": f"{method} not allowed"}).to_proxy()
    if path == "/health":
        return _api.health(time.time_ns() // 1_000_000).to_proxy()
    if path == "/prediction/latest":
        query = event.get("queryStringParameters") or {}
        return _api.latest(query.get("symbol")).to_proxy()
    return HttpResponse(404, {"error": f"no route {path}"}).to_proxy()
