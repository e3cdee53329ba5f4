"""Typed settings, parsed once per process from an environment mapping.

Every environment variable name the functions read lives here. The edge (a Lambda handler, the
CLI) passes ``os.environ``; the core never reads the environment itself. An explicit value beats
the environment, which beats the default. A bad value raises :class:`ConfigError` naming the
variable, at start, not on the first event.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from btcpred.aggregator.core import PoisonPolicy

__all__ = ["AggregatorSettings", "ConfigError", "Env", "InferenceSettings", "PredictionKeys"]

_T = TypeVar("_T")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


class Env(enum.StrEnum):
    """Environment variable names."""

    REDIS_URL = "REDIS_URL"
    REDIS_HOST = "REDIS_HOST"
    REDIS_PORT = "REDIS_PORT"
    REDIS_TLS = "REDIS_TLS"
    REDIS_FEATURES_KEY_PREFIX = "REDIS_FEATURES_KEY_PREFIX"
    AGGREGATOR_STATE_PREFIX = "AGGREGATOR_STATE_PREFIX"
    FEATURES_TTL_SECONDS = "FEATURES_TTL_SECONDS"
    STATE_TTL_SECONDS = "STATE_TTL_SECONDS"
    FEATURES_HISTORY_LENGTH = "FEATURES_HISTORY_LENGTH"
    POISON_RECORD_POLICY = "POISON_RECORD_POLICY"
    BINANCE_REST_URL = "BINANCE_REST_URL"
    WARMUP_FROM_REST = "WARMUP_FROM_REST"
    REST_TIMEOUT_SECONDS = "REST_TIMEOUT_SECONDS"
    # inference, WebSocket and HTTP functions (the seed's names first)
    MODEL_PATH = "MODEL_PATH"
    PREDICTION_INTERVAL_SECONDS = "PREDICTION_INTERVAL_SECONDS"
    MAX_FEATURE_AGE_MS = "MAX_FEATURE_AGE_MS"
    REDIS_PREDICTION_KEY = "REDIS_PREDICTION_KEY"
    MAX_CONCURRENT_PREDICTIONS = "MAX_CONCURRENT_PREDICTIONS"
    FEATURE_CACHE_SIZE = "FEATURE_CACHE_SIZE"
    MODEL_BATCH_SIZE = "MODEL_BATCH_SIZE"
    MODEL_NAME = "MODEL_NAME"
    SYMBOLS = "SYMBOLS"
    MODEL_CHECK_SECONDS = "MODEL_CHECK_SECONDS"
    LOOP_STOP_MARGIN_MS = "LOOP_STOP_MARGIN_MS"
    PREDICTION_HISTORY_LENGTH = "PREDICTION_HISTORY_LENGTH"
    PREDICTION_TTL_SECONDS = "PREDICTION_TTL_SECONDS"
    BROADCAST_BUDGET_MS = "BROADCAST_BUDGET_MS"
    WEBSOCKET_ENDPOINT = "WEBSOCKET_ENDPOINT"
    WEBSOCKET_TOKEN = "WEBSOCKET_TOKEN"  # noqa: S105 - a variable name, not a secret
    WEBSOCKET_TOKEN_SECRET_ARN = "WEBSOCKET_TOKEN_SECRET_ARN"  # noqa: S105 - a name
    CONNECTION_TTL_SECONDS = "CONNECTION_TTL_SECONDS"
    MAX_MESSAGE_BYTES = "MAX_MESSAGE_BYTES"
    PREDICTION_HISTORY_URI = "PREDICTION_HISTORY_URI"


_PREFIX: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_HOST: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _read(env: Mapping[str, str], name: Env, default: _T, parse: Callable[[str], _T]) -> _T:
    raw = env.get(name.value)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError as exc:
        raise ConfigError(f"{name.value}={raw!r}: {exc}") from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < 3600:
        raise ValueError("must be a number of seconds in (0, 3600)")
    return value


def _bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError("must be true or false")


def _prefix(text: str) -> str:
    if not _PREFIX.fullmatch(text):
        raise ValueError("must be 1-64 characters of letters, digits, '_', '.', '-'")
    return text


def _host(text: str) -> str:
    if not _HOST.fullmatch(text):
        raise ValueError("must be a host name or IPv4 address (letters, digits, '.', '-')")
    return text


def _interval(text: str) -> float:
    value = float(text)
    if not 0.05 <= value <= 30:
        raise ValueError("must be a number of seconds in [0.05, 30]")
    return value


def _prediction_key(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:{}\-]{1,128}", text) or text.count("{") != text.count("}"):
        raise ValueError("must be a Redis key of letters, digits, '_.:-' and '{symbol}'")
    if "{" in text.replace("{symbol}", "") or "}" in text.replace("{symbol}", ""):
        raise ValueError("the only placeholder allowed is {symbol}")
    return text


def _symbols(text: str) -> tuple[str, ...]:
    symbols = tuple(s.strip().upper() for s in text.split(",") if s.strip())
    if not symbols or any(not re.fullmatch(r"[A-Z0-9]{2,20}", s) for s in symbols):
        raise ValueError("must be a comma-separated list of symbols such as BTCUSDT")
    if len(set(symbols)) != len(symbols):
        raise ValueError("lists a symbol twice")
    return symbols


def _location(text: str) -> str:
    if "://" in text and not text.startswith(("s3://", "file://")):
        raise ValueError("must be s3://bucket/prefix or a local directory")
    if text.startswith("s3://") and not text[5:].split("/", 1)[0]:
        raise ValueError("names no bucket")
    return text


def _endpoint(text: str) -> str:
    if not re.fullmatch(r"https?://\S+", text):
        raise ValueError("must be an http(s):// URL")
    return text.rstrip("/")


def _text(text: str) -> str:
    return text


def _policy(text: str) -> PoisonPolicy:
    try:
        return PoisonPolicy(text.lower())
    except ValueError:
        raise ValueError("must be skip or report") from None


def _redis_url(env: Mapping[str, str]) -> str:
    url = _read(env, Env.REDIS_URL, "", _url)
    if not url:
        host = _read(env, Env.REDIS_HOST, "localhost", _host)
        port = _read(env, Env.REDIS_PORT, 6379, _positive_int)
        scheme = "rediss" if _read(env, Env.REDIS_TLS, False, _bool) else "redis"
        url = f"{scheme}://{host}:{port}/0"
    return url


def _url(text: str) -> str:
    if not re.fullmatch(r"(https?|rediss?)://\S+", text):
        raise ValueError("must be an http(s):// or redis(s):// URL")
    return text.rstrip("/")


@dataclass(frozen=True, slots=True)
class AggregatorSettings:
    """Settings of the aggregator function."""

    redis_url: str = "redis://localhost:6379/0"
    features_prefix: str = "features"
    state_prefix: str = "aggregator"
    features_ttl_s: int = 300
    state_ttl_s: int = 86_400
    history_length: int = 10
    poison_policy: PoisonPolicy = PoisonPolicy.SKIP
    binance_rest_url: str = "https://data-api.binance.vision"
    warmup_from_rest: bool = True
    rest_timeout_s: float = 3.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AggregatorSettings:
        """Parse the settings; ``REDIS_URL`` wins over ``REDIS_HOST``/``REDIS_PORT``/``REDIS_TLS``.

        Raises
        ------
        ConfigError
            A variable holds an invalid value.
        """
        d = cls()
        return cls(
            redis_url=_redis_url(env),
            features_prefix=_read(env, Env.REDIS_FEATURES_KEY_PREFIX, d.features_prefix, _prefix),
            state_prefix=_read(env, Env.AGGREGATOR_STATE_PREFIX, d.state_prefix, _prefix),
            features_ttl_s=_read(env, Env.FEATURES_TTL_SECONDS, d.features_ttl_s, _positive_int),
            state_ttl_s=_read(env, Env.STATE_TTL_SECONDS, d.state_ttl_s, _positive_int),
            history_length=_read(env, Env.FEATURES_HISTORY_LENGTH, d.history_length, _positive_int),
            poison_policy=_read(env, Env.POISON_RECORD_POLICY, d.poison_policy, _policy),
            binance_rest_url=_read(env, Env.BINANCE_REST_URL, d.binance_rest_url, _url),
            warmup_from_rest=_read(env, Env.WARMUP_FROM_REST, d.warmup_from_rest, _bool),
            rest_timeout_s=_read(env, Env.REST_TIMEOUT_SECONDS, d.rest_timeout_s, _positive_float),
        )


@dataclass(frozen=True, slots=True)
class InferenceSettings:
    """Settings of the inference loop and the client-facing functions (WebSocket, HTTP).

    ``prediction_key`` may hold ``{symbol}``; the history, pending and scored keys derive from it
    (``prediction:{S}:latest`` → ``prediction:{S}:history`` …). ``max_concurrent_predictions``
    bounds the parallel WebSocket deliveries of one tick; ``feature_cache_size`` the recent
    prices and last-known feature values kept per symbol; ``model_batch_size`` the symbols
    predicted in one ONNX run.
    """

    model_path: str = "models"
    model_name: str = "btcpred-mlp"
    symbols: tuple[str, ...] = ("BTCUSDT",)
    interval_s: float = 1.5
    max_feature_age_ms: int = 5000
    redis_url: str = "redis://localhost:6379/0"
    features_prefix: str = "features"
    prediction_key: str = "prediction:{symbol}:latest"
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
    websocket_token: str | None = None
    websocket_token_secret_arn: str | None = None
    connection_ttl_s: int = 7200
    max_message_bytes: int = 1024
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
        symbols = _read(env, Env.SYMBOLS, d.symbols, _symbols)
        key = _read(env, Env.REDIS_PREDICTION_KEY, d.prediction_key, _prediction_key)
        if "{symbol}" not in key and len(symbols) > 1:
            raise ConfigError(
                f"{Env.REDIS_PREDICTION_KEY.value}={key!r}: several SYMBOLS need a {{symbol}} key"
            )
        interval = _read(env, Env.PREDICTION_INTERVAL_SECONDS, d.interval_s, _interval)
        default_budget = min(d.broadcast_budget_ms, max(1, round(interval * 1000 / 3)))
        budget = _read(env, Env.BROADCAST_BUDGET_MS, default_budget, _positive_int)
        if budget >= interval * 1000:
            raise ConfigError(
                f"{Env.BROADCAST_BUDGET_MS.value}={budget}: must be shorter than the "
                f"prediction interval ({interval * 1000:g} ms)"
            )
        return cls(
            model_path=_read(env, Env.MODEL_PATH, d.model_path, _location),
            model_name=_read(env, Env.MODEL_NAME, d.model_name, _prefix),
            symbols=symbols,
            interval_s=interval,
            max_feature_age_ms=_read(
                env, Env.MAX_FEATURE_AGE_MS, d.max_feature_age_ms, _positive_int
            ),
            redis_url=_redis_url(env),
            features_prefix=_read(env, Env.REDIS_FEATURES_KEY_PREFIX, d.features_prefix, _prefix),
            prediction_key=key,
            max_concurrent_predictions=_read(
                env, Env.MAX_CONCURRENT_PREDICTIONS, d.max_concurrent_predictions, _positive_int
            ),
            feature_cache_size=_read(
                env, Env.FEATURE_CACHE_SIZE, d.feature_cache_size, _positive_int
            ),
            model_batch_size=_read(env, Env.MODEL_BATCH_SIZE, d.model_batch_size, _positive_int),
            model_check_s=_read(env, Env.MODEL_CHECK_SECONDS, d.model_check_s, _positive_float),
            stop_margin_ms=_read(env, Env.LOOP_STOP_MARGIN_MS, d.stop_margin_ms, _positive_int),
            history_length=_read(
                env, Env.PREDICTION_HISTORY_LENGTH, d.history_length, _positive_int
            ),
            prediction_ttl_s=_read(
                env, Env.PREDICTION_TTL_SECONDS, d.prediction_ttl_s, _positive_int
            ),
            broadcast_budget_ms=budget,
            binance_rest_url=_read(env, Env.BINANCE_REST_URL, d.binance_rest_url, _url),
            rest_timeout_s=_read(env, Env.REST_TIMEOUT_SECONDS, d.rest_timeout_s, _positive_float),
            websocket_endpoint=_read(env, Env.WEBSOCKET_ENDPOINT, None, _endpoint),
            websocket_token=_read(env, Env.WEBSOCKET_TOKEN, None, _text),
            websocket_token_secret_arn=_read(env, Env.WEBSOCKET_TOKEN_SECRET_ARN, None, _text),
            connection_ttl_s=_read(
                env, Env.CONNECTION_TTL_SECONDS, d.connection_ttl_s, _positive_int
            ),
            max_message_bytes=_read(env, Env.MAX_MESSAGE_BYTES, d.max_message_bytes, _positive_int),
            history_uri=_read(env, Env.PREDICTION_HISTORY_URI, None, _location),
        )

    def prediction_keys(self, symbol: str) -> PredictionKeys:
        """The Redis keys of ``symbol``'s predictions."""
        latest = self.prediction_key.replace("{symbol}", symbol)
        base = latest.removesuffix(":latest")
        return PredictionKeys(
            latest=latest,
            history=f"{base}:history",
            pending=f"{base}:pending",
            scored=f"{base}:scored",
        )


@dataclass(frozen=True, slots=True)
class PredictionKeys:
    """Redis keys of one symbol's predictions."""

    latest: str
    history: str
    pending: str
    scored: str
