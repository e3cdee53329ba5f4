"""WebSocket API Lambda: ``$connect``, ``$disconnect`` and ``$default`` (thin edge).

The routes' logic is :class:`btcpred.inference.clients.WebSocketApi`; the connection token is
``WEBSOCKET_TOKEN`` or, in AWS, the Secrets Manager secret ``WEBSOCKET_TOKEN_SECRET_ARN``
(read once per cold start). Replies go back through the management API of the calling stage.
"""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from btcpred.inference import ManagementApiPoster, redis_client
from btcpred.inference.clients import WebSocketApi
from btcpred.inference.connections import RedisConnectionRegistry
from btcpred.inference.store import InferenceStore
from btcpred.settings import InferenceSettings

logger = Logger(service="websocket")
_api: WebSocketApi | None = None
_posters: dict[str, ManagementApiPoster] = {}


def build(settings: InferenceSettings) -> WebSocketApi:
    """Wire the routes (once per cold start)."""
    token = settings.websocket_token
    if token is None and settings.websocket_token_secret_arn is not None:
        secrets = boto3.client("secretsmanager")
        token = secrets.get_secret_value(SecretId=settings.websocket_token_secret_arn)[
            "SecretString"
        ]
    if not token:
        logger.error("no WEBSOCKET_TOKEN or WEBSOCKET_TOKEN_SECRET_ARN: refusing every client")
    client = redis_client(settings.redis_url, timeout_s=1.0)
    store = InferenceStore(
        client, settings.prediction_keys, features_prefix=settings.features_prefix
    )
    registry = RedisConnectionRegistry(client, ttl_s=settings.connection_ttl_s)
    return WebSocketApi(settings, registry, store, token)


def _poster(api: WebSocketApi, context: dict[str, Any]) -> ManagementApiPoster:
    endpoint = api.settings.websocket_endpoint or (
        f"https://{context['domainName']}/{context['stage']}"
    )
    if endpoint not in _posters:
        _posters[endpoint] = ManagementApiPoster(
            boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
        )
    return _posters[endpoint]


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route one WebSocket event."""
    global _api
    if _api is None:
        _api = build(InferenceSettings.from_env(os.environ))
    request = event.get("requestContext") or {}
    route, cid = request.get("routeKey"), request.get("connectionId")
    now_ms = time.time_ns() // 1_000_000
    if not isinstance(cid, str):
        return {"statusCode": 400}
    if route == "$connect":
        status = _api.connect(cid, event.get("queryStringParameters"), now_ms)
        logger.info("connect", extra={"connection": cid, "status": status})
        return {"statusCode": status}
    if route == "$disconnect":
        return {"statusCode": _api.disconnect(cid)}
    replies = _api.message(cid, event.get("body"), now_ms)
    _api.reply(_poster(_api, request), cid, replies)
    return {"statusCode": 200}
