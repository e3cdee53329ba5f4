"""Redis clients for a single node or a Redis Cluster, from one URL and one flag.

ElastiCache Serverless and cluster-mode replication groups are Redis Clusters: a plain
``redis.Redis`` does not follow ``MOVED``/``ASK`` redirects there, so every process builds its
client here and gets a :class:`redis.cluster.RedisCluster` when ``REDIS_CLUSTER`` says so. The
code above works with either because every transaction, script and ``MGET`` it issues touches
keys of one hash slot (see :mod:`btcpred.keys`); cross-slot pipelines are non-transactional,
which ``RedisCluster`` splits per node.

Credentials (an ACL user, ElastiCache RBAC) come in the URL (``redis://user:pass@host/0``,
locally) or as ``credentials`` (read from Secrets Manager on AWS, :mod:`btcpred.credentials`),
never both. Either way every connection of either client authenticates (``AUTH``, or ``HELLO``
with ``AUTH``) before its first command. The client never sends ``CLIENT SETINFO``: the app
user's access string does not allow it (it is not among the commands ElastiCache Serverless
lists as supported), and it would cost two round trips per new connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeAlias, cast
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.credentials import CredentialProvider, UsernamePasswordCredentialProvider
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from btcpred.credentials import CredentialsError, RedisCredentials

__all__ = ["LazyCredentials", "RedisClient", "connect", "is_cluster"]

RedisClient: TypeAlias = "redis.Redis | RedisCluster"
"""What the stores accept: a single-node client or a cluster client."""


def connect(
    url: str,
    *,
    cluster: bool = False,
    timeout_s: float = 1.0,
    credentials: RedisCredentials | LazyCredentials | None = None,
) -> RedisClient:
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
    credentials
        The ACL user to authenticate as on every connection (single node and every cluster
        node), or :class:`LazyCredentials` that read it when a connection first needs it.
        ``None``: whatever ``url`` says (``redis://user:pass@…``), else the default user.

    Raises
    ------
    CredentialsError
        ``credentials`` are given and ``url`` holds credentials too.
    """
    common: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "decode_responses": False,
        "driver_info": None,  # no CLIENT SETINFO (see the module docstring)
    }
    if credentials is not None:
        if urlsplit(url).netloc.rpartition("@")[1]:
            raise CredentialsError("the Redis URL holds credentials and others were given")
        common["credential_provider"] = (
            credentials
            if isinstance(credentials, LazyCredentials)
            else UsernamePasswordCredentialProvider(credentials.username, credentials.password)
        )
    if cluster:
        return cast(
            RedisCluster,
            _LazyCluster(lambda: RedisCluster.from_url(url, retry=Retry(NoBackoff(), 1), **common)),
        )
    return redis.Redis.from_url(url, **common)


class LazyCredentials(CredentialProvider):
    """Credentials read through ``fetch`` when a connection first needs them, then kept.

    For a process that must start without them (the inference function predicts from REST
    while Redis is out of reach): while ``fetch`` fails, connecting fails as an outage
    (``redis.ConnectionError``, retryable) and ``fetch`` is tried again at most every
    ``retry_s``, so the process reaches Redis once the secret becomes readable, without a
    new cold start.

    Parameters
    ----------
    fetch
        Returns the credentials or raises :class:`~btcpred.credentials.CredentialsError`.
    retry_s
        The least time between two attempts after a failure.
    clock
        Seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        fetch: Callable[[], RedisCredentials],
        *,
        retry_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._found: RedisCredentials | None = None
        self._next_attempt = -float("inf")
        self.last_error: CredentialsError | None = None
        """Why the last attempt failed (None once the credentials are read)."""

    def read(self) -> RedisCredentials:
        """The credentials: kept, or read now if the last failure is ``retry_s`` old.

        Raises
        ------
        CredentialsError
            Not read yet, and reading failed now or failed less than ``retry_s`` ago.
        """
        with self._lock:
            if self._found is not None:
                return self._found
            now = self._clock()
            if now < self._next_attempt and self.last_error is not None:
                raise self.last_error.with_traceback(None)  # not one growing traceback
            try:
                self._found = self._fetch()
            except CredentialsError as exc:
                self.last_error, self._next_attempt = exc, now + self.retry_s
                raise
            self.last_error = None
            return self._found

    def get_credentials(self) -> tuple[str, str]:
        """redis-py's hook, called on every new connection (see :meth:`read`)."""
        try:
            found = self.read()
        except CredentialsError as exc:
            raise redis.ConnectionError(f"no Redis credentials: {exc}") from exc
        return found.username, found.password


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
