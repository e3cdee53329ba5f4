"""The aggregator Lambda handler end to end: Lambda-shaped Kinesis events, real Redis.

The reference for every comparison is a FeatureEngine fed the same events directly (no records,
no Redis, no handler), so the tests check the handler's plumbing and its exactly-once effect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest

from btcpred.aggregator import FeatureStoreError
from btcpred.events import BestBidAsk, DepthSnapshot, Event, Trade
from btcpred.features import FeatureEngine
from btcpred.keys import RedisKeys
from btcpred.klines import Kline
from btcpred.records import KinesisRecord, pack_records
from btcpred.redisconn import RedisClient
from btcpred.sim.binance_rest import BinanceRestServer
from btcpred.sim.lambda_events import (
    LocalLambdaContext,
    kinesis_event,
    load_lambda_module,
    sequence_numbers,
)
from btcpred.sim.services import free_port
from btcpred.sources.capture import Capture

HANDLER = Path(__file__).resolve().parents[2] / "lambdas" / "aggregator" / "handler.py"
SYMBOL = "BTCUSDT"
SHARD = "shardId-000000000000"
KEYS = RedisKeys()


def load_handler() -> ModuleType:
    """A fresh import of the handler module: a Lambda cold start."""
    return load_lambda_module(HANDLER, "aggregator_handler")


@pytest.fixture
def db(any_redis: tuple[RedisClient, str, bool]) -> RedisClient:
    """The emptied single node, then the emptied cluster: every test here runs on both."""
    return any_redis[0]


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, any_redis: tuple[RedisClient, str, bool]
) -> pytest.MonkeyPatch:
    _, url, cluster = any_redis
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("REDIS_CLUSTER", str(cluster).lower())
    monkeypatch.setenv("WARMUP_FROM_REST", "false")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "btcpred")
    return monkeypatch


@pytest.fixture(scope="module")
def stream(capture: Capture) -> list[Event]:
    """The capture's first 4,000 stream events (the REST depth snapshot left out)."""
    return [e for e in capture.events if not isinstance(e, DepthSnapshot)][:4000]


@pytest.fixture
def records(stream: list[Event]) -> list[KinesisRecord]:
    """The stream packed into ~32 KiB records (several dozen records)."""
    return pack_records(stream, ingest_ts_ms=0, max_record_bytes=32 * 1024)


def events_of(stream: list[Event], records: Sequence[KinesisRecord], upto: int) -> list[Event]:
    """The events carried by ``records[:upto]`` (records hold consecutive events in order)."""
    return stream[: sum(r.count for r in records[:upto])]


def reference(events: Sequence[Event]) -> FeatureEngine:
    engine = FeatureEngine(SYMBOL)
    for event in events:
        if isinstance(event, Trade):
            engine.on_trade(event)
        elif isinstance(event, BestBidAsk):
            engine.on_quote(event)
    return engine


def latest(client: RedisClient) -> dict[str, Any]:
    raw = client.get(KEYS.features_latest(SYMBOL))
    assert raw is not None
    doc: dict[str, Any] = json.loads(raw)
    return doc


def state(client: RedisClient) -> bytes:
    raw = client.get(KEYS.engine_state(SYMBOL))
    assert isinstance(raw, bytes)
    return raw


Invoke = Callable[[Sequence[KinesisRecord | bytes], Sequence[int]], dict[str, Any]]


@pytest.fixture
def invoke(env: pytest.MonkeyPatch) -> Invoke:
    module = load_handler()

    def call(batch: Sequence[KinesisRecord | bytes], seqs: Sequence[int]) -> dict[str, Any]:
        response: dict[str, Any] = module.handler(kinesis_event(batch, seqs), LocalLambdaContext())
        return response

    return call


