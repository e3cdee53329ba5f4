"""Settings of the aggregator function (``lambdas/aggregator``)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from btcpred.keys import RedisKeys
from btcpred.settings import parse as p
from btcpred.settings.parse import Env

__all__ = ["AggregatorSettings", "PoisonPolicy"]


class PoisonPolicy(enum.Enum):
    """What to do with a record that cannot be decoded."""

    SKIP = "skip"
    """Log it with its first bytes, count it, and move on (its sequence number is settled)."""
    REPORT = "report"
    """Report it as a batch item failure; the shard's later records wait for Lambda's retry."""


def _policy(text: str) -> PoisonPolicy:
    try:
        return PoisonPolicy(text.lower())
    except ValueError:
        raise ValueError("must be skip or report") from None


@dataclass(frozen=True, slots=True)
class AggregatorSettings:
    """Settings of the aggregator function.

    ``symbols`` are the symbols whose records are applied (others are counted and dropped);
    ``warmup_budget_s`` bounds the REST warm-ups of one invocation in total;
    ``redis_auth_secret_arn`` names the Secrets Manager secret with the Redis credentials
    (:mod:`btcpred.credentials`), read at cold start.
    """

    symbols: tuple[str, ...] = ("BTCUSDT",)
    redis_url: str = "redis://localhost:6379/0"
    redis_cluster: bool = False
    redis_auth_secret_arn: str | None = None
    features_prefix: str = "features"
    state_prefix: str = "aggregator"
    features_ttl_s: int = 300
    state_ttl_s: int = 86_400
    history_length: int = 10
    poison_policy: PoisonPolicy = PoisonPolicy.SKIP
    binance_rest_url: str = "https://data-api.binance.vision"
    warmup_from_rest: bool = True
    rest_timeout_s: float = 3.0
    warmup_budget_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AggregatorSettings:
        """Parse the settings; ``REDIS_URL`` wins over ``REDIS_HOST``/``REDIS_PORT``/``REDIS_TLS``.

        Raises
        ------
        ConfigError
            A variable holds an invalid value.
        """
        d = cls()
        url = p.redis_url(env)
        return cls(
            symbols=p.read(env, Env.SYMBOLS, d.symbols, p.symbols),
            redis_url=url,
            redis_cluster=p.read(env, Env.REDIS_CLUSTER, d.redis_cluster, p.bool_),
            redis_auth_secret_arn=p.redis_auth_secret_arn(env, url),
            features_prefix=p.read(env, Env.REDIS_FEATURES_KEY_PREFIX, d.features_prefix, p.prefix),
            state_prefix=p.read(env, Env.AGGREGATOR_STATE_PREFIX, d.state_prefix, p.prefix),
            features_ttl_s=p.read(env, Env.FEATURES_TTL_SECONDS, d.features_ttl_s, p.positive_int),
            state_ttl_s=p.read(env, Env.STATE_TTL_SECONDS, d.state_ttl_s, p.positive_int),
            history_length=p.read(
                env, Env.FEATURES_HISTORY_LENGTH, d.history_length, p.positive_int
            ),
            poison_policy=p.read(env, Env.POISON_RECORD_POLICY, d.poison_policy, _policy),
            binance_rest_url=p.read(env, Env.BINANCE_REST_URL, d.binance_rest_url, p.url),
            warmup_from_rest=p.read(env, Env.WARMUP_FROM_REST, d.warmup_from_rest, p.bool_),
            rest_timeout_s=p.read(
                env, Env.REST_TIMEOUT_SECONDS, d.rest_timeout_s, p.positive_float
            ),
            warmup_budget_s=p.read(
                env, Env.WARMUP_BUDGET_SECONDS, d.warmup_budget_s, p.positive_float
            ),
        )

    @property
    def redis_keys(self) -> RedisKeys:
        """The key schema under the configured prefixes."""
        return RedisKeys(features_prefix=self.features_prefix, state_prefix=self.state_prefix)
