"""Trade ids that contradict time cannot freeze a symbol (issue 11, item 3; the review).

Real Binance ids grow by about 25 a second on BTCUSDT; one corrupt id, low or high, must cost
at most itself and one real trade, never the trades after it. Single node and Redis Cluster.
"""

from __future__ import annotations

import json

from btcpred.aggregator import Aggregator, DecodedRecord, RedisFeatureStore
from btcpred.aggregator.messages import TradeMessage
from btcpred.keys import RedisKeys
from btcpred.redisconn import RedisClient

SHARD = "shardId-000000000001"
T0 = 1_723_161_600_000_000
REAL = 5_000_000_000
Redis = tuple[RedisClient, str, bool]


def trades(*rows: tuple[int, int, float]) -> list[DecodedRecord]:
    """One record per ``(trade id, µs after T0, price)``."""
    return [
        DecodedRecord(
            SHARD,
            100 + i,
            "BTCUSDT",
            [TradeMessage("BTCUSDT", T0 + at, trade_id, price, 0.1, T0 + at)],
        )
        for i, (trade_id, at, price) in enumerate(rows)
    ]


def price(client: RedisClient) -> float:
    raw = client.get(RedisKeys().features_latest("BTCUSDT"))
    assert isinstance(raw, bytes)
    return float(json.loads(raw)["price"])


def test_one_bogus_low_id_costs_only_itself(any_redis: Redis) -> None:
    """Failed before the review fix: the engine restarted its ids at 1, and every real trade
    after it broke the forward-jump bound for about 14 hours."""
    client = any_redis[0]
    aggregator = Aggregator(RedisFeatureStore(client))
    minutes = 60_000_000

    result = aggregator.apply(
        trades(
            (REAL, 0, 61_000.0),
            (REAL + 1, 1_000, 61_001.0),
            (1, 2_000, 1.0),  # corrupt: far below, later time
            *((REAL + 2 + i, (10 + 10 * i) * minutes, 61_010.0 + i) for i in range(5)),
        )
    )

    assert result.implausible_events == {"trade_id_jump": 1}
    assert price(client) == 61_014.0  # every real trade after the bad one was applied


def test_a_huge_first_id_after_a_cold_start_re_anchors_on_the_real_series(
    any_redis: Redis,
) -> None:
    """The corrupt id is the engine's first: the real series re-anchors after one trade."""
    client = any_redis[0]
    aggregator = Aggregator(RedisFeatureStore(client))

    first = aggregator.apply(trades((10**15, 0, 1.0)))
    later = aggregator.apply(
        [
            DecodedRecord(r.shard_id, r.sequence_number + 10, r.partition_key, r.messages)
            for r in trades(*((REAL + i, 1_000 * (i + 1), 61_000.0 + i) for i in range(5)))
        ]
    )

    assert first.events == 1
    assert later.implausible_events == {"trade_id_jump": 1}  # the first real trade re-anchors
    assert price(client) == 61_004.0


def test_redelivered_old_trades_are_duplicates_not_implausible(any_redis: Redis) -> None:
    client = any_redis[0]
    aggregator = Aggregator(RedisFeatureStore(client))
    rows = [(REAL + i, 1_000 * i, 61_000.0 + i) for i in range(5)]
    aggregator.apply(trades(*rows))

    again = aggregator.apply(
        [
            DecodedRecord(r.shard_id, r.sequence_number + 10, r.partition_key, r.messages)
            for r in trades(*rows)  # the same trades under new sequence numbers
        ]
    )

    assert (again.duplicate_events, dict(again.implausible_events)) == (5, {})
    assert price(client) == 61_004.0
