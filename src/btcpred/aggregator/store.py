"""Where the aggregator keeps features and its own state: a port and its Redis adapter.

One batch is one transaction: :meth:`FeatureStore.begin` reads the engine states of the batch's
symbols and the applied sequence numbers of its shards; :meth:`StoreTransaction.commit` writes
the new features, history, states and sequence numbers all at once, or nothing. The Redis
adapter WATCHes the keys it read and commits with MULTI/EXEC, so a concurrent writer makes the
commit fail (:class:`StoreConflictError`) instead of interleaving.

Keys (``{S}`` = symbol; prefixes configurable):

=================================  ==========================================================
``features:{S}:latest``            the features document (TTL ``latest_ttl_s``)
``features:{S}:history``           list, newest first, the last ``history_length`` documents
``aggregator:{S}:state``           the engine state (MessagePack, TTL ``state_ttl_s``)
``aggregator:seq:{shard}``         last applied Kinesis sequence number of the shard
=================================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis

from btcpred.features.snapshot import FeatureSnapshot

__all__ = [
    "BatchCommit",
    "FeatureStore",
    "FeatureStoreError",
    "RedisFeatureStore",
    "StoreConflictError",
    "StoreKeys",
    "StoreTransaction",
    "StoreUnavailableError",
]


class FeatureStoreError(Exception):
    """The store failed; the batch must be retried as a whole (nothing was written)."""


class StoreUnavailableError(FeatureStoreError):
    """The store could not be reached or answered with an error."""


class StoreConflictError(FeatureStoreError):
    """Another writer changed the batch's keys between read and commit."""


@dataclass(frozen=True, slots=True)
class StoreKeys:
    """Key names; the prefixes come from configuration."""

    features_prefix: str = "features"
    state_prefix: str = "aggregator"

    def latest(self, symbol: str) -> str:
        """``features:{S}:latest``."""
        return f"{self.features_prefix}:{symbol}:latest"

    def history(self, symbol: str) -> str:
        """``features:{S}:history``."""
        return f"{self.features_prefix}:{symbol}:history"

    def state(self, symbol: str) -> str:
        """``aggregator:{S}:state``."""
        return f"{self.state_prefix}:{symbol}:state"

    def sequence(self, shard_id: str) -> str:
        """``aggregator:seq:{shard}``."""
        return f"{self.state_prefix}:seq:{shard_id}"


@dataclass(slots=True)
class BatchCommit:
    """Everything one batch writes."""

    snapshots: dict[str, FeatureSnapshot] = field(default_factory=dict)
    states: dict[str, bytes] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)


class StoreTransaction(Protocol):
    """The read half of a batch's transaction, and its commit."""

    states: dict[str, bytes | None]
    sequences: dict[str, int | None]

    def commit(self, batch: BatchCommit) -> None:
        """Write everything or nothing; raise :class:`FeatureStoreError` on failure."""

    def abort(self) -> None:
        """Give up without writing."""


class FeatureStore(Protocol):
    """Begins one transaction per batch."""

    def begin(self, symbols: Sequence[str], shards: Sequence[str]) -> StoreTransaction:
        """Read the symbols' states and the shards' sequence numbers."""


class _RedisTransaction:
    def __init__(self, store: RedisFeatureStore, symbols: Sequence[str], shards: Sequence[str]):
        self._store = store
        keys = store.keys
        state_keys = [keys.state(s) for s in symbols]
        seq_keys = [keys.sequence(s) for s in shards]
        self._pipe = store.client.pipeline(transaction=True)
        try:
            self._pipe.watch(*state_keys, *seq_keys)  # type: ignore[no-untyped-call]  # redis-py
            raw = self._pipe.mget(state_keys + seq_keys) if state_keys or seq_keys else []
        except redis.RedisError as exc:
            self._pipe.reset()
            raise StoreUnavailableError(f"redis read failed: {exc}") from exc
        values = [v.encode() if isinstance(v, str) else v for v in raw]
        self.states: dict[str, bytes | None] = dict(zip(symbols, values, strict=False))
        self.sequences: dict[str, int | None] = {
            shard: None if value is None else int(value)
            for shard, value in zip(shards, values[len(symbols) :], strict=True)
        }

    def commit(self, batch: BatchCommit) -> None:
        store, keys, pipe = self._store, self._store.keys, self._pipe
        try:
            pipe.multi()
            for symbol, snapshot in batch.snapshots.items():
                doc = snapshot.to_json()
                pipe.set(keys.latest(symbol), doc, ex=store.latest_ttl_s)
                pipe.lpush(keys.history(symbol), doc)
                pipe.ltrim(keys.history(symbol), 0, store.history_length - 1)
                pipe.expire(keys.history(symbol), store.latest_ttl_s)
            for symbol, state in batch.states.items():
                pipe.set(keys.state(symbol), state, ex=store.state_ttl_s)
            for shard, sequence in batch.sequences.items():
                pipe.set(keys.sequence(shard), str(sequence))
            pipe.execute()
        except redis.WatchError as exc:
            raise StoreConflictError("batch keys changed during the batch") from exc
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"redis commit failed: {exc}") from exc
        finally:
            pipe.reset()

    def abort(self) -> None:
        self._pipe.reset()


class RedisFeatureStore:
    """:class:`FeatureStore` on Redis (see the module docstring for keys and TTLs)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: StoreKeys | None = None,
        *,
        latest_ttl_s: int = 300,
        state_ttl_s: int = 86_400,
        history_length: int = 10,
    ) -> None:
        if min(latest_ttl_s, state_ttl_s, history_length) < 1:
            raise ValueError("TTLs and history length must be positive")
        self.client = client
        self.keys = keys or StoreKeys()
        self.latest_ttl_s = latest_ttl_s
        self.state_ttl_s = state_ttl_s
        self.history_length = history_length

    def begin(self, symbols: Sequence[str], shards: Sequence[str]) -> StoreTransaction:
        """Start a batch's transaction: WATCH and read (one round trip after WATCH)."""
        return _RedisTransaction(self, symbols, shards)
