"""Plumbing of the inference side's Redis adapters: the client, built when first needed, and
redis-py's exceptions mapped onto :mod:`btcpred.inference.errors`.

A :class:`~redis.cluster.RedisCluster` reads the slot map in its constructor, so it raises
when no node answers. The inference function must start anyway (direct REST mode) and reach
Redis later, so its stores and lease hold a :class:`RedisConnection`, which builds the client
on first use and again after a failed build.

Which failures are retryable (:class:`RedisUnavailableError`): connection errors and timeouts
(including ``LOADING``), ``CLUSTERDOWN``, ``TRYAGAIN``, ``READONLY`` (a failover in progress)
and the cluster client's own "no reachable node"/"slot not covered" errors. Permanent
(:class:`RedisRejectedError`): refused credentials and every other error reply (``WRONGTYPE``,
``CROSSSLOT``, ``OOM``, …), which a retry of the same request will not fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import redis
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterError,
    CrossSlotTransactionError,
    ExternalAuthProviderError,
    InvalidPipelineStack,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)

from btcpred.inference.errors import StoreRejectedError, StoreUnavailableError
from btcpred.redisconn import RedisClient

__all__ = [
    "RedisConnection",
    "RedisRejectedError",
    "RedisUnavailableError",
    "redis_errors",
    "translate",
]


class RedisUnavailableError(StoreUnavailableError, redis.RedisError):
    """:class:`StoreUnavailableError` from Redis.

    Also a ``redis.RedisError``, so code that still catches the driver's base class (the
    client functions, until they catch the port's errors) keeps working unchanged.
    """


class RedisRejectedError(StoreRejectedError, redis.RedisError):
    """:class:`StoreRejectedError` from Redis (also a ``redis.RedisError``, as above)."""


_PERMANENT = (
    AuthenticationError,
    AuthorizationError,
    ExternalAuthProviderError,
    CrossSlotTransactionError,
    InvalidPipelineStack,
)
_RETRYABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    ClusterError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
    OSError,
)


def translate(exc: BaseException, what: str) -> RedisUnavailableError | RedisRejectedError | None:
    """The typed error for a redis-py exception raised while doing ``what`` (None: not Redis)."""
    if isinstance(exc, RedisUnavailableError | RedisRejectedError):
        return exc
    text = f"{what}: {type(exc).__name__}: {exc}"
    if isinstance(exc, _PERMANENT):
        return RedisRejectedError(text)
    if isinstance(exc, _RETRYABLE):
        return RedisUnavailableError(text)
    if isinstance(exc, redis.RedisError):
        return RedisRejectedError(text)
    return None


@contextlib.contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Re-raise redis-py's exceptions inside the block as the typed errors above."""
    try:
        yield
    except (redis.RedisError, RedisClusterException, OSError) as exc:
        typed = translate(exc, what)
        if typed is None or typed is exc:
            raise
        raise typed from exc


class RedisConnection:
    """A Redis client built on first use, and built again after a build failed.

    Parameters
    ----------
    build
        Makes the client, e.g. ``lambda: btcpred.redisconn.connect(url, cluster=True)``.
    """

    def __init__(self, build: Callable[[], RedisClient]) -> None:
        self._build = build
        self._client: RedisClient | None = None

    @classmethod
    def of(cls, client: RedisClient) -> RedisConnection:
        """A connection around a client that already exists."""
        conn = cls(lambda: client)
        conn._client = client
        return conn

    @property
    def built(self) -> bool:
        """Whether the client exists (a cluster client: whether the slot map was read)."""
        return self._client is not None

    def get(self) -> RedisClient:
        """The client.

        Raises
        ------
        RedisUnavailableError
            The client could not be built (no cluster node answered).
        """
        if self._client is None:
            with redis_errors("redis connect"):
                self._client = self._build()
        return self._client
