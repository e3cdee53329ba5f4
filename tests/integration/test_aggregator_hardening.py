"""Issue 11 through the real aggregator handler, on a single node and on a Redis Cluster.

Exactly-once under a ParallelizationFactor above 1 (checkpoints per (shard, partition key)),
a failed group beside a committed one, poison and implausible input, unknown symbols and the
REST warm-up budget. References are FeatureEngines fed the same events directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.cluster import RedisCluster

from btcpred.aggregator import (
    Aggregator,
    InvalidEventError,
    RedisFeatureStore,
    StoreUnavailableError,
)
from btcpred.aggregator.store import StoreTransaction
from btcpred.events import BestBidAsk, DepthSnapshot, Event, Trade
from btcpred.features import FeatureEngine
from btcpred.keys import RedisKeys
from btcpred.records import KinesisRecord, pack_records
from btcpred.redisconn import RedisClient, connect, is_cluster
from btcpred.sim.binance_rest import BinanceRestServer, Fault
from btcpred.sim.lambda_events import (
    LocalLambdaContext,
    kinesis_event,
    load_lambda_module,
    sequence_numbers,
    split_by_partition_key,
)
from btcpred.sources.capture import Capture

HANDLER = Path(__file__).resolve().parents[2] / "lambdas" / "aggregator" / "handler.py"
KEYS = RedisKeys()
SHARD = "shardId-000000000000"
Redis = tuple[RedisClient, str, bool]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, any_redis: Redis) -> pytest.MonkeyPatch:
    _, url, cluster = any_redis
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("REDIS_CLUSTER", str(cluster).lower())
    monkeypatch.setenv("WARMUP_FROM_REST", "false")
    monkeypatch.setenv("SYMBOLS", "BTCUSDT,ETHUSDT")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "btcpred")
    return monkeypatch


def handler_module() -> ModuleType:
    return load_lambda_module(HANDLER, "aggregator_handler")


def call(module: ModuleType, event: Any) -> dict[str, Any]:
    response: dict[str, Any] = module.handler(event, LocalLambdaContext())
    return response


@pytest.fixture(scope="module")
def stream(capture: Capture) -> list[Event]:
    return [e for e in capture.events if not isinstance(e, DepthSnapshot)][:3000]


def as_symbol(events: Sequence[Event], symbol: str) -> list[Event]:
    """The same market events under another symbol (a second partition key)."""
    return [msgspec.structs.replace(e, symbol=symbol) for e in events]  # type: ignore[type-var]


def reference(events: Sequence[Event], symbol: str = "BTCUSDT") -> FeatureEngine:
    engine = FeatureEngine(symbol)
    for event in events:
        if isinstance(event, Trade):
            engine.on_trade(event)
        elif isinstance(event, BestBidAsk):
            engine.on_quote(event)
    return engine


def latest(client: RedisClient, symbol: str = "BTCUSDT") -> dict[str, Any]:
    raw = client.get(KEYS.features_latest(symbol))
    assert raw is not None, f"no features for {symbol}"
    doc: dict[str, Any] = json.loads(raw)
    return doc


def expected(events: Sequence[Event], symbol: str = "BTCUSDT") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(reference(events, symbol).snapshot().to_json())
    return doc


def all_keys(client: RedisClient) -> list[bytes]:
    if is_cluster(client):
        return sorted(client.keys("*", target_nodes=RedisCluster.PRIMARIES))  # type: ignore[call-arg]  # cluster-only argument
    return sorted(client.keys("*"))


def interleaved(stream: list[Event]) -> tuple[list[KinesisRecord], list[Event], list[Event]]:
    """Two symbols' records alternating on one shard (small records: many of them)."""
    btc, eth = stream, as_symbol(stream, "ETHUSDT")
    a = pack_records(btc, ingest_ts_ms=0, max_record_bytes=16 * 1024)
    b = pack_records(eth, ingest_ts_ms=0, max_record_bytes=16 * 1024)
    mixed = [r for pair in zip(a, b, strict=True) for r in pair]
    return mixed, btc, eth


