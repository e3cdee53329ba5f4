"""Wiring: settings and caller-made AWS clients in, a ready :class:`InferenceService` out.

Used by the inference Lambda, the local replay and the benchmark; it never imports boto3 (the
handlers make the clients).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from btcpred.inference.broadcast import Broadcaster, ManagementApiPoster
from btcpred.inference.connections import RedisConnectionRegistry
from btcpred.inference.outputs import HistoryWriter, Metrics
from btcpred.inference.predictor import Predictor
from btcpred.inference.redisio import RedisConnection
from btcpred.inference.reload import ModelSource
from btcpred.inference.service import InferenceService, RestFeatures
from btcpred.model import OnnxModel
from btcpred.model.registry import S3Client, open_store
from btcpred.redisconn import RedisClient, connect
from btcpred.settings import InferenceSettings
from btcpred.sources.binance_rest import BinanceRestClient

__all__ = ["LOOP_REDIS_TIMEOUT_S", "build_service", "redis_client", "redis_connection"]

LOOP_REDIS_TIMEOUT_S = 0.25
"""The predictor's Redis timeouts: an outage costs a tick at most about this long."""


def redis_client(url: str, *, timeout_s: float = LOOP_REDIS_TIMEOUT_S) -> redis.Redis:
    """A single-node client with short timeouts (callers that know they have no cluster)."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=False
    )


def redis_connection(
    settings: InferenceSettings, *, timeout_s: float = LOOP_REDIS_TIMEOUT_S
) -> RedisConnection:
    """The configured client (``REDIS_CLUSTER`` says which kind), built when first used.

    A cluster client reads the slot map when built, so it cannot be built while Redis is
    down; the predictor starts anyway and builds it at its next retry.
    """
    return RedisConnection(
        lambda: connect(settings.redis_url, cluster=settings.redis_cluster, timeout_s=timeout_s)
    )


class _LazyRegistry:
    """The connection registry over a client that may not exist yet (Redis down at start)."""

    def __init__(self, conn: RedisConnection, ttl_s: int) -> None:
        self._conn = conn
        self._ttl_s = ttl_s
        self._registry: RedisConnectionRegistry | None = None

    def _get(self) -> RedisConnectionRegistry:
        if self._registry is None:
            client: Any = self._conn.get()  # the registry is typed for a single-node client
            self._registry = RedisConnectionRegistry(client, ttl_s=self._ttl_s)
        return self._registry

    def add(self, connection_id: str, symbol: str, now_ms: int) -> None:
        self._get().add(connection_id, symbol, now_ms)

    def remove(self, connection_ids: Sequence[str]) -> None:
        self._get().remove(connection_ids)

    def connections(self, symbol: str, now_ms: int) -> list[str]:
        return self._get().connections(symbol, now_ms)

    def symbol_of(self, connection_id: str) -> str | None:
        return self._get().symbol_of(connection_id)


def build_service(
    settings: InferenceSettings,
    *,
    owner: str,
    metrics: Metrics,
    client: RedisClient | RedisConnection | None = None,
    s3_client: S3Client | None = None,
    apigw_client: Any = None,
    rest: bool = True,
    model: OnnxModel | None = None,
) -> InferenceService:
    """Load the model (cold start: one session, one warm-up run) and wire every output.

    ``model`` serves an already loaded model instead (the local replay), never reloaded.
    Without ``client``, the client is :func:`redis_connection` of the settings (single node
    or cluster), built when first needed, so Redis being down does not stop the start.

    Raises
    ------
    ModelFormatError, RegistryError
        No servable model at ``MODEL_PATH`` (the function must not start without one).
    """
    source = None
    if model is None:
        source = ModelSource(settings.model_path, settings.model_name, s3_client)
        model = source.load()  # includes the warm-up (probe) run
    if client is None:
        conn = redis_connection(settings)
    elif isinstance(client, RedisConnection):
        conn = client
    else:
        conn = RedisConnection.of(client)
    predictor = Predictor(
        model, cache_size=settings.feature_cache_size, batch_size=settings.model_batch_size
    )
    broadcaster = None
    if apigw_client is not None:
        broadcaster = Broadcaster(
            _LazyRegistry(conn, settings.connection_ttl_s),
            ManagementApiPoster(apigw_client),
            max_concurrency=settings.max_concurrent_predictions,
            budget_ms=settings.broadcast_budget_ms,
        )
    history = None
    if settings.history_uri is not None:
        history = HistoryWriter(open_store(settings.history_uri, s3_client), owner)
    rest_features = None
    if rest:
        rest_client = BinanceRestClient(
            settings.binance_rest_url, timeout_s=settings.rest_timeout_s, max_attempts=1
        )
        rest_features = RestFeatures(rest_client)
    return InferenceService(
        settings,
        predictor=predictor,
        client=conn,
        metrics=metrics,
        owner=owner,
        rest=rest_features,
        model_source=source if source is not None and source.watched else None,
        broadcaster=broadcaster,
        history=history,
    )
