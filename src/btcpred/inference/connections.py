"""The WebSocket connection registry, in Redis (decision 29 in docs/decisions.md).

==============================  ===========================================================
``ws:{S}:connections``          sorted set: connection id → expiry (ms since the epoch)
``ws:conn:{id}``                the symbol the connection is subscribed to (TTL = expiry)
==============================  ===========================================================

A connection is stored with a time-to-live (API Gateway closes a connection after two hours),
so a missed ``$disconnect`` never leaves a connection behind for long: expired members are
ignored when read and swept on every ``add``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import redis

__all__ = ["ConnectionRegistry", "RedisConnectionRegistry"]


class ConnectionRegistry(Protocol):
    """Who is connected, by symbol."""

    def add(self, connection_id: str, symbol: str, now_ms: int) -> None:
        """Store (or move) a connection under ``symbol``."""

    def remove(self, connection_ids: Sequence[str]) -> None:
        """Forget connections."""

    def connections(self, symbol: str, now_ms: int) -> list[str]:
        """The live connections of ``symbol``."""

    def symbol_of(self, connection_id: str) -> str | None:
        """The symbol a connection is subscribed to, or None when unknown."""


class RedisConnectionRegistry:
    """:class:`ConnectionRegistry` in Redis; raises ``redis.RedisError`` when it is down."""

    def __init__(self, client: redis.Redis, *, ttl_s: int = 7200, prefix: str = "ws") -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be positive")
        self.client = client
        self.ttl_s = ttl_s
        self.prefix = prefix

    def _set(self, symbol: str) -> str:
        return f"{self.prefix}:{symbol}:connections"

    def _conn(self, connection_id: str) -> str:
        return f"{self.prefix}:conn:{connection_id}"

    def add(self, connection_id: str, symbol: str, now_ms: int) -> None:
        previous = self.symbol_of(connection_id)
        expiry = now_ms + self.ttl_s * 1000
        pipe = self.client.pipeline(transaction=True)
        if previous is not None and previous != symbol:
            pipe.zrem(self._set(previous), connection_id)
        pipe.zadd(self._set(symbol), {connection_id: expiry})
        pipe.zremrangebyscore(self._set(symbol), "-inf", now_ms)
        pipe.expire(self._set(symbol), self.ttl_s)
        pipe.set(self._conn(connection_id), symbol, ex=self.ttl_s)
        pipe.execute()

    def remove(self, connection_ids: Sequence[str]) -> None:
        if not connection_ids:
            return
        symbols = self.client.mget([self._conn(c) for c in connection_ids])
        pipe = self.client.pipeline(transaction=True)
        for cid, sym in zip(connection_ids, symbols, strict=True):
            if sym is not None:
                pipe.zrem(self._set(sym.decode() if isinstance(sym, bytes) else sym), cid)
            pipe.delete(self._conn(cid))
        pipe.execute()

    def connections(self, symbol: str, now_ms: int) -> list[str]:
        members = self.client.zrangebyscore(self._set(symbol), now_ms, "+inf")
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    def symbol_of(self, connection_id: str) -> str | None:
        value = self.client.get(self._conn(connection_id))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