def emf(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    return lines[-1]


# -- 1. exactly-once under ParallelizationFactor > 1 ------------------------------------------


def test_parallel_batches_of_one_shard_are_both_fully_applied(
    env: pytest.MonkeyPatch, any_redis: Redis, stream: list[Event]
) -> None:
    """Failed on the old code: one symbol's records were skipped as redeliveries."""
    client = any_redis[0]
    records, btc, eth = interleaved(stream)
    event = kinesis_event(records, sequence_numbers(len(records)))
    batches = split_by_partition_key(event)
    module = handler_module()

    # the ETH batch (higher sequence numbers at its end) commits first, then BTC's
    assert call(module, batches["ETHUSDT"]) == {"batchItemFailures": []}
    assert call(module, batches["BTCUSDT"]) == {"batchItemFailures": []}

    assert latest(client, "BTCUSDT") == expected(btc, "BTCUSDT")
    assert latest(client, "ETHUSDT") == expected(eth, "ETHUSDT")
    last = {
        r.partition_key: s for r, s in zip(records, sequence_numbers(len(records)), strict=True)
    }
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert int(client.get(KEYS.checkpoint(symbol, SHARD)) or 0) == last[symbol]


def test_interleaved_parallel_invocations_chunk_by_chunk(
    env: pytest.MonkeyPatch, any_redis: Redis, stream: list[Event]
) -> None:
    client = any_redis[0]
    records, btc, eth = interleaved(stream)
    event = kinesis_event(records, sequence_numbers(len(records)))
    batches = {k: b["Records"] for k, b in split_by_partition_key(event).items()}
    module = handler_module()

    for i in range(0, len(batches["BTCUSDT"]), 5):  # the two keys' invocations alternate
        for key in ("ETHUSDT", "BTCUSDT"):
            call(module, {"Records": batches[key][i : i + 5]})

    assert latest(client, "BTCUSDT") == expected(btc, "BTCUSDT")
    assert latest(client, "ETHUSDT") == expected(eth, "ETHUSDT")


class FailingFor:
    """The real Redis store, except that ``symbol``'s transaction fails while ``failing``."""

    def __init__(self, store: RedisFeatureStore, symbol: str) -> None:
        self.store, self.symbol, self.failing = store, symbol, True

    def begin(self, symbol: str, shards: Sequence[str]) -> StoreTransaction:
        if self.failing and symbol == self.symbol:
            raise StoreUnavailableError("injected: redis went away for this slot")
        return self.store.begin(symbol, shards)


def test_a_failed_group_is_reported_and_the_retry_applies_everything_once(
    env: pytest.MonkeyPatch, any_redis: Redis, stream: list[Event]
) -> None:
    client, url, cluster = any_redis
    records, btc, eth = interleaved(stream)
    seqs = sequence_numbers(len(records))
    module = handler_module()
    failing = FailingFor(RedisFeatureStore(connect(url, cluster=cluster)), "BTCUSDT")
    module._aggregator = Aggregator(failing, symbols=("BTCUSDT", "ETHUSDT"))

    response = call(module, kinesis_event(records, seqs))

    btc_first = seqs[0]  # records alternate BTC, ETH, ...
    assert response == {"batchItemFailures": [{"itemIdentifier": str(btc_first)}]}
    assert client.get(KEYS.features_latest("BTCUSDT")) is None
    assert latest(client, "ETHUSDT") == expected(eth, "ETHUSDT")
    # Lambda retries from the lowest failed sequence number: everything from there again
    failing.failing = False
    retry = call(module, kinesis_event(records, seqs))
    assert retry == {"batchItemFailures": []}
    assert latest(client, "BTCUSDT") == expected(btc, "BTCUSDT")
    assert latest(client, "ETHUSDT") == expected(eth, "ETHUSDT")
    assert client.llen(KEYS.features_history("ETHUSDT")) == 1  # not re-applied


def test_a_record_naming_another_symbol_is_poison_not_a_cross_slot_transaction(
    env: pytest.MonkeyPatch,
    any_redis: Redis,
    stream: list[Event],
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = any_redis[0]
    good = pack_records(stream[:500], ingest_ts_ms=0)
    eth = pack_records(as_symbol(stream[500:600], "ETHUSDT"), ingest_ts_ms=0)[0]
    misrouted = KinesisRecord("BTCUSDT", eth.data, eth.count)  # ETH messages under BTC's key

    response = call(
        handler_module(), kinesis_event([*good, misrouted], sequence_numbers(len(good) + 1))
    )

    assert response == {"batchItemFailures": []}
    assert latest(client) == expected(stream[:500])
    assert client.get(KEYS.features_latest("ETHUSDT")) is None
    metrics = emf(capsys)
    assert (metrics["MisroutedRecords"], metrics["DecodeFailures"]) == ([1.0], [1.0])


def test_handler_builds_a_cluster_client_when_told(
    env: pytest.MonkeyPatch, any_redis: Redis
) -> None:
    module = handler_module()
    call(module, {"Records": []})

    assert is_cluster(module._aggregator.store.client) is any_redis[2]


# -- 2. poison records never block a shard ----------------------------------------------------


POISON = [
    b'{"message_type":"trade","symbol":"BTC\xff\xfeUSDT","timestamp":1723161600000000,'
    b'"trade_id":1,"price":"1","quantity":"1","is_buyer_maker":true}',  # non-UTF-8
    b'{"message_type":"trade","symbol":"BTCUSDT","timestamp":1723161600000000,'
    b'"trade_id":123456789012345678901234567890,"price":"1","quantity":"1"}',  # > uint64
    b'{"message_type":"trade","symbol":"BTCUSDT","timestamp":1723161600000000,'
    b'"trade_id":-5,"price":"1","quantity":"1"}',
    b'{"message_type":"trade","symbol":"BTCUSDT","timestamp":1723161600000,'  # ms, not us
    b'"trade_id":5,"price":"1","quantity":"1"}',
    b'{"message_type":"bestbidask","symbol":"BTCUSDT","timestamp":1723161600000000000,'  # ns
    b'"bid_price":"1","bid_quantity":"1","ask_price":"2","ask_quantity":"1"}',
    b'{"message_type":"bestbidask","symbol":"BTCUSDT","timestamp":1723161600000000,'
    b'"update_id":18446744073709551616,"bid_price":"1","bid_quantity":"1","ask_price":"2",'
    b'"ask_quantity":"1"}',
    b"[" * 5000,
    b'"\\ud800"',
    b"",
]


@pytest.mark.parametrize("policy", ["skip", "report"])
def test_every_kind_of_poison_is_typed_and_the_rest_applied(
    env: pytest.MonkeyPatch, any_redis: Redis, stream: list[Event], policy: str
) -> None:
    """Failed on the old code: the non-UTF-8 record raised UnicodeDecodeError, the huge ids
    failed engine-state serialisation on every retry."""
    env.setenv("POISON_RECORD_POLICY", policy)
    client = any_redis[0]
    good = pack_records(stream, ingest_ts_ms=0, max_record_bytes=32 * 1024)
    batch: list[KinesisRecord | bytes] = [*good, *POISON] if policy == "skip" else [*POISON, *good]
    seqs = sequence_numbers(len(batch))

    response = call(handler_module(), kinesis_event(batch, seqs))

    if policy == "skip":
        assert response == {"batchItemFailures": []}
        assert latest(client) == expected(stream)
    else:  # reported; the same key's later records wait for the retry
        assert response == {"batchItemFailures": [{"itemIdentifier": str(seqs[0])}]}
        assert client.get(KEYS.features_latest("BTCUSDT")) is None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    garbage=st.lists(
        st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode)), max_size=5
    ),
    key=st.sampled_from(["BTCUSDT", "", "btc{x}", "ETHUSDT"]),
)
def test_garbage_never_raises_and_the_good_records_are_applied(
    env: pytest.MonkeyPatch, any_redis: Redis, stream: list[Event], garbage: list[bytes], key: str
) -> None:
    client = any_redis[0]
    module = handler_module()
    good = pack_records(stream[:400], ingest_ts_ms=0)
    event = kinesis_event(good, sequence_numbers(len(good)))
    poison = kinesis_event(garbage, sequence_numbers(len(garbage), start=1), partition_key=key)
    event["Records"] = poison["Records"] + event["Records"]
    client.delete(
        KEYS.features_latest("BTCUSDT"),
        KEYS.engine_state("BTCUSDT"),
        KEYS.checkpoint("BTCUSDT", SHARD),
    )

    response = call(module, event)

    assert response == {"batchItemFailures": []}
    assert latest(client) == expected(stream[:400])


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "Records",
        {},
        {"Records": None},
        {"Records": [{}]},
        {"Records": [{"kinesis": {"data": "e30="}}]},
    ],
)
def test_a_malformed_event_is_a_typed_error(env: pytest.MonkeyPatch, event: Any) -> None:
    with pytest.raises(InvalidEventError):
        call(handler_module(), event)


