"""The aggregator's Redis transaction: all or nothing, and conflicts detected."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import redis

from btcpred.aggregator import (
    Aggregator,
    DecodedRecord,
    RedisFeatureStore,
    StoreConflictError,
    StoreUnavailableError,
)
from btcpred.aggregator.messages import TradeMessage
from btcpred.aggregator.store import StoreTransaction
from btcpred.sim.services import free_port

SHARD = "shardId-000000000001"


def batch(first_id: int, count: int, first_seq: int) -> list[DecodedRecord]:
    return [
        DecodedRecord(
            SHARD,
            first_seq + i,
            [
                TradeMessage(
                    "BTCUSDT", 1_723_161_600_000_000 + i * 1000, first_id + i, 61_000.0, 0.1
                )
            ],
        )
        for i in range(count)
    ]


class KillBeforeCommit:
    """The real store, but every client connection is killed between read and commit."""

    def __init__(self, store: RedisFeatureStore, admin: redis.Redis) -> None:
        self.store, self.admin = store, admin

    def begin(self, symbols: Sequence[str], shards: Sequence[str]) -> StoreTransaction:
        txn = self.store.begin(symbols, shards)
        self.admin.client_kill_filter(_type="normal", skipme=True)
        return txn


class WriteBetweenReadAndCommit:
    """The real store, but another writer moves the shard's sequence number mid-batch."""

    def __init__(self, store: RedisFeatureStore, other: redis.Redis) -> None:
        self.store, self.other = store, other

    def begin(self, symbols: Sequence[str], shards: Sequence[str]) -> StoreTransaction:
        txn = self.store.begin(symbols, shards)
        self.other.set(f"aggregator:seq:{SHARD}", "7")
        return txn


def test_connection_lost_before_commit_writes_nothing(
    redis_client: redis.Redis, redis_url: str
) -> None:
    store = RedisFeatureStore(redis.Redis.from_url(redis_url))
    aggregator = Aggregator(KillBeforeCommit(store, redis_client))

    with pytest.raises((StoreConflictError, StoreUnavailableError)):
        aggregator.apply(batch(1, 5, 100))

    assert redis_client.keys("*") == []


def test_concurrent_writer_makes_the_commit_fail(redis_client: redis.Redis, redis_url: str) -> None:
    store = RedisFeatureStore(redis.Redis.from_url(redis_url))
    aggregator = Aggregator(WriteBetweenReadAndCommit(store, redis_client))

    with pytest.raises(StoreConflictError):
        aggregator.apply(batch(1, 5, 100))

    assert redis_client.keys("*") == [f"aggregator:seq:{SHARD}".encode()]


def test_batch_retried_after_redis_returns_is_applied_once(
    redis_client: redis.Redis, redis_url: str
) -> None:
    down = Aggregator(RedisFeatureStore(redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}")))
    with pytest.raises(StoreUnavailableError):
        down.apply(batch(1, 5, 100))
    up = Aggregator(RedisFeatureStore(redis.Redis.from_url(redis_url)))

    first = up.apply(batch(1, 5, 100))
    again = up.apply(batch(1, 5, 100))

    assert (first.events, first.skipped_records) == (5, 0)
    assert (again.events, again.skipped_records) == (0, 5)
    assert redis_client.get(f"aggregator:seq:{SHARD}") == b"104"
