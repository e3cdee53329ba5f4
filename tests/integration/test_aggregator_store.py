"""The aggregator's Redis transaction: all or nothing, conflicts detected, one hash slot.

Every test runs on a single node and on a Redis Cluster (``any_redis``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from redis.cluster import RedisCluster

from btcpred.aggregator import (
    Aggregator,
    DecodedRecord,
    RedisFeatureStore,
    StoreConflictError,
    StoreUnavailableError,
)
from btcpred.aggregator.messages import TradeMessage
from btcpred.aggregator.store import StoreTransaction
from btcpred.keys import RedisKeys
from btcpred.redisconn import RedisClient, connect, is_cluster
from btcpred.sim.services import free_port

SHARD = "shardId-000000000001"
KEYS = RedisKeys()
Redis = tuple[RedisClient, str, bool]


def batch(
    first_id: int, count: int, first_seq: int, symbol: str = "BTCUSDT"
) -> list[DecodedRecord]:
    return [
        DecodedRecord(
            SHARD,
            first_seq + i,
            symbol,
            [TradeMessage(symbol, 1_723_161_600_000_000 + i * 1000, first_id + i, 61_000.0, 0.1)],
        )
        for i in range(count)
    ]


def fresh(any_redis: Redis) -> RedisClient:
    """A second client of the same Redis (the store's own connection)."""
    _, url, cluster = any_redis
    return connect(url, cluster=cluster, timeout_s=2.0)


def all_keys(client: RedisClient) -> list[bytes]:
    if is_cluster(client):
        return sorted(client.keys("*", target_nodes=RedisCluster.PRIMARIES))  # type: ignore[call-arg]  # cluster-only argument
    return sorted(client.keys("*"))


class KillBeforeCommit:
    """The real store, but between read and commit every client connection is killed and
    another writer moves the engine state (each time to a new value)."""

    def __init__(self, store: RedisFeatureStore, admin: RedisClient) -> None:
        self.store, self.admin, self.writes = store, admin, 0

    def begin(self, symbol: str, shards: Sequence[str]) -> StoreTransaction:
        txn = self.store.begin(symbol, shards)
        self.writes += 1
        self.admin.set(KEYS.engine_state(symbol), f"other-{self.writes}")
        if is_cluster(self.admin):
            self.admin.client_kill_filter(  # type: ignore[call-arg]  # cluster-only argument
                _type="normal", skipme=True, target_nodes=RedisCluster.PRIMARIES
            )
        else:
            self.admin.client_kill_filter(_type="normal", skipme=True)
        return txn


class WriteBetweenReadAndCommit:
    """The real store, but another writer moves the checkpoint mid-batch, every time."""

    def __init__(self, store: RedisFeatureStore, other: RedisClient, times: int = 99) -> None:
        self.store, self.other, self.times, self.moves = store, other, times, 0

    def begin(self, symbol: str, shards: Sequence[str]) -> StoreTransaction:
        txn = self.store.begin(symbol, shards)
        if self.moves < self.times:
            self.moves += 1
            self.other.set(KEYS.checkpoint(symbol, SHARD), str(100 + self.moves))
        return txn


def test_connection_lost_and_a_conflicting_write_before_commit_writes_nothing(
    any_redis: Redis,
) -> None:
    """On a cluster this failed with WATCH/MULTI/EXEC: redis-py reconnected without the WATCH."""
    client = any_redis[0]
    aggregator = Aggregator(KillBeforeCommit(RedisFeatureStore(fresh(any_redis)), client))

    with pytest.raises(StoreConflictError):
        aggregator.apply(batch(1, 5, 100))

    assert all_keys(client) == [KEYS.engine_state("BTCUSDT").encode()]
    assert client.get(KEYS.engine_state("BTCUSDT")) == b"other-2"


def test_one_conflict_is_retried_at_once_and_skips_what_the_other_writer_applied(
    any_redis: Redis,
) -> None:
    client = any_redis[0]
    store = WriteBetweenReadAndCommit(RedisFeatureStore(fresh(any_redis)), client, times=1)

    result = Aggregator(store).apply(batch(1, 5, 100))  # the other "applied" 100 and 101

    assert (result.skipped_records, result.events) == (2, 3)
    assert client.get(KEYS.checkpoint("BTCUSDT", SHARD)) == b"104"


def test_concurrent_writer_makes_the_commit_fail(any_redis: Redis) -> None:
    client = any_redis[0]
    aggregator = Aggregator(WriteBetweenReadAndCommit(RedisFeatureStore(fresh(any_redis)), client))

    with pytest.raises(StoreConflictError):
        aggregator.apply(batch(1, 5, 100))

    assert all_keys(client) == [KEYS.checkpoint("BTCUSDT", SHARD).encode()]


def test_batch_retried_after_redis_returns_is_applied_once(any_redis: Redis) -> None:
    client = any_redis[0]
    down = Aggregator(RedisFeatureStore(connect(f"redis://127.0.0.1:{free_port()}")))
    with pytest.raises(StoreUnavailableError):
        down.apply(batch(1, 5, 100))
    up = Aggregator(RedisFeatureStore(fresh(any_redis)))

    first = up.apply(batch(1, 5, 100))
    again = up.apply(batch(1, 5, 100))

    assert (first.events, first.skipped_records) == (5, 0)
    assert (again.events, again.skipped_records) == (0, 5)
    assert client.get(KEYS.checkpoint("BTCUSDT", SHARD)) == b"104"


def test_every_key_of_a_transaction_shares_the_symbol_hash_slot(any_redis: Redis) -> None:
    client = any_redis[0]
    Aggregator(RedisFeatureStore(fresh(any_redis))).apply(
        [*batch(1, 3, 100, "BTCUSDT"), *batch(1, 3, 200, "ETHUSDT")]
    )

    for symbol in ("BTCUSDT", "ETHUSDT"):
        keys = [k for k in all_keys(client) if b"{" + symbol.encode() + b"}" in k]
        assert len(keys) == 4  # latest, history, state, checkpoint
        assert len({connect_slot(k) for k in keys}) == 1
    assert len(all_keys(client)) == 8


def connect_slot(key: bytes) -> int:
    """The cluster hash slot of ``key`` (redis-py's own CRC16 implementation)."""
    from redis.crc import key_slot

    return int(key_slot(key))


def test_custom_prefixes_are_honoured(any_redis: Redis) -> None:
    client = any_redis[0]
    keys = RedisKeys(features_prefix="feat-test", state_prefix="agg-test")

    Aggregator(RedisFeatureStore(fresh(any_redis), keys)).apply(batch(1, 2, 100))

    assert all_keys(client) == sorted(
        k.encode()
        for k in (
            keys.features_latest("BTCUSDT"),
            keys.features_history("BTCUSDT"),
            keys.engine_state("BTCUSDT"),
            keys.checkpoint("BTCUSDT", SHARD),
        )
    )


@pytest.mark.parametrize(
    "key",
    [
        KEYS.features_history("BTCUSDT"),
        KEYS.engine_state("BTCUSDT"),
        KEYS.checkpoint("BTCUSDT", SHARD),
    ],
    ids=["history", "state", "checkpoint"],
)
def test_a_key_of_the_wrong_type_is_replaced_and_nothing_is_lost(
    any_redis: Redis, key: str
) -> None:
    """A foreign value of another type at one of our keys must not make the script fail half
    way (Redis keeps a script's earlier writes): the batch is applied whole."""
    client = any_redis[0]
    client.sadd(key, "not ours")  # a set where a string or list belongs

    result = Aggregator(RedisFeatureStore(fresh(any_redis))).apply(batch(1, 5, 100))

    assert result.events == 5
    assert client.get(KEYS.checkpoint("BTCUSDT", SHARD)) == b"104"
    assert client.llen(KEYS.features_history("BTCUSDT")) == 1
    assert client.type(KEYS.engine_state("BTCUSDT")) == b"string"
    assert client.get(KEYS.features_latest("BTCUSDT")) is not None


def test_a_cluster_that_goes_away_is_a_typed_unavailable_error() -> None:
    """redis-py's cluster client raises RedisClusterException (not a RedisError) when it cannot
    re-read the slot map after a connection error; the store must still say 'unavailable'."""
    from btcpred.sim.services import RedisClusterServer

    with RedisClusterServer() as cluster:
        store = RedisFeatureStore(connect(cluster.url, cluster=True, timeout_s=0.5))
        Aggregator(store).apply(batch(1, 2, 100))
        cluster.stop()

        for _ in range(2):
            with pytest.raises(StoreUnavailableError):
                Aggregator(store).apply(batch(3, 2, 102))
