"""Redis clients for a single node or a Redis Cluster, from one URL and one flag.

ElastiCache Serverless and cluster-mode replication groups are Redis Clusters: a plain
``redis.Redis`` does not follow ``MOVED``/``ASK`` redirects there, so every process builds its
client here and gets a :class:`redis.cluster.RedisCluster` when ``REDIS_CLUSTER`` says so. The
code above works with either because every transaction, script and ``MGET`` it issues touches
keys of one hash slot (see :mod:`btcpred.keys`); cross-slot pipelines are non-transactional,
which ``RedisCluster`` splits per node.
"""

from __future__ import annotations

from typing import TypeAlias

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

__all__ = ["RedisClient", "connect"]

RedisClient: TypeAlias = "redis.Redis | RedisCluster"
"""What the stores accept: a single-node client or a cluster client."""


def connect(url: str, *, cluster: bool = False, timeout_s: float = 1.0) -> RedisClient:
    """A client for ``url`` with short timeouts and no hidden retry loops.

    Parameters
    ----------
    url
        ``redis://`` or ``rediss://`` (TLS); for a cluster, the address of any node.
    cluster
        Build a :class:`~redis.cluster.RedisCluster` (it reads the slot map from the node at
        once, so it raises ``redis.RedisError`` when no node answers).
    timeout_s
        Connect and socket timeout: an outage costs a caller at most about this long per call.

    Raises
    ------
    redis.RedisError
        ``cluster`` is set and no node of the cluster answered.
    """
    common = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "decode_responses": False,
    }
    if cluster:
        return RedisCluster.from_url(
            url,
            retry=Retry(NoBackoff(), 1),
            **common,
        )
    return redis.Redis.from_url(url, **common)
