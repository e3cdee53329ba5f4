"""Settings of the client-facing functions: the HTTP API and the WebSocket API.

Both read what the predictor publishes (the same Redis, prefixes, symbols and interval as the
inference function), so they parse the same variables with the same rules; neither needs the
model, the broadcast or the REST fallback settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from btcpred.keys import DEFAULT_PREDICTION_KEY, RedisKeys
from btcpred.settings import parse as p
from btcpred.settings.parse import Env

__all__ = ["HttpSettings", "WebSocketSettings"]


@dataclass(frozen=True, slots=True)
class _ClientSettings:
    symbols: tuple[str, ...] = ("BTCUSDT",)
    interval_s: float = 1.5
    redis_url: str = "redis://localhost:6379/0"
    redis_cluster: bool = False
    redis_auth_secret_arn: str | None = None
    """The Secrets Manager secret with the Redis credentials (:mod:`btcpred.credentials`)."""
    features_prefix: str = "features"
    prediction_key: str = DEFAULT_PREDICTION_KEY

    @classmethod
    def _common(cls, env: Mapping[str, str]) -> dict[str, Any]:
        d = cls()
        symbols, key = p.symbols_and_prediction_key(env, d.symbols, d.prediction_key)
        url = p.redis_url(env)
        return {
            "symbols": symbols,
            "prediction_key": key,
            "interval_s": p.read(env, Env.PREDICTION_INTERVAL_SECONDS, d.interval_s, p.interval),
            "redis_url": url,
            "redis_cluster": p.read(env, Env.REDIS_CLUSTER, d.redis_cluster, p.bool_),
            "redis_auth_secret_arn": p.redis_auth_secret_arn(env, url),
            "features_prefix": p.read(
                env, Env.REDIS_FEATURES_KEY_PREFIX, d.features_prefix, p.prefix
            ),
        }

    @property
    def redis_keys(self) -> RedisKeys:
        """The key schema under the configured prefixes."""
        return RedisKeys(features_prefix=self.features_prefix, prediction_key=self.prediction_key)


@dataclass(frozen=True, slots=True)
class HttpSettings(_ClientSettings):
    """``GET /health`` and ``GET /prediction/latest``.

    ``interval_s`` is the predictor's ``PREDICTION_INTERVAL_SECONDS``: health calls the
    predictor stale after three intervals without a prediction.
    """

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Parse the settings.

        Raises
        ------
        ConfigError
            A variable holds an invalid value; the message names it.
        """
        return cls(**cls._common(env))


@dataclass(frozen=True, slots=True)
class WebSocketSettings(_ClientSettings):
    """``$connect`` / ``$disconnect`` / ``$default``.

    ``websocket_token`` (or the secret ``websocket_token_secret_arn`` holding it) is what
    ``$connect`` checks; ``websocket_endpoint`` overrides the reply endpoint derived from the
    event (local gateway); ``connection_ttl_s`` bounds a stored connection's life (API Gateway
    closes one after two hours); ``max_message_bytes`` bounds a client message.
    """

    websocket_endpoint: str | None = None
    websocket_token: str | None = None
    websocket_token_secret_arn: str | None = None
    connection_ttl_s: int = 7200
    max_message_bytes: int = 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Parse the settings.

        Raises
        ------
        ConfigError
            A variable holds an invalid value; the message names it.
        """
        d = cls()
        return cls(
            **cls._common(env),
            websocket_endpoint=p.read(env, Env.WEBSOCKET_ENDPOINT, None, p.endpoint),
            websocket_token=p.read(env, Env.WEBSOCKET_TOKEN, None, p.text),
            websocket_token_secret_arn=p.read(
                env, Env.WEBSOCKET_TOKEN_SECRET_ARN, None, p.secret_arn
            ),
            connection_ttl_s=p.read(
                env, Env.CONNECTION_TTL_SECONDS, d.connection_ttl_s, p.positive_int
            ),
            max_message_bytes=p.read(
                env, Env.MAX_MESSAGE_BYTES, d.max_message_bytes, p.positive_int
            ),
        )
