"""Fallback poller Lambda: started every minute by EventBridge, keeps fallback features fresh.

Each invocation runs :meth:`btcpred.poller.Poller.run` until ``POLLER_STOP_MARGIN_MS`` before
its time runs out: every ``POLLER_INTERVAL_SECONDS`` it asks Binance's REST tickers for every
symbol and writes ``features:{S}:fallback`` (TTL ``FALLBACK_TTL_SECONDS``), so the inference
function finds fresh fallback features without calling Binance itself (docs/poller.md). The
poller is built once per container and kept warm, so a ``Retry-After`` hold-back carries over
to the next invocation. Light: no numpy, onnxruntime, fastavro or psycopg2 in its import graph
(tests/unit/test_light_imports.py); boto3 only when a Redis credentials secret is configured.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from btcpred.aws import redis_credentials
from btcpred.inference.aws import EmfMetrics
from btcpred.poller import SERVICE, FallbackStore, Poller
from btcpred.redisconn import connect
from btcpred.settings import PollerSettings
from btcpred.settings.poller import REDIS_TIMEOUT_S
from btcpred.sources.binance_rest import BinanceRestClient

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="btcpred", service=SERVICE)
_poller: Poller | None = None


def build(settings: PollerSettings) -> Poller:
    """Wire the poller from settings (once per cold start); an unreadable secret raises."""
    credentials = redis_credentials(settings.redis_auth_secret_arn)
    client = connect(
        settings.redis_url,
        cluster=settings.redis_cluster,
        timeout_s=REDIS_TIMEOUT_S,
        credentials=credentials,
    )
    # one attempt per request: the loop honours Retry-After itself and a poll stays short
    rest = BinanceRestClient(
        settings.binance_rest_url, timeout_s=settings.rest_timeout_s, max_attempts=1
    )
    store = FallbackStore(client, settings.redis_keys, ttl_s=settings.fallback_ttl_s)
    return Poller(rest, store, settings.poller_config(), metrics=EmfMetrics(metrics))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    """Poll until shortly before the invocation's time is up; return the loop's counts."""
    global _poller
    if _poller is None:
        _poller = build(PollerSettings.from_env(os.environ))
    report = _poller.run(context.get_remaining_time_in_millis)
    summary = report.summary()
    logger.info("polling finished", extra=summary)
    return summary
