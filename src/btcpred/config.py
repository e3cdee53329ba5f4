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

__all__ = ["AggregatorSettings", "ConfigError", "Env"]

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


def _policy(text: str) -> PoisonPolicy:
    try:
        return PoisonPolicy(text.lower())
    except ValueError:
        raise ValueError("must be skip or report") from None


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
        url = _read(env, Env.REDIS_URL, "", _url)
        if not url:
            host = _read(env, Env.REDIS_HOST, "localhost", _host)
            port = _read(env, Env.REDIS_PORT, 6379, _positive_int)
            scheme = "rediss" if _read(env, Env.REDIS_TLS, False, _bool) else "redis"
            url = f"{scheme}://{host}:{port}/0"
        return cls(
            redis_url=url,
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
