"""Which invocation predicts: a Redis lease (SET NX PX), renewed each tick, released at the end.

The lease value is ``{owner}|{deadline_ms}``: the holder's id and the wall-clock time at which
it will stop on its own. A standby invocation remembers the holder's deadline; if Redis goes
away it takes over at that deadline instead of predicting alongside the holder (see
``docs/inference.md``). A holder that ends releases the lease by leaving
``|released|{last_tick_ms}`` for one lease TTL: a standby whose tick for the same grid point
runs late (after the release) must not predict that point a second time, so the lease is free
only for later ticks.

The lease is one key (no hash tag needed: each script touches only ``KEYS[1]``), so it works
unchanged on a Redis Cluster. Every method raises
:class:`~btcpred.inference.errors.StoreUnavailableError` or
:class:`~btcpred.inference.errors.StoreRejectedError`, never a driver exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from btcpred.inference.redisio import redis_errors
from btcpred.redisconn import RedisClient

__all__ = ["LeaseState", "RedisLease"]

_HOLD = """
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 10) == '|released|' then
  if tonumber(ARGV[4]) <= tonumber(string.sub(v, 11)) then
    return v
  end
  v = false
end
if (not v) or string.find(v, ARGV[1] .. '|', 1, true) == 1 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return v
"""
_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v and string.find(v, ARGV[1] .. '|', 1, true) == 1 then
  redis.call('SET', KEYS[1], '|released|' .. ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class LeaseState:
    """The outcome of one :meth:`RedisLease.hold` call."""

    held: bool
    holder_deadline_ms: int | None = None
    """When another holds it: the time it said it would stop (None when unknown)."""


class RedisLease:
    """A lease on ``key`` for ``owner`` with a time-to-live of ``ttl_ms``.

    Raises the store's typed errors from every method when Redis fails; the caller decides
    what that means (direct REST mode). The scripts are registered on first use, so a
    cluster client that cannot reach Redis yet fails there, typed, not at construction.
    """

    def __init__(self, client: RedisClient, key: str, owner: str, ttl_ms: int) -> None:
        if not owner or "|" in owner or ttl_ms < 1:
            raise ValueError("owner must be non-empty without '|' and ttl_ms must be positive")
        self.client = client
        self.key = key
        self.owner = owner
        self.ttl_ms = ttl_ms
        self._value: str | None = None
        self._scripts: tuple[Any, Any] | None = None

    def _script(self, release: bool) -> Any:
        if self._scripts is None:
            client = self.client
            self._scripts = (client.register_script(_HOLD), client.register_script(_RELEASE))
        return self._scripts[1 if release else 0]

    @property
    def held(self) -> bool:
        """Whether the last :meth:`hold` kept or took the lease."""
        return self._value is not None

    def hold(self, deadline_ms: int, tick_ms: int) -> LeaseState:
        """Take, renew or re-take the lease if free or ours, for the tick at ``tick_ms``.

        One round trip (a Lua script): the lease is set when the key is absent or already
        ``{owner}|…``, so a holder that lost its local belief in a short Redis outage takes
        its own lease back instead of waiting for it to expire. A released lease is free
        only for ticks after the releasing holder's last one.
        """
        value = f"{self.owner}|{deadline_ms}"
        args = [self.owner, value, self.ttl_ms, tick_ms]
        with redis_errors("lease hold"):
            reply = self._script(False)(keys=[self.key], args=args)
        if reply == 1:
            self._value = value
            return LeaseState(held=True)
        self._value = None
        return LeaseState(held=False, holder_deadline_ms=_deadline(reply))

    def release(self, last_tick_ms: int) -> bool:
        """Give the lease up if held, so the next invocation takes over from the tick after
        ``last_tick_ms`` (the last grid point this holder predicted)."""
        if self._value is None:
            return False
        self._value = None
        args = [self.owner, last_tick_ms, self.ttl_ms]
        with redis_errors("lease release"):
            return bool(self._script(True)(keys=[self.key], args=args))

    def forget(self) -> None:
        """Drop the local belief that the lease is held (Redis went away, a new invocation)."""
        self._value = None


def _deadline(value: object) -> int | None:
    if not isinstance(value, bytes | str):
        return None
    text = value.decode() if isinstance(value, bytes) else value
    _, _, deadline = text.rpartition("|")
    try:
        return int(deadline)
    except ValueError:
        return None
