"""Settings of the inference function: the predictor loop, its fallbacks and outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from btcpred.keys import DEFAULT_PREDICTION_KEY, PredictionKeys, RedisKeys
from btcpred.settings import parse as p
from btcpred.settings.parse import ConfigError, Env

__all__ = ["InferenceSettings"]


@dataclass(frozen=True, slots=True)
class InferenceSettings:
    """Settings of the inference function (the client functions have their own,
    :mod:`btcpred.settings.clients`, over the same variables).

    ``prediction_key`` may hold ``{symbol}``; the history, pending and scored keys derive from it
    (``prediction:{S}:latest`` → ``prediction:{S}:history`` …). ``max_concurrent_predictions``
    bounds the parallel WebSocket deliveries of one tick; ``feature_cache_size`` the recent
    prices and last-known feature values kept per symbol; ``model_batch_size`` the symbols
    predicted in one ONNX run; ``redis_auth_secret_arn`` names the Secrets Manager secret with
    the Redis credentials (:mod:`btcpred.credentials`).
    """

    model_path: str = "models"
    model_name: str = "btcpred-mlp"
    symbols: tuple[str, ...] = ("BTCUSDT",)
    interval_s: float = 1.5
    max_feature_age_ms: int = 5000
    redis_url: str = "redis://localhost:6379/0"
    redis_cluster: bool = False
    redis_auth_secret_arn: str | None = None
    features_prefix: str = "features"
    prediction_key: str = DEFAULT_PREDICTION_KEY
    max_concurrent_predictions: int = 10
    feature_cache_size: int = 100
    model_batch_size: int = 8
    model_check_s: float = 30.0
    stop_margin_ms: int = 2500
    history_length: int = 100
    prediction_ttl_s: int = 30
    broadcast_budget_ms: int = 500
    binance_rest_url: str = "https://data-api.binance.vision"
    rest_timeout_s: float = 1.0
    websocket_endpoint: str | None = None
    connection_ttl_s: int = 7200
    history_uri: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InferenceSettings:
        """Parse the settings (Redis address as in :class:`AggregatorSettings`).

        Raises
        ------
        ConfigError
            A variable holds an invalid value; the message names it.
        """
        d = cls()
        symbols, key = p.symbols_and_prediction_key(env, d.symbols, d.prediction_key)
        interval = p.read(env, Env.PREDICTION_INTERVAL_SECONDS, d.interval_s, p.interval)
        default_budget = min(d.broadcast_budget_ms, max(1, round(interval * 1000 / 3)))
        budget = p.read(env, Env.BROADCAST_BUDGET_MS, default_budget, p.positive_int)
        if budget >= interval * 1000:
            raise ConfigError(
                f"{Env.BROADCAST_BUDGET_MS.value}={budget}: must be shorter than the "
                f"prediction interval ({interval * 1000:g} ms)"
            )
        url = p.redis_url(env)
        return cls(
            model_path=p.read(env, Env.MODEL_PATH, d.model_path, p.location),
            model_name=p.read(env, Env.MODEL_NAME, d.model_name, p.prefix),
            symbols=symbols,
            interval_s=interval,
            max_feature_age_ms=p.read(
                env, Env.MAX_FEATURE_AGE_MS, d.max_feature_age_ms, p.positive_int
            ),
            redis_url=url,
            redis_cluster=p.read(env, Env.REDIS_CLUSTER, d.redis_cluster, p.bool_),
            redis_auth_secret_arn=p.redis_auth_secret_arn(env, url),
            features_prefix=p.read(env, Env.REDIS_FEATURES_KEY_PREFIX, d.features_prefix, p.prefix),
            prediction_key=key,
            max_concurrent_predictions=p.read(
                env, Env.MAX_CONCURRENT_PREDICTIONS, d.max_concurrent_predictions, p.positive_int
            ),
            feature_cache_size=p.read(
                env, Env.FEATURE_CACHE_SIZE, d.feature_cache_size, p.positive_int
            ),
            model_batch_size=p.read(env, Env.MODEL_BATCH_SIZE, d.model_batch_size, p.positive_int),
            model_check_s=p.read(env, Env.MODEL_CHECK_SECONDS, d.model_check_s, p.positive_float),
            stop_margin_ms=p.read(env, Env.LOOP_STOP_MARGIN_MS, d.stop_margin_ms, p.positive_int),
            history_length=p.read(
                env, Env.PREDICTION_HISTORY_LENGTH, d.history_length, p.positive_int
            ),
            prediction_ttl_s=p.read(
                env, Env.PREDICTION_TTL_SECONDS, d.prediction_ttl_s, p.positive_int
            ),
            broadcast_budget_ms=budget,
            binance_rest_url=p.read(env, Env.BINANCE_REST_URL, d.binance_rest_url, p.url),
            rest_timeout_s=p.read(
                env, Env.REST_TIMEOUT_SECONDS, d.rest_timeout_s, p.positive_float
            ),
            websocket_endpoint=p.read(env, Env.WEBSOCKET_ENDPOINT, None, p.endpoint),
            connection_ttl_s=p.read(
                env, Env.CONNECTION_TTL_SECONDS, d.connection_ttl_s, p.positive_int
            ),
            history_uri=p.read(env, Env.PREDICTION_HISTORY_URI, None, p.location),
        )

    @property
    def redis_keys(self) -> RedisKeys:
        """The key schema under the configured prefixes."""
        return RedisKeys(features_prefix=self.features_prefix, prediction_key=self.prediction_key)

    def prediction_keys(self, symbol: str) -> PredictionKeys:
        """The Redis keys of ``symbol``'s predictions (``prediction:{S}:latest`` …, hash-tagged)."""
        return self.redis_keys.predictions(symbol)
