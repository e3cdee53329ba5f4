"""redis-py's exceptions mapped onto :mod:`btcpred.inference.errors`, by type.

The inference side's Redis adapters (store, lease, connection registry) wrap every call in
:func:`redis_errors`, so the loop and the client functions catch the port's errors, never the
driver's.

Which failures are retryable (:class:`RedisUnavailableError`): connection errors and timeouts
(including ``LOADING``), ``CLUSTERDOWN``, ``TRYAGAIN``, ``READONLY`` (a failover in progress)
and the cluster client's own "no reachable node"/"slot not covered" errors. Permanent
(:class:`RedisRejectedError`): refused credentials and every other error reply (``WRONGTYPE``,
``CROSSSLOT``, ``OOM``, …), which a retry of the same request will not fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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

__all__ = [
    "RedisRejectedError",
    "RedisUnavailableError",
    "redis_errors",
    "translate",
]


class RedisUnavailableError(StoreUnavailableError):
    """:class:`StoreUnavailableError` from Redis."""


class RedisRejectedError(StoreRejectedError):
    """:class:`StoreRejectedError` from Redis."""


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
        if typed is None:
            raise
        raise typed from exc
