"""Redis clients for a single node or a Redis Cluster, from one URL and one flag.

ElastiCache Serverless and cluster-mode replication groups are Redis Clusters: a plain
``redis.Redis`` does not follow ``MOVED``/``ASK`` redirects there, so every process builds its
client here and gets a :class:`redis.cluster.RedisCluster` when ``REDIS_CLUSTER`` says so. The
code above works with either because every transaction, script and ``MGET`` it issues touches
keys of one hash slot (see :mod:`btcpred.keys`); cross-slot pipelines are non-transactional,
which ``RedisCluster`` splits per node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

__all__ = ["RedisClient", "connect", "is_cluster"]

RedisClient: TypeAlias = "redis.Redis | RedisCluster"
"""What the stores accept: a single-node client or a cluster client."""


def connect(url: str, *, cluster: bool = False, timeout_s: float = 1.0) -> RedisClient:
    """A client for ``url`` with short timeouts and no hidden retry loops.

    Parameters
    ----------
    url
        ``redis://`` or ``rediss://`` (TLS); for a cluster, the address of any node.
    cluster
        Build a :class:`~redis.cluster.RedisCluster`. It reads the slot map when first used,
        not here, so a process can start while Redis is down: the first call that needs the
        cluster raises ``redis.RedisError`` instead, and the next call tries again.
    timeout_s
        Connect and socket timeout: an outage costs a caller at most about this long per call.
    """
    common = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "decode_responses": False,
    }
    if cluster:
        return cast(
            RedisCluster,
            _LazyCluster(lambda: RedisCluster.from_url(url, retry=Retry(NoBackoff(), 1), **common)),
        )
    return redis.Redis.from_url(url, **common)


def is_cluster(client: object) -> bool:
    """Whether ``client`` came from ``connect(..., cluster=True)`` (or is a RedisCluster)."""
    return isinstance(client, RedisCluster | _LazyCluster)


class _LazyCluster:
    """A :class:`RedisCluster` built on first use (its constructor connects to the cluster)."""

    def __init__(self, build: Callable[[], RedisCluster]) -> None:
        self._build = build
        self._client: RedisCluster | None = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            try:
                self._client = self._build()
            except RedisClusterException as exc:  # not a RedisError: callers catch only those
                raise redis.ConnectionError(f"no Redis Cluster node answered: {exc}") from exc
        return getattr(self._client, name)