def test_an_empty_batch_is_a_no_op(env: pytest.MonkeyPatch, any_redis: Redis) -> None:
    assert call(handler_module(), {"Records": []}) == {"batchItemFailures": []}
    assert all_keys(any_redis[0]) == []


# -- 3. implausible but well-formed input ------------------------------------------------------


def trade_record(trade_id: int, time_us: int, price: str = "61000.00") -> bytes:
    return json.dumps(
        {
            "message_type": "trade",
            "symbol": "BTCUSDT",
            "timestamp": time_us,
            "trade_id": trade_id,
            "price": price,
            "quantity": "0.01",
            "is_buyer_maker": False,
        }
    ).encode()


def test_a_far_future_timestamp_cannot_freeze_the_clock(
    env: pytest.MonkeyPatch,
    any_redis: Redis,
    stream: list[Event],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Failed on the old code: the engine's clock jumped a day ahead and stayed there."""
    client = any_redis[0]
    good = pack_records(stream, ingest_ts_ms=0, max_record_bytes=32 * 1024)
    day_ahead = stream[-1].event_time_us + 86_400_000_000
    last_id = max(e.trade_id for e in stream if isinstance(e, Trade))
    batch: list[KinesisRecord | bytes] = [*good, trade_record(last_id + 1, day_ahead)]
    event = kinesis_event(batch, sequence_numbers(len(batch)))
    arrived = event["Records"][-2]["kinesis"]["approximateArrivalTimestamp"]
    event["Records"][-1]["kinesis"]["approximateArrivalTimestamp"] = arrived  # Kinesis' clock

    call(handler_module(), event)

    assert latest(client) == expected(stream)
    assert emf(capsys)["ImplausibleEvents"] == [1.0]


def test_a_far_past_timestamp_is_dropped(
    env: pytest.MonkeyPatch, any_redis: Redis, stream: list[Event]
) -> None:
    client = any_redis[0]
    good = pack_records(stream, ingest_ts_ms=0, max_record_bytes=32 * 1024)
    week_ago = stream[0].event_time_us - 7 * 86_400_000_000
    batch: list[KinesisRecord | bytes] = [trade_record(1, week_ago), *good]
    arrivals = [stream[0].event_time_us / 1e6, *[None] * len(good)]
    event = kinesis_event(batch, sequence_numbers(len(batch)))
    event["Records"][0]["kinesis"]["approximateArrivalTimestamp"] = arrivals[0]

    call(handler_module(), event)

    assert latest(client) == expected(stream)


def test_a_trade_id_far_beyond_the_last_does_not_drop_later_trades(
    env: pytest.MonkeyPatch, any_redis: Redis, stream: list[Event]
) -> None:
    """Failed on the old code: every later trade was dropped as a duplicate."""
    client = any_redis[0]
    good = pack_records(stream, ingest_ts_ms=0, max_record_bytes=32 * 1024)
    first_trade = next(e for e in stream if isinstance(e, Trade))
    bad = trade_record(first_trade.trade_id + 10**12, first_trade.transact_time_us, "1.00")
    batch: list[KinesisRecord | bytes] = [good[0], bad, *good[1:]]
    module = handler_module()

    call(module, kinesis_event(batch[:2], sequence_numbers(2)))
    call(
        module,
        kinesis_event(batch[2:], sequence_numbers(len(batch) - 2, start=sequence_numbers(3)[2])),
    )

    assert latest(client) == expected(stream)


def test_quotes_without_update_id_keep_updating_spread_and_imbalance(
    env: pytest.MonkeyPatch, any_redis: Redis
) -> None:
    """Failed on the old code: every quote after the first was a "duplicate" of update id 0."""
    client = any_redis[0]
    module = handler_module()
    seen = []
    for i in range(5):
        quote = {
            "message_type": "bestbidask",
            "symbol": "BTCUSDT",
            "timestamp": 1_723_161_600_000_000 + i * 100_000,
            "bid_price": "61000.00",
            "bid_quantity": f"{1 + i}.0",
            "ask_price": f"{61000.01 + i:.2f}",
            "ask_quantity": "1.0",
        }
        call(module, kinesis_event([json.dumps(quote).encode()], [1000 + i]))
        doc = latest(client)
        seen.append((doc["bid_ask_spread"], doc["order_book_imbalance"]))

    assert len(set(seen)) == 5


# -- 4. only the configured symbols; the warm-up budget ------------------------------------------


def test_records_of_an_unknown_symbol_create_no_key_and_call_no_rest(
    env: pytest.MonkeyPatch,
    any_redis: Redis,
    stream: list[Event],
    capsys: pytest.CaptureFixture[str],
    warmup_klines: list[Any],
) -> None:
    client = any_redis[0]
    with BinanceRestServer(warmup_klines) as server:
        env.setenv("WARMUP_FROM_REST", "true")
        env.setenv("BINANCE_REST_URL", server.url)
        env.setenv("SYMBOLS", "ETHUSDT")
        records = pack_records(stream[:500], ingest_ts_ms=0)

        response = call(handler_module(), kinesis_event(records, sequence_numbers(len(records))))
        asked = server.requests.snapshot()

    assert response == {"batchItemFailures": []}
    assert all_keys(client) == []
    assert asked == []
    assert emf(capsys)["UnknownSymbolRecords"] == [float(len(records))]


def test_the_warm_up_budget_starts_the_remaining_symbols_cold(
    env: pytest.MonkeyPatch,
    any_redis: Redis,
    stream: list[Event],
    warmup_klines: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = any_redis[0]
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"]
    records = [r for s in symbols for r in pack_records(as_symbol(stream[:200], s), ingest_ts_ms=0)]
    with BinanceRestServer(warmup_klines) as server:
        server.faults.put(*[Fault.delay(0.6)] * 8)
        env.setenv("WARMUP_FROM_REST", "true")
        env.setenv("BINANCE_REST_URL", server.url)
        env.setenv("REST_TIMEOUT_SECONDS", "2")
        env.setenv("WARMUP_BUDGET_SECONDS", "1.5")
        env.setenv("SYMBOLS", ",".join(symbols))

        response = call(handler_module(), kinesis_event(records, sequence_numbers(len(records))))

    assert response == {"batchItemFailures": []}
    metrics = emf(capsys)
    # a warm-up is 2 requests of 0.6 s: the first two start within 1.5 s, the others cannot
    assert metrics["WarmupSkipped"] == [2.0]
    for symbol in symbols:
        assert latest(client, symbol)["symbol"] == symbol
