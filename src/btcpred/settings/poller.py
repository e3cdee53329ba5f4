"""Settings of the fallback poller function (``lambdas/poller``) and ``btcpred poll``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from btcpred.keys import RedisKeys
from btcpred.settings import parse as p
from btcpred.settings.parse import ConfigError, Env

if TYPE_CHECKING:  # imported when used: the settings package stays free of the poller's core
    from btcpred.poller.config import PollerConfig

__all__ = ["REDIS_TIMEOUT_S", "PollerSettings"]

REDIS_TIMEOUT_S: Final = 0.5
"""The poller's Redis connect and socket timeout: one write and read per poll, on a LAN."""


def _poll_interval(text: str) -> float:
    value = float(text)
    if not 1 <= value <= 30:
        raise ValueError("must be a number of seconds in [1, 30]")
    return value


def _rest_timeout(text: str) -> float:
    value = float(text)
    if not 0 < value <= 10:
        raise ValueError("must be a number of seconds in (0, 10]")
    return value


def _margin_ms(text: str) -> int:
    value = int(text)
    if not 0 < value < 60_000:
        raise ValueError("must be a number of milliseconds in (0, 60000)")
    return value


@dataclass(frozen=True, slots=True)
class PollerSettings:
    """Settings of the fallback poller.

    ``interval_s`` is the time between polls of every symbol, ``fallback_ttl_s`` the TTL of
    ``features:{S}:fallback`` (longer than the interval, so the key lives from one poll to the
    next), ``stop_margin_ms`` how long before the invocation's end no poll starts any more
    (longer than a poll can take: two requests at ``rest_timeout_s`` plus one Redis round
    trip at :data:`REDIS_TIMEOUT_S`).
    """

    symbols: tuple[str, ...] = ("BTCUSDT",)
    binance_rest_url: str = "https://data-api.binance.vision"
    rest_timeout_s: float = 1.0
    redis_url: str = "redis://localhost:6379/0"
    redis_cluster: bool = False
    redis_auth_secret_arn: str | None = None
    features_prefix: str = "features"
    interval_s: float = 2.0
    fallback_ttl_s: int = 30
    stop_margin_ms: int = 3_000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PollerSettings:
        """Parse the settings; ``REDIS_URL`` wins over ``REDIS_HOST``/``REDIS_PORT``/``REDIS_TLS``.

        Raises
        ------
        ConfigError
            A variable holds an invalid value, or the values do not fit together (the message
            names the variables).
        """
        d = cls()
        url = p.redis_url(env)
        settings = cls(
            symbols=p.read(env, Env.SYMBOLS, d.symbols, p.symbols),
            binance_rest_url=p.read(env, Env.BINANCE_REST_URL, d.binance_rest_url, p.url),
            rest_timeout_s=p.read(env, Env.REST_TIMEOUT_SECONDS, d.rest_timeout_s, _rest_timeout),
            redis_url=url,
            redis_cluster=p.read(env, Env.REDIS_CLUSTER, d.redis_cluster, p.bool_),
            redis_auth_secret_arn=p.redis_auth_secret_arn(env, url),
            features_prefix=p.read(env, Env.REDIS_FEATURES_KEY_PREFIX, d.features_prefix, p.prefix),
            interval_s=p.read(env, Env.POLLER_INTERVAL_SECONDS, d.interval_s, _poll_interval),
            fallback_ttl_s=p.read(env, Env.FALLBACK_TTL_SECONDS, d.fallback_ttl_s, p.positive_int),
            stop_margin_ms=p.read(env, Env.POLLER_STOP_MARGIN_MS, d.stop_margin_ms, _margin_ms),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Check that the values fit together.

        Raises
        ------
        ConfigError
            The TTL does not outlive the interval, or a poll may outlast the stop margin.
        """
        if self.fallback_ttl_s <= self.interval_s:
            raise ConfigError(
                f"{Env.FALLBACK_TTL_SECONDS.value}={self.fallback_ttl_s} must be longer than "
                f"{Env.POLLER_INTERVAL_SECONDS.value}={self.interval_s:g}: the key would expire "
                "between two polls"
            )
        if self.poll_budget_ms >= self.stop_margin_ms:
            raise ConfigError(
                f"{Env.POLLER_STOP_MARGIN_MS.value}={self.stop_margin_ms} must be longer than a "
                f"poll can take ({self.poll_budget_ms} ms: two requests at "
                f"{Env.REST_TIMEOUT_SECONDS.value}={self.rest_timeout_s:g} and one Redis round "
                f"trip at {REDIS_TIMEOUT_S:g} s)"
            )

    @property
    def poll_budget_ms(self) -> int:
        """The longest one poll takes: two requests of one attempt each, one Redis pipeline."""
        return round((2 * self.rest_timeout_s + REDIS_TIMEOUT_S) * 1000)

    @property
    def redis_keys(self) -> RedisKeys:
        """The key schema under the configured prefix."""
        return RedisKeys(features_prefix=self.features_prefix)

    def poller_config(self) -> PollerConfig:
        """What the loop is told (:class:`btcpred.poller.config.PollerConfig`)."""
        from btcpred.poller.config import PollerConfig

        return PollerConfig(
            symbols=self.symbols, interval_s=self.interval_s, stop_margin_ms=self.stop_margin_ms
        )
