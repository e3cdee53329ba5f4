"""WebSocket API Lambda: ``$connect``, ``$disconnect`` and ``$default`` (thin edge).

The routes' logic is :class:`btcpred.inference.clients.WebSocketApi`; the connection token is
``WEBSOCKET_TOKEN`` or, in AWS, the Secrets Manager secret ``WEBSOCKET_TOKEN_SECRET_ARN``, and
the Redis credentials the secret ``REDIS_AUTH_SECRET_ARN`` (both read once per cold start,
through one client). Replies go back through the management API of the calling stage.
Light: no numpy, onnxruntime or fastavro in this function's import graph.
"""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from btcpred.aws import redis_credentials, secrets_client
from btcpred.inference.clients import WebSocketApi
from btcpred.inference.connections import RedisConnectionRegistry
from btcpred.inference.posting import ManagementApiPoster
from btcpred.inference.store import InferenceStore
from btcpred.redisconn import connect
from btcpred.settings import WebSocketSettings

logger = Logger(service="websocket")
_api: WebSocketApi | None = None
_posters: dict[str, ManagementApiPoster] = {}


def build(settings: WebSocketSettings) -> WebSocketApi:
    """Wire the routes (once per cold start); an unreadable Redis secret raises CredentialsError."""
    token, token_arn = settings.websocket_token, settings.websocket_token_secret_arn
    secrets = secrets_client() if token_arn or settings.redis_auth_secret_arn else None
    if token is None and token_arn is not None and secrets is not None:
        token = secrets.get_secret_value(SecretId=token_arn)["SecretString"]
    if not token:
        logger.error("no WEBSOCKET_TOKEN or WEBSOCKET_TOKEN_SECRET_ARN: refusing every client")
    credentials = redis_credentials(settings.redis_auth_secret_arn, secrets)
    client = connect(
        settings.redis_url, cluster=settings.redis_cluster, timeout_s=1.0, credentials=credentials
    )
    keys = settings.redis_keys
    store = InferenceStore(client, keys)
    registry = RedisConnectionRegistry(client, ttl_s=settings.connection_ttl_s, keys=keys)
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
        _api = build(WebSocketSettings.from_env(os.environ))
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
    body, is_base64 = event.get("body"), event.get("isBase64Encoded") is True
    replies = _api.message(cid, body, now_ms, is_base64=is_base64)
    _api.reply(_poster(_api, request), cid, replies)
    return {"statusCode": 200}
