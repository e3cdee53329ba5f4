"""The one parser under every entry point's settings: variable names and value rules.

Every environment variable name any btcpred process reads lives in :class:`Env`. The edge (a
Lambda handler, the CLI) passes ``os.environ``; the core never reads the environment itself.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from typing import Final, TypeVar
from urllib.parse import urlsplit

__all__ = ["ConfigError", "Env", "read", "redis_auth_secret_arn", "redis_url"]

_T = TypeVar("_T")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


class Env(enum.StrEnum):
    """Environment variable names."""

    REDIS_URL = "REDIS_URL"
    REDIS_HOST = "REDIS_HOST"
    REDIS_PORT = "REDIS_PORT"
    REDIS_TLS = "REDIS_TLS"
    REDIS_CLUSTER = "REDIS_CLUSTER"
    REDIS_AUTH_SECRET_ARN = "REDIS_AUTH_SECRET_ARN"  # noqa: S105 - a variable name, not a secret
    REDIS_FEATURES_KEY_PREFIX = "REDIS_FEATURES_KEY_PREFIX"
    AGGREGATOR_STATE_PREFIX = "AGGREGATOR_STATE_PREFIX"
    FEATURES_TTL_SECONDS = "FEATURES_TTL_SECONDS"
    STATE_TTL_SECONDS = "STATE_TTL_SECONDS"
    FEATURES_HISTORY_LENGTH = "FEATURES_HISTORY_LENGTH"
    POISON_RECORD_POLICY = "POISON_RECORD_POLICY"
    BINANCE_REST_URL = "BINANCE_REST_URL"
    WARMUP_FROM_REST = "WARMUP_FROM_REST"
    REST_TIMEOUT_SECONDS = "REST_TIMEOUT_SECONDS"
    WARMUP_BUDGET_SECONDS = "WARMUP_BUDGET_SECONDS"
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
    # the ingestor (`btcpred ingest`, the Fargate container)
    KINESIS_STREAM_NAME = "KINESIS_STREAM_NAME"
    BINANCE_STREAM_URL = "BINANCE_STREAM_URL"
    BINANCE_STREAM_FORMAT = "BINANCE_STREAM_FORMAT"
    BINANCE_API_KEY = "BINANCE_API_KEY"
    BINANCE_API_KEY_SECRET_ARN = "BINANCE_API_KEY_SECRET_ARN"  # noqa: S105 - a variable name
    INGEST_FLUSH_WINDOW_MS = "INGEST_FLUSH_WINDOW_MS"
    INGEST_BUFFER_BYTES = "INGEST_BUFFER_BYTES"
    INGEST_FLUSH_DEADLINE_S = "INGEST_FLUSH_DEADLINE_S"
    INGEST_HEARTBEAT_PATH = "INGEST_HEARTBEAT_PATH"
    INGEST_CONNECTION_LIFETIME_S = "INGEST_CONNECTION_LIFETIME_S"
    INGEST_DEAD_AFTER_S = "INGEST_DEAD_AFTER_S"
    INGEST_DATA_TIMEOUT_S = "INGEST_DATA_TIMEOUT_S"
    INGEST_METRICS_INTERVAL_S = "INGEST_METRICS_INTERVAL_S"
    # the history loader (and `btcpred load`, `btcpred train --database`)
    DATABASE_URL = "DATABASE_URL"
    DATABASE_SECRET_ARN = "DATABASE_SECRET_ARN"  # noqa: S105 - a variable name, not a secret
    DATABASE_SSLMODE = "DATABASE_SSLMODE"
    DATABASE_NAME = "DATABASE_NAME"
    # the fallback poller (`lambdas/poller`, `btcpred poll`)
    POLLER_INTERVAL_SECONDS = "POLLER_INTERVAL_SECONDS"
    FALLBACK_TTL_SECONDS = "FALLBACK_TTL_SECONDS"
    POLLER_STOP_MARGIN_MS = "POLLER_STOP_MARGIN_MS"


_PREFIX: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_HOST: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?")
_SECRET_ARN: Final = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z]{2}(?:-[a-z]+)+-\d+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+"
)
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def read(env: Mapping[str, str], name: Env, default: _T, parse: Callable[[str], _T]) -> _T:
    raw = env.get(name.value)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError as exc:
        raise ConfigError(f"{name.value}={raw!r}: {exc}") from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < 3600:
        raise ValueError("must be a number of seconds in (0, 3600)")
    return value


def bool_(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError("must be true or false")


def prefix(text: str) -> str:
    if not _PREFIX.fullmatch(text):
        raise ValueError("must be 1-64 characters of letters, digits, '_', '.', '-'")
    return text


def host(text: str) -> str:
    if not _HOST.fullmatch(text):
        raise ValueError("must be a host name or IPv4 address (letters, digits, '.', '-')")
    return text


def interval(text: str) -> float:
    value = float(text)
    if not 0.05 <= value <= 30:
        raise ValueError("must be a number of seconds in [0.05, 30]")
    return value


def prediction_key(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:{}\-]{1,128}", text) or text.count("{") != text.count("}"):
        raise ValueError("must be a Redis key of letters, digits, '_.:-' and '{symbol}'")
    if "{" in text.replace("{symbol}", "") or "}" in text.replace("{symbol}", ""):
        raise ValueError("the only placeholder allowed is {symbol}")
    return text


def symbols(text: str) -> tuple[str, ...]:
    symbols = tuple(s.strip().upper() for s in text.split(",") if s.strip())
    if not symbols or any(not re.fullmatch(r"[A-Z0-9]{2,20}", s) for s in symbols):
        raise ValueError("must be a comma-separated list of symbols such as BTCUSDT")
    if len(set(symbols)) != len(symbols):
        raise ValueError("lists a symbol twice")
    return symbols


def location(text: str) -> str:
    if "://" in text and not text.startswith(("s3://", "file://")):
        raise ValueError("must be s3://bucket/prefix or a local directory")
    if text.startswith("s3://") and not text[5:].split("/", 1)[0]:
        raise ValueError("names no bucket")
    return text


def endpoint(text: str) -> str:
    if not re.fullmatch(r"https?://\S+", text):
        raise ValueError("must be an http(s):// URL")
    return text.rstrip("/")


def text(value: str) -> str:
    return value


def redis_url(env: Mapping[str, str]) -> str:
    """``REDIS_URL``, else one built from ``REDIS_HOST``/``REDIS_PORT``/``REDIS_TLS``."""
    given = read(env, Env.REDIS_URL, "", url)
    if given:
        return given
    name = read(env, Env.REDIS_HOST, "localhost", host)
    port = read(env, Env.REDIS_PORT, 6379, positive_int)
    scheme = "rediss" if read(env, Env.REDIS_TLS, False, bool_) else "redis"
    return f"{scheme}://{name}:{port}/0"


def secret_arn(text: str) -> str:
    if not _SECRET_ARN.fullmatch(text):
        raise ValueError(
            "must be a Secrets Manager secret ARN: "
            "arn:aws:secretsmanager:<region>:<12-digit account>:secret:<name>"
        )
    return text


def redis_auth_secret_arn(env: Mapping[str, str], redis_url: str) -> str | None:
    """``REDIS_AUTH_SECRET_ARN``: the secret holding the Redis credentials, if any.

    Raises
    ------
    ConfigError
        Not a secret ARN, or set while ``redis_url`` holds credentials too (one source only).
    """
    arn = read(env, Env.REDIS_AUTH_SECRET_ARN, None, secret_arn)
    if arn is not None and urlsplit(redis_url).netloc.rpartition("@")[1]:
        raise ConfigError(
            f"{Env.REDIS_AUTH_SECRET_ARN.value} is set and {Env.REDIS_URL.value} holds "
            "credentials too: give them in one place only"
        )
    return arn


def ws_url(text: str) -> str:
    if not re.fullmatch(r"wss?://[^\s/?#]+", text.rstrip("/")):
        raise ValueError(
            "must be a ws:// or wss:// base URL without a path, e.g. wss://stream-sbe.binance.com:9443"
        )
    return text.rstrip("/")


def url(text: str) -> str:
    if not re.fullmatch(r"(https?|rediss?)://\S+", text):
        raise ValueError("must be an http(s):// or redis(s):// URL")
    return text.rstrip("/")


def symbols_and_prediction_key(
    env: Mapping[str, str], default_symbols: tuple[str, ...], default_key: str
) -> tuple[tuple[str, ...], str]:
    """``SYMBOLS`` and ``REDIS_PREDICTION_KEY``, checked together.

    Raises
    ------
    ConfigError
        Either is invalid, or several symbols share a key without ``{symbol}``.
    """
    found = read(env, Env.SYMBOLS, default_symbols, symbols)
    key = read(env, Env.REDIS_PREDICTION_KEY, default_key, prediction_key)
    if "{symbol}" not in key and len(found) > 1:
        raise ConfigError(
            f"{Env.REDIS_PREDICTION_KEY.value}={key!r}: several SYMBOLS need a {{symbol}} key"
        )
    return found, key