def test_batch_writes_features_history_state_and_sequence(
    invoke: Invoke, db: RedisClient, stream: list[Event], records: list[KinesisRecord]
) -> None:
    seqs = sequence_numbers(len(records))

    response = invoke(records, seqs)

    assert response == {"batchItemFailures": []}
    expected = reference(events_of(stream, records, len(records))).snapshot()
    assert latest(db) == json.loads(expected.to_json())
    assert db.llen(KEYS.features_history(SYMBOL)) == 1
    assert int(db.get(KEYS.checkpoint(SYMBOL, SHARD)) or 0) == seqs[-1]
    for key in (KEYS.features_latest(SYMBOL), KEYS.features_history(SYMBOL)):
        assert 0 < db.ttl(key) <= 300
    assert 0 < db.ttl(KEYS.engine_state(SYMBOL)) <= 86_400


def test_history_keeps_the_last_ten_newest_first(
    invoke: Invoke, db: RedisClient, records: list[KinesisRecord]
) -> None:
    seqs = sequence_numbers(len(records))

    for i in range(12):
        invoke(records[i : i + 1], seqs[i : i + 1])

    history = [json.loads(d) for d in db.lrange(KEYS.features_history(SYMBOL), 0, -1)]
    assert len(history) == 10
    assert history[0] == latest(db)
    stamps = [d["timestamp"] for d in history]
    assert stamps == sorted(stamps, reverse=True)


def test_redelivered_batch_changes_nothing(
    invoke: Invoke, db: RedisClient, records: list[KinesisRecord]
) -> None:
    seqs = sequence_numbers(len(records))
    invoke(records, seqs)
    before = (latest(db), state(db))

    response = invoke(records, seqs)

    assert response == {"batchItemFailures": []}
    assert (latest(db), state(db)) == before
    assert db.llen(KEYS.features_history(SYMBOL)) == 1


def test_overlapping_tail_is_applied_once(
    invoke: Invoke, db: RedisClient, stream: list[Event], records: list[KinesisRecord]
) -> None:
    seqs = sequence_numbers(len(records))
    invoke(records[:25], seqs[:25])

    invoke(records[15:], seqs[15:])

    engine = reference(events_of(stream, records, len(records)))
    assert latest(db) == json.loads(engine.snapshot().to_json())
    assert state(db) == engine.state()


def test_trades_resent_under_new_sequence_numbers_are_not_double_counted(
    invoke: Invoke, db: RedisClient, stream: list[Event], records: list[KinesisRecord]
) -> None:
    seqs = sequence_numbers(len(records) + 10)
    invoke(records[:20], seqs[:20])

    # an ingestor restart re-sends records 10..19 as new records, then carries on
    invoke([*records[10:20], *records[20:]], seqs[20 : 20 + len(records) - 10])

    expected = reference(events_of(stream, records, len(records))).snapshot()
    assert latest(db) == json.loads(expected.to_json())


def test_poison_record_is_skipped_and_the_rest_applied(
    invoke: Invoke,
    db: RedisClient,
    stream: list[Event],
    records: list[KinesisRecord],
    capsys: pytest.CaptureFixture[str],
) -> None:
    batch: list[KinesisRecord | bytes] = [*records[:10], b"\x00\x01 not json", *records[10:20]]
    seqs = sequence_numbers(len(batch))

    response = invoke(batch, seqs)

    assert response == {"batchItemFailures": []}
    expected = reference(events_of(stream, records, 20)).snapshot()
    assert latest(db) == json.loads(expected.to_json())
    assert int(db.get(KEYS.checkpoint(SYMBOL, SHARD)) or 0) == seqs[-1]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert emf[-1]["DecodeFailures"] == [1.0]


