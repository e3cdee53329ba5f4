"""Where the aggregator keeps features and its own state: a port and its Redis adapter.

One transaction per (batch, partition key): :meth:`FeatureStore.begin` reads one symbol's engine
state and its (shard, symbol) checkpoints; :meth:`StoreTransaction.commit` writes the new
features, history, state and checkpoints all at once, or nothing. Every key one transaction
touches carries the symbol's hash tag (:class:`btcpred.keys.RedisKeys`), so on a Redis Cluster
the whole transaction lives in one hash slot. The Redis adapter reads with one ``MGET`` and
commits with one Lua script that first checks the state and checkpoints are unchanged
(compare-and-set), so a concurrent writer makes the commit fail (:class:`StoreConflictError`)
instead of interleaving, on a single node and on a cluster alike.

Keys (``{S}`` = the symbol's hash tag; prefixes configurable):

=================================  ==========================================================
``features:{S}:latest``            the features document (TTL ``latest_ttl_s``)
``features:{S}:history``           list, newest first, the last ``history_length`` documents
``aggregator:{S}:state``           the engine state (MessagePack, TTL ``state_ttl_s``)
``aggregator:{S}:seq:{shard}``     last applied sequence number of (shard, partition key)
=================================  ==========================================================
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis
from redis.exceptions import RedisClusterException

from btcpred.features.snapshot import FeatureSnapshot
from btcpred.keys import RedisKeys
from btcpred.redisconn import RedisClient

__all__ = [
    "FeatureStore",
    "FeatureStoreError",
    "GroupCommit",
    "RedisFeatureStore",
    "StoreConflictError",
    "StoreTransaction",
    "StoreUnavailableError",
]


class FeatureStoreError(Exception):
    """The store failed; the transaction must be retried as a whole (nothing was written)."""


class StoreUnavailableError(FeatureStoreError):
    """The store could not be reached or answered with an error (retryable)."""


class StoreConflictError(FeatureStoreError):
    """Another writer changed the transaction's keys between read and commit (retryable)."""


@dataclass(slots=True)
class GroupCommit:
    """Everything one partition key's transaction writes (``snapshot``/``state`` may be absent
    when every message of the new records was dropped: then only the checkpoints move)."""

    snapshot: FeatureSnapshot | None = None
    state: bytes | None = None
    checkpoints: dict[str, int] = field(default_factory=dict)


class StoreTransaction(Protocol):
    """The read half of one symbol's transaction, and its commit."""

    state: bytes | None
    checkpoints: dict[str, int | None]

    def commit(self, commit: GroupCommit) -> None:
        """Write everything or nothing; raise :class:`FeatureStoreError` on failure."""

    def abort(self) -> None:
        """Give up without writing."""


class FeatureStore(Protocol):
    """Begins one transaction per (batch, partition key)."""

    def begin(self, symbol: str, shards: Sequence[str]) -> StoreTransaction:
        """Read ``symbol``'s engine state and its checkpoints in ``shards``."""


_COMMIT = """
local function text(key)
  if redis.call('TYPE', key).ok == 'string' then return redis.call('GET', key) end
  return false
end
local state = text(KEYS[1])
if (state and redis.sha1hex(state) or '') ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
for i = 1, n do
  if (text(KEYS[3 + i]) or '') ~= ARGV[2 + i] then return 0 end
end
local at = 2 + 2 * n
local doc, ttl = ARGV[at + 1], ARGV[at + 3]
if doc ~= '' then
  redis.call('SET', KEYS[2], doc, 'EX', ttl)
  local kind = redis.call('TYPE', KEYS[3]).ok
  if kind ~= 'list' and kind ~= 'none' then redis.call('DEL', KEYS[3]) end
  redis.call('LPUSH', KEYS[3], doc)
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[at + 5]) - 1)
  redis.call('EXPIRE', KEYS[3], ttl)
end
if ARGV[at + 2] ~= '' then redis.call('SET', KEYS[1], ARGV[at + 2], 'EX', ARGV[at + 4]) end
for i = 1, n do redis.call('SET', KEYS[3 + i], ARGV[2 + n + i]) end
return 1
"""
"""Compare-and-set: write only if the state and checkpoints are still what was read.

Redis does not undo a script's earlier writes when a later command fails, so nothing in it may
fail: a key of the wrong type (written by something else) reads as absent and is replaced,
never an error, and the checkpoints are written last, so they can never move past records
whose features were not written."""


