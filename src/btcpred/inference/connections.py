"""The WebSocket connection registry, in Redis (decision 29 in docs/decisions.md).

==============================  ===========================================================
``ws:{S}:connections``          sorted set: connection id → expiry (ms since the epoch)
``ws:conn:{id}``                the symbol the connection is subscribed to (TTL = expiry)
==============================  ===========================================================

(names from :class:`btcpred.keys.RedisKeys`). A connection is stored with a time-to-live (API
Gateway closes a connection after two hours), so a missed ``$disconnect`` never leaves a
connection behind for long: expired members are ignored when read and swept on every ``add``.

The two keys of a connection live in different Redis Cluster hash slots (the set is tagged by
symbol, the connection key cannot be: its symbol is what it records), so they are written by
one non-transactional pipeline: a failure between the two leaves at worst a member or a
pointer that expires with its TTL, never a connection that receives another symbol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from btcpred.inference.redisio import redis_errors
from btcpred.keys import KeySchemaError, RedisKeys
from btcpred.redisconn import RedisClient

__all__ = ["ConnectionRegistry", "RedisConnectionRegistry"]


class ConnectionRegistry(Protocol):
    """Who is connected, by symbol.

    Every method may raise :class:`~btcpred.inference.errors.InferenceStoreError` (retryable
    when the store is unreachable).
    """

    def add(self, connection_id: str, symbol: str, now_ms: int) -> None:
        """Store (or move) a connection under ``symbol``."""

    def remove(self, connection_ids: Sequence[str]) -> None:
        """Forget connections."""

    def connections(self, symbol: str, now_ms: int) -> list[str]:
        """The live connections of ``symbol``."""

    def symbol_of(self, connection_id: str) -> str | None:
        """The symbol a connection is subscribed to, or None when unknown."""


def _members_key(keys: RedisKeys, stored: object) -> str | None:
    """The set a stored symbol names, or None when the stored value is not a symbol (a
    corrupt or foreign value: the connection's own key is deleted all the same)."""
    if not isinstance(stored, bytes | str):
        return None
    try:
        return keys.connections(_text(stored))
    except (UnicodeDecodeError, KeySchemaError):
        return None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisConnectionRegistry:
    """:class:`ConnectionRegistry` in Redis (single node or cluster)."""

    def __init__(
        self, client: RedisClient, *, ttl_s: int = 7200, keys: RedisKeys | None = None
    ) -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be positive")
        self.client = client
        self.ttl_s = ttl_s
        self.keys = keys or RedisKeys()

    def add(self, connection_id: str, symbol: str, now_ms: int) -> None:
        members = self.keys.connections(symbol)
        previous = self.symbol_of(connection_id)
        with redis_errors("connection registry add"):
            pipe = self.client.pipeline(transaction=False)
            if previous is not None and previous != symbol:
                pipe.zrem(self.keys.connections(previous), connection_id)
            pipe.zadd(members, {connection_id: now_ms + self.ttl_s * 1000})
            pipe.zremrangebyscore(members, "-inf", now_ms)
            pipe.expire(members, self.ttl_s)
            pipe.set(self.keys.connection(connection_id), symbol, ex=self.ttl_s)
            pipe.execute()

    def remove(self, connection_ids: Sequence[str]) -> None:
        if not connection_ids:
            return
        with redis_errors("connection registry remove"):
            read = self.client.pipeline(transaction=False)
            for cid in connection_ids:
                read.get(self.keys.connection(cid))
            symbols = read.execute()
            pipe = self.client.pipeline(transaction=False)
            for cid, sym in zip(connection_ids, symbols, strict=True):
                members = _members_key(self.keys, sym)
                if members is not None:
                    pipe.zrem(members, cid)
                pipe.delete(self.keys.connection(cid))
            pipe.execute()

    def connections(self, symbol: str, now_ms: int) -> list[str]:
        with redis_errors("connection registry read"):
            members = self.client.zrangebyscore(self.keys.connections(symbol), now_ms, "+inf")
        return [_text(m) for m in members]

    def symbol_of(self, connection_id: str) -> str | None:
        with redis_errors("connection registry read"):
            value = self.client.get(self.keys.connection(connection_id))
        return None if value is None else _text(value)
