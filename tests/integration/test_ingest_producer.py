"""The Kinesis producer against a real local Kinesis (moto's server): order, limits, retries."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from btcpred.events import Trade
from btcpred.ingest.buffer import KIND_QUOTE, KIND_TRADE, IngestBuffer, Slot
from btcpred.ingest.producer import KinesisProducer
from btcpred.records import event_to_message, unpack_record
from btcpred.sim.kinesis import ThrottlingKinesis, read_stream

T0 = 1_723_161_600_000_000


def trade_slot(symbol: str, trade_id: int, pad: int = 0) -> Slot:
    trade = Trade(
        symbol,
        T0 + trade_id,
        T0 + trade_id,
        trade_id,
        6_100_000_000_000,
        1_000_000 + pad,
        -8,
        -8,
        False,
        1,
    )
    data = orjson.dumps(event_to_message(trade, ingest_ts_ms=T0 // 1000))
    return Slot(symbol, KIND_TRADE, data, 1, T0 + trade_id, trade_id, trade_id)


def make_buffer(max_bytes: int = 64 << 20) -> IngestBuffer:
    return IngestBuffer(max_bytes, lambda gap: b"{}", lambda: 1)


async def run_until_idle(producer: KinesisProducer, timeout_s: float = 20.0) -> int:
    task = asyncio.create_task(producer.run())
    unsent = await producer.drain(timeout_s)
    producer.stop()
    await task
    return unsent


def trade_ids(records: list[Any], symbol: str) -> list[int]:
    ids = []
    for record in records:
        if record.partition_key == symbol:
            ids += [e.trade_id for e in unpack_record(record.data) if isinstance(e, Trade)]
    return ids


def test_every_message_lands_once_in_order_per_symbol(kinesis_stream: tuple[Any, str]) -> None:
    client, name = kinesis_stream
    buffer = make_buffer()
    for i in range(3000):
        buffer.offer(trade_slot("BTCUSDT", 1000 + i))
        buffer.offer(trade_slot("ETHUSDT", 5000 + i))
    producer = KinesisProducer(client, name, buffer, flush_window_s=0.01)
    assert asyncio.run(run_until_idle(producer)) == 0
    records = read_stream(client, name)
    assert trade_ids(records, "BTCUSDT") == list(range(1000, 4000))
    assert trade_ids(records, "ETHUSDT") == list(range(5000, 8000))
    stats = producer.stats
    assert stats.messages_in == stats.messages_out == 6000
    assert stats.records_out == len(records)
    assert stats.bytes_out == sum(len(r.data) + len(r.partition_key) for r in records)


def test_records_respect_the_size_limit_with_the_key(kinesis_stream: tuple[Any, str]) -> None:
    client, name = kinesis_stream
    buffer = make_buffer()
    for i in range(2000):
        buffer.offer(trade_slot("BTCUSDT", 1 + i))
    producer = KinesisProducer(client, name, buffer, flush_window_s=0.01, max_record_bytes=20_000)
    assert asyncio.run(run_until_idle(producer)) == 0
    records = read_stream(client, name)
    assert len(records) > 10
    assert all(len(r.data) + len(r.partition_key) <= 20_000 for r in records)
    assert trade_ids(records, "BTCUSDT") == list(range(1, 2001))


def test_throttled_puts_resend_only_the_failed_entries(kinesis_stream: tuple[Any, str]) -> None:
    client, name = kinesis_stream
    throttled = ThrottlingKinesis(client, fail_share=0.5, seed=7)
    throttled.fail_calls = 2
    buffer = make_buffer()
    symbols = [f"S{n}USDT" for n in range(8)]
    for i in range(400):
        for s in symbols:
            buffer.offer(trade_slot(s, 1 + i))
    producer = KinesisProducer(
        throttled,
        name,
        buffer,
        flush_window_s=0.005,
        max_record_bytes=4000,
        retry_base_s=0.001,
        retry_cap_s=0.01,
        rng=random.Random(1),
    )
    assert asyncio.run(run_until_idle(producer)) == 0
    assert throttled.entries_failed > 20  # throttling really happened
    assert producer.stats.put_errors == 2
    assert producer.stats.failed_entries == throttled.entries_failed
    # every blob was forwarded exactly once: only failed entries were sent again
    assert len(throttled.forwarded) == len(set(throttled.forwarded)) == producer.stats.records_out
    records = read_stream(client, name)
    for s in symbols:
        assert trade_ids(records, s) == list(range(1, 401))  # in order despite the retries


def test_a_full_buffer_sheds_quotes_first_then_records_an_overflow_gap() -> None:
    packed: list[Any] = []
    buffer = IngestBuffer(64 * 1024, lambda gap: (packed.append(gap), b'{"gap":1}')[1], lambda: 5)
    quote = Slot("BTCUSDT", KIND_QUOTE, b"q" * 1000, 1, T0, 1, 1)
    assert buffer.offer(quote)
    trades = [trade_slot("BTCUSDT", 1 + i, pad=i) for i in range(400)]
    kept = [buffer.offer(t) for t in trades]
    assert not quote.live  # the quote went first
    assert buffer.shed_quotes == 1
    first_shed = kept.index(False)
    assert all(kept[:first_shed])
    assert not any(kept[first_shed:])
    assert buffer.bytes <= buffer.max_bytes
    assert buffer.pending_gaps() == [("BTCUSDT", "trade", 1 + first_shed, 400)]
    taken = buffer.take("BTCUSDT", 1 << 20)
    assert len(taken) == first_shed
    assert buffer.offer(trade_slot("BTCUSDT", 401))
    (gap,) = packed
    assert (gap.from_id, gap.to_id, gap.reason) == (1 + first_shed, 400, "overflow")
    after = buffer.take("BTCUSDT", 1 << 20)
    assert after[0].data == b'{"gap":1}'
    assert after[1].first == 401


@pytest.mark.parametrize("share", [1.0])
def test_a_refusing_kinesis_keeps_everything_queued_and_the_drain_reports_it(
    kinesis_stream: tuple[Any, str], share: float
) -> None:
    client, name = kinesis_stream
    throttled = ThrottlingKinesis(client, fail_share=share)
    buffer = make_buffer()
    for i in range(50):
        buffer.offer(trade_slot("BTCUSDT", 1 + i))
    producer = KinesisProducer(
        throttled, name, buffer, flush_window_s=0.005, retry_base_s=0.001, retry_cap_s=0.005
    )
    unsent = asyncio.run(run_until_idle(producer, timeout_s=0.5))
    assert unsent == 50
    assert producer.stats.messages_out == 0
    assert read_stream(client, name) == []
