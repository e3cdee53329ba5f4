"""Wiring: settings and caller-made AWS clients in, a ready :class:`InferenceService` out.

Used by the inference Lambda, the local replay and the benchmark; it never imports boto3 (the
handlers make the clients).
"""

from __future__ import annotations

from typing import Any

from btcpred.credentials import RedisCredentials
from btcpred.inference.broadcast import Broadcaster, ManagementApiPoster
from btcpred.inference.connections import RedisConnectionRegistry
from btcpred.inference.outputs import HistoryWriter, Metrics
from btcpred.inference.predictor import Predictor
from btcpred.inference.reload import ModelSource
from btcpred.inference.service import InferenceService, RestFeatures
from btcpred.model import OnnxModel
from btcpred.model.registry import S3Client, open_store
from btcpred.redisconn import LazyCredentials, RedisClient, connect
from btcpred.settings import InferenceSettings
from btcpred.sources.binance_rest import BinanceRestClient

__all__ = ["LOOP_REDIS_TIMEOUT_S", "build_service", "redis_client"]

LOOP_REDIS_TIMEOUT_S = 0.25
"""The predictor's Redis timeouts: an outage costs a tick at most about this long."""


def redis_client(
    settings: InferenceSettings,
    *,
    timeout_s: float = LOOP_REDIS_TIMEOUT_S,
    credentials: RedisCredentials | LazyCredentials | None = None,
) -> RedisClient:
    """The configured client (``REDIS_CLUSTER`` says which kind) with the loop's timeouts.

    A cluster client connects on first use (:func:`btcpred.redisconn.connect`), so the
    predictor starts while Redis is down and reaches it at its next retry; so it does while
    :class:`~btcpred.redisconn.LazyCredentials` cannot be read yet.
    """
    return connect(
        settings.redis_url,
        cluster=settings.redis_cluster,
        timeout_s=timeout_s,
        credentials=credentials,
    )


def build_service(
    settings: InferenceSettings,
    *,
    owner: str,
    metrics: Metrics,
    client: RedisClient | None = None,
    s3_client: S3Client | None = None,
    apigw_client: Any = None,
    rest: bool = True,
    model: OnnxModel | None = None,
    credentials: RedisCredentials | LazyCredentials | None = None,
) -> InferenceService:
    """Load the model (cold start: one session, one warm-up run) and wire every output.

    ``model`` serves an already loaded model instead (the local replay), never reloaded.
    Without ``client``, the client is :func:`redis_client` of the settings (single node or
    cluster) authenticating with ``credentials``, connecting on first use, so Redis being down
    (or its credentials unreadable, with :class:`~btcpred.redisconn.LazyCredentials`) does not
    stop the start.

    Raises
    ------
    ModelFormatError, RegistryError
        No servable model at ``MODEL_PATH`` (the function must not start without one).
    """
    source = None
    if model is None:
        source = ModelSource(settings.model_path, settings.model_name, s3_client)
        model = source.load()  # includes the warm-up (probe) run
    client = client if client is not None else redis_client(settings, credentials=credentials)
    predictor = Predictor(
        model, cache_size=settings.feature_cache_size, batch_size=settings.model_batch_size
    )
    broadcaster = None
    if apigw_client is not None:
        broadcaster = Broadcaster(
            RedisConnectionRegistry(
                client, ttl_s=settings.connection_ttl_s, keys=settings.redis_keys
            ),
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
        client=client,
        metrics=metrics,
        owner=owner,
        rest=rest_features,
        model_source=source if source is not None and source.watched else None,
        broadcaster=broadcaster,
        history=history,
    )