_REDIS_FAILURES = (redis.RedisError, RedisClusterException)
"""What a Redis call can raise: redis-py's cluster client raises ``RedisClusterException``
(not a ``RedisError``) when it cannot re-read the slot map after a connection error."""


class _RedisTransaction:
    """Optimistic: MGET the state and checkpoints, then one script that checks and writes.

    The check runs inside Redis (a Lua script over keys of one hash slot), not through
    WATCH: redis-py's cluster pipeline reconnects silently after a dropped connection and
    would run MULTI/EXEC without the WATCH, so a conflicting write could go unnoticed.
    """

    def __init__(self, store: RedisFeatureStore, symbol: str, shards: Sequence[str]) -> None:
        self._store, self._symbol, self._shards = store, symbol, list(shards)
        keys = store.keys
        self._read = [keys.engine_state(symbol), *(keys.checkpoint(symbol, s) for s in shards)]
        try:
            raw = store.client.execute_command("MGET", *self._read)  # type: ignore[no-untyped-call]  # redis-py
        except _REDIS_FAILURES as exc:
            raise StoreUnavailableError(f"redis read failed: {exc}") from exc
        self.state: bytes | None = raw[0]
        self._raw_checkpoints: list[bytes | None] = list(raw[1:])
        self.checkpoints: dict[str, int | None] = {
            shard: None if value is None else int(value)
            for shard, value in zip(shards, raw[1:], strict=True)
        }

    def commit(self, commit: GroupCommit) -> None:
        store, symbol = self._store, self._symbol
        keys = store.keys
        moved = [s for s in self._shards if s in commit.checkpoints]
        expected = [self._raw_checkpoints[self._shards.index(s)] or b"" for s in moved]
        argv: list[bytes | str | int] = [
            hashlib.sha1(self.state).hexdigest() if self.state is not None else "",  # noqa: S324  # a change detector, not security
            len(moved),
            *expected,
            *(str(commit.checkpoints[s]) for s in moved),
            b"" if commit.snapshot is None else commit.snapshot.to_json(),
            commit.state or b"",
            store.latest_ttl_s,
            store.state_ttl_s,
            store.history_length,
        ]
        script_keys = [
            keys.engine_state(symbol),
            keys.features_latest(symbol),
            keys.features_history(symbol),
            *(keys.checkpoint(symbol, s) for s in moved),
        ]
        try:
            done = store.commit_script(keys=script_keys, args=argv)
        except _REDIS_FAILURES as exc:
            raise StoreUnavailableError(f"redis commit failed: {exc}") from exc
        if not done:
            raise StoreConflictError(f"{symbol} keys changed during the batch")

    def abort(self) -> None:
        """Nothing to release: the read took no lock."""


class RedisFeatureStore:
    """:class:`FeatureStore` on Redis or a Redis Cluster (see the module docstring)."""

    def __init__(
        self,
        client: RedisClient,
        keys: RedisKeys | None = None,
        *,
        latest_ttl_s: int = 300,
        state_ttl_s: int = 86_400,
        history_length: int = 10,
    ) -> None:
        if min(latest_ttl_s, state_ttl_s, history_length) < 1:
            raise ValueError("TTLs and history length must be positive")
        self.client = client
        self.keys = keys or RedisKeys()
        self.latest_ttl_s = latest_ttl_s
        self.state_ttl_s = state_ttl_s
        self.history_length = history_length
        self.commit_script = client.register_script(_COMMIT)

    def begin(self, symbol: str, shards: Sequence[str]) -> StoreTransaction:
        """Start ``symbol``'s transaction: one MGET; the commit is one script call."""
        return _RedisTransaction(self, symbol, shards)
