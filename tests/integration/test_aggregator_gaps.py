"""The ingestor's ``gap`` messages reach the aggregator: counted, never poison, never applied."""

from __future__ import annotations

from btcpred.aggregator import Aggregator, RedisFeatureStore
from btcpred.aggregator.messages import GapMessage, TradeMessage
from btcpred.events import Gap, Trade
from btcpred.keys import RedisKeys
from btcpred.records import pack_records
from btcpred.redisconn import RedisClient, connect
from btcpred.settings.aggregator import PoisonPolicy

SHARD = "shardId-000000000000"
T0 = 1_723_161_600_000_000
Redis = tuple[RedisClient, str, bool]


def _trade(trade_id: int, offset_us: int) -> Trade:
    return Trade(
        "BTCUSDT",
        T0 + offset_us,
        T0 + offset_us,
        trade_id,
        6_100_000_000_000,
        1_000_000,
        -8,
        -8,
        False,
    )


def test_a_record_mixing_trades_and_a_gap_applies_the_trades_and_counts_the_gap(
    any_redis: Redis,
) -> None:
    _, url, cluster = any_redis
    store = RedisFeatureStore(connect(url, cluster=cluster, timeout_s=2.0), RedisKeys())
    aggregator = Aggregator(store, poison_policy=PoisonPolicy.REPORT)
    items = [
        _trade(100, 0),
        Gap("BTCUSDT", T0 + 2000, "trade", 101, 104, "reconnect"),
        _trade(105, 2000),
    ]
    (record,) = pack_records(items, ingest_ts_ms=T0 // 1000)
    decoded = aggregator.decode(SHARD, 1, record.data, record.partition_key)
    assert [type(m) for m in decoded.messages] == [TradeMessage, GapMessage, TradeMessage]
    result = aggregator.apply([decoded])
    assert (result.poison_records, result.events, result.gap_messages, result.gap_ids) == (
        0,
        2,
        1,
        4,
    )
    assert result.snapshots["BTCUSDT"].price == 61_000.0


def test_a_record_of_gaps_only_commits_its_checkpoint_and_writes_no_features(
    any_redis: Redis,
) -> None:
    client, url, cluster = any_redis
    store = RedisFeatureStore(connect(url, cluster=cluster, timeout_s=2.0), RedisKeys())
    aggregator = Aggregator(store, poison_policy=PoisonPolicy.REPORT)
    (record,) = pack_records(
        [Gap("BTCUSDT", T0, "depth", 7, 7, "sequence")], ingest_ts_ms=T0 // 1000
    )
    decoded = aggregator.decode(SHARD, 5, record.data, record.partition_key)
    result = aggregator.apply([decoded])
    assert (result.gap_messages, result.gap_ids, result.events) == (1, 1, 0)
    assert client.get(RedisKeys().features_latest("BTCUSDT")) is None
    again = aggregator.apply([aggregator.decode(SHARD, 5, record.data, record.partition_key)])
    assert again.skipped_records == 1  # the checkpoint was committed