def test_poison_record_reported_holds_back_its_shard_tail(
    env: pytest.MonkeyPatch,
    db: RedisClient,
    stream: list[Event],
    records: list[KinesisRecord],
) -> None:
    env.setenv("POISON_RECORD_POLICY", "report")
    module = load_handler()
    batch: list[KinesisRecord | bytes] = [
        *records[:10],
        b'{"message_type":"trade","symbol":"BTCUSDT"}',
        *records[10:20],
    ]
    seqs = sequence_numbers(len(batch))

    response = module.handler(kinesis_event(batch, seqs), LocalLambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": str(seqs[10])}]}
    expected = reference(events_of(stream, records, 10)).snapshot()
    assert latest(db) == json.loads(expected.to_json())
    assert int(db.get(KEYS.checkpoint(SYMBOL, SHARD)) or 0) == seqs[9]


def test_cold_start_resumes_from_redis_state(
    env: pytest.MonkeyPatch,
    db: RedisClient,
    stream: list[Event],
    records: list[KinesisRecord],
) -> None:
    seqs = sequence_numbers(len(records))
    load_handler().handler(kinesis_event(records[:20], seqs[:20]), LocalLambdaContext())

    cold = load_handler()
    cold.handler(kinesis_event(records[20:], seqs[20:]), LocalLambdaContext())

    engine = reference(events_of(stream, records, len(records)))
    assert latest(db) == json.loads(engine.snapshot().to_json())
    assert state(db) == engine.state()


def _five_minute_bars(klines: Sequence[Kline]) -> list[Kline]:
    """5-minute bars from complete groups of five 1-minute klines (test-side aggregation)."""
    groups: dict[int, list[Kline]] = {}
    for k in klines:
        groups.setdefault(k.open_time_ms // 300_000, []).append(k)
    return [
        Kline(
            g[0].open_time_ms,
            g[0].open_time_ms + 299_999,
            g[0].open,
            max(k.high for k in g),
            min(k.low for k in g),
            g[-1].close,
            sum(k.volume for k in g),
        )
        for g in groups.values()
        if len(g) == 5
    ]


def test_cold_start_with_empty_redis_warms_from_rest(
    env: pytest.MonkeyPatch,
    db: RedisClient,
    stream: list[Event],
    records: list[KinesisRecord],
    warmup_klines: list[Kline],
) -> None:
    first_ms = stream[0].event_time_us // 1000
    history = [k for k in warmup_klines if k.close_time_ms < first_ms]
    with BinanceRestServer(history) as server:
        env.setenv("WARMUP_FROM_REST", "true")
        env.setenv("BINANCE_REST_URL", server.url)
        seqs = sequence_numbers(len(records))

        load_handler().handler(kinesis_event(records, seqs), LocalLambdaContext())
        asked = {q.get("interval") for path, q in server.requests.snapshot() if "klines" in path}

    minute = first_ms - first_ms % 60_000
    long_bars = [
        k for k in _five_minute_bars(history) if k.close_time_ms < minute - minute % 300_000
    ]
    # The simulator serves a 6-column source's quote volume as volume * close (8 decimals) and
    # its trade count as 0 (docs/rest.md); the reference gets the same numbers.
    short_bars = [
        msgspec.structs.replace(k, quote_volume=float(f"{k.volume * k.close:.8f}"), trades=0)
        for k in history
        if k.close_time_ms < minute
    ]
    engine = FeatureEngine(SYMBOL)
    engine.warm_up(long_bars[-60:], short_bars[-120:])
    for event in events_of(stream, records, len(records)):
        if isinstance(event, Trade):
            engine.on_trade(event)
        elif isinstance(event, BestBidAsk):
            engine.on_quote(event)
    doc = latest(db)
    assert asked == {"1m", "5m"}
    assert all(doc["warm"][name] for name in ("rsi_5m", "macd_signal", "bollinger_position"))
    assert doc == json.loads(engine.snapshot().to_json())


def test_redis_unreachable_fails_the_whole_batch(
    env: pytest.MonkeyPatch, records: list[KinesisRecord]
) -> None:
    env.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    module = load_handler()

    with pytest.raises(FeatureStoreError):
        module.handler(kinesis_event(records[:5], sequence_numbers(5)), LocalLambdaContext())


def test_bad_setting_fails_at_start_naming_the_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("FEATURES_TTL_SECONDS", "soon")
    module = load_handler()

    with pytest.raises(ValueError, match="FEATURES_TTL_SECONDS"):
        module.handler(kinesis_event([], []), LocalLambdaContext())
