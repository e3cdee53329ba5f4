"""The Kinesis producer: records from the buffer, ``PutRecords`` calls, per-entry retries.

- **Records**: one partition key (the symbol) per record, filled from the symbol's queue up to
  1 MiB together with the key (``docs/records.md``); a record holding one message carries the
  bare object, several a JSON array.
- **Calls**: at most 500 records and 5 MiB per ``PutRecords`` call, and **one record per
  partition key per call**, with at most one call in flight per key. A partial failure can then
  never reorder a symbol's records (a later record of the same key cannot land while an earlier
  one is being retried), which the aggregator relies on (trade ids are applied in order).
- **Flushing**: a symbol's record goes out when its oldest message has waited ``flush_window_s``
  or a full record is queued; at once while draining.
- **Retries**: only the entries that failed (``ProvisionedThroughputExceededException``,
  ``InternalFailure``, KMS throttling, anything else with an error code) are sent again, the
  same bytes, after a capped exponential backoff with full jitter per symbol; a call that
  raises is retried the same way. Nothing is ever dropped here: while Kinesis refuses, the
  buffer fills and sheds by its own rules, which record gaps.
- **Counting**: every message in (taken from the buffer) and out (acknowledged), records,
  bytes, calls, failed entries, errors; frame-received → acknowledged latency samples.

The client is anything with boto3's ``put_records(StreamName=..., Records=[...])``; calls run in
a worker thread so the event loop (and the socket reader) never waits on Kinesis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from btcpred.ingest.buffer import KIND_GAP, IngestBuffer, Slot
from btcpred.records import MAX_RECORD_BYTES

__all__ = [
    "MAX_CALL_BYTES",
    "MAX_CALL_RECORDS",
    "KinesisProducer",
    "ProducerStats",
    "PutRecordsClient",
]

log = logging.getLogger("btcpred.ingest.producer")

FULL_MARGIN: Final = 4096
"""A symbol's record is sent at once when this close to the record size limit."""
MAX_CALL_RECORDS: Final = 500
MAX_CALL_BYTES: Final = 5 * 1024 * 1024
"""PutRecords' limits per call: 500 entries, 5 MiB of data and partition keys together."""


class PutRecordsClient(Protocol):
    """The part of a boto3 Kinesis client the producer uses."""

    def put_records(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(slots=True)
class ProducerStats:
    """Counters since start (the metrics emitter takes deltas)."""

    messages_in: int = 0
    messages_out: int = 0
    gaps_out: int = 0
    records_out: int = 0
    bytes_out: int = 0
    put_calls: int = 0
    failed_entries: int = 0
    put_errors: int = 0
    retries: int = 0
    last_ack_ns: int = 0
    max_lag_ms: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    """Frame received → acknowledged, one sample per message (bounded, see ``keep_latencies``)."""


@dataclass(slots=True)
class _Pending:
    symbol: str
    slots: list[Slot]
    data: bytes
    attempt: int = 0
    not_before: float = 0.0


class KinesisProducer:
    """Drains an :class:`IngestBuffer` into one Kinesis stream (see the module docstring)."""

    def __init__(
        self,
        client: PutRecordsClient,
        stream_name: str,
        buffer: IngestBuffer,
        *,
        flush_window_s: float = 0.1,
        max_record_bytes: int = MAX_RECORD_BYTES,
        max_in_flight: int = 4,
        retry_base_s: float = 0.05,
        retry_cap_s: float = 5.0,
        keep_latencies: int = 100_000,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if not 0 < flush_window_s <= 10:
            raise ValueError("flush_window_s must be in (0, 10]")
        self.client = client
        self.stream_name = stream_name
        self.buffer = buffer
        self.flush_window_s = flush_window_s
        self.max_record_bytes = max_record_bytes
        self.max_in_flight = max_in_flight
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.keep_latencies = keep_latencies
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.clock = clock
        self.clock_ns = clock_ns
        self.stats = ProducerStats()
        self._retry: dict[str, _Pending] = {}
        self._busy: set[str] = set()
        self._calls: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._draining = False
        self._stopped = False
        self._executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix="kinesis-put")
        buffer.on_item = self._wake.set
        buffer.wake_bytes = max_record_bytes - FULL_MARGIN

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Send until :meth:`stop`; then return (call :meth:`drain` first to flush)."""
        while not self._stopped:
            delay = self._launch_ready()
            self._wake.clear()
            if delay is None and not self._calls and not self._retry:
                delay = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay or 1.0)

    def _launch_ready(self) -> float | None:
        """Start calls for every symbol that is due; return seconds until the next is due."""
        batch, next_due = self._due_retries()
        next_due = self._due_records(batch, next_due)
        for call in _calls(batch):
            if len(self._calls) >= self.max_in_flight:
                for pending in call:  # not sent this round: keep them first in line
                    self._retry.setdefault(pending.symbol, pending)
                next_due = _earliest(next_due, 0.001)
                continue
            for pending in call:
                self._busy.add(pending.symbol)
                self._retry.pop(pending.symbol, None)
            task = asyncio.create_task(self._put(call))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
        return next_due

    def _due_retries(self) -> tuple[list[_Pending], float | None]:
        now = self.clock()
        batch: list[_Pending] = []
        next_due: float | None = None
        for symbol, pending in list(self._retry.items()):
            if symbol in self._busy:
                continue
            if pending.not_before <= now:
                batch.append(pending)
            else:
                next_due = _earliest(next_due, pending.not_before - now)
        return batch, next_due

    def _due_records(self, batch: list[_Pending], next_due: float | None) -> float | None:
        now_ns = self.clock_ns()
        window_ns = int(self.flush_window_s * 1e9)
        for symbol in self.buffer.symbols():
            oldest = self.buffer.oldest_ns(symbol)
            if symbol in self._busy or symbol in self._retry or oldest is None:
                continue
            full = self.buffer.queued_bytes(symbol) >= self.max_record_bytes - FULL_MARGIN
            waited = now_ns - oldest
            if self._draining or full or waited >= window_ns:
                batch.append(self._new_record(symbol))
            else:
                next_due = _earliest(next_due, (window_ns - waited) / 1e9)
        return next_due

    def _new_record(self, symbol: str) -> _Pending:
        limit = self.max_record_bytes - len(symbol.encode("utf-8"))
        slots = self.buffer.take(symbol, limit)
        self.stats.messages_in += len(slots)
        parts = [s.data for s in slots]
        data = parts[0] if len(parts) == 1 else b"[" + b",".join(parts) + b"]"
        return _Pending(symbol, slots, data)

    async def _put(self, call: list[_Pending]) -> None:
        entries = [{"Data": p.data, "PartitionKey": p.symbol} for p in call]
        self.stats.put_calls += 1
        loop = asyncio.get_running_loop()
        try:
            response = await loop.run_in_executor(self._executor, self._send, entries)
        except Exception as exc:  # noqa: BLE001  # any failure of the call: retry all of it
            self.stats.put_errors += 1
            log.warning("PutRecords of %d records failed, retrying: %s", len(call), exc)
            for pending in call:
                self._again(pending)
        else:
            results = response.get("Records") or []
            for index, pending in enumerate(call):
                result = results[index] if index < len(results) else {"ErrorCode": "Missing"}
                if result.get("ErrorCode"):
                    self.stats.failed_entries += 1
                    if pending.attempt == 0 or pending.attempt % 10 == 0:
                        log.info(
                            "record of %s refused (%s: %s), retrying",
                            pending.symbol,
                            result.get("ErrorCode"),
                            result.get("ErrorMessage", ""),
                        )
                    self._again(pending)
                else:
                    self._acked(pending)
        finally:
            for pending in call:
                self._busy.discard(pending.symbol)
            self._wake.set()

    def _send(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return self.client.put_records(StreamName=self.stream_name, Records=entries)

    def _again(self, pending: _Pending) -> None:
        pending.attempt += 1
        self.stats.retries += 1
        ceiling = min(self.retry_cap_s, self.retry_base_s * 2.0 ** min(pending.attempt, 30))
        pending.not_before = self.clock() + self.rng.uniform(0.0, ceiling)
        self._retry[pending.symbol] = pending

    def _acked(self, pending: _Pending) -> None:
        stats = self.stats
        now_ns = self.clock_ns()
        stats.records_out += 1
        stats.bytes_out += len(pending.data) + len(pending.symbol)
        stats.last_ack_ns = now_ns
        newest_us = 0
        gaps = 0
        slots = pending.slots
        for slot in slots:
            if slot.kind == KIND_GAP:
                gaps += 1
            elif slot.event_us > newest_us:
                newest_us = slot.event_us
        stats.gaps_out += gaps
        stats.messages_out += len(slots) - gaps
        if len(stats.latencies_ns) < self.keep_latencies:
            stats.latencies_ns.extend([now_ns - s.recv_ns for s in slots if s.recv_ns])
        if newest_us:
            lag_ms = (now_ns // 1000 - newest_us) / 1000
            stats.max_lag_ms = max(stats.max_lag_ms, lag_ms)

    # -- shutdown --------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing queued, in flight or waiting for a retry."""
        return not self._calls and not self._retry and not self.buffer.symbols()

    async def drain(self, timeout_s: float) -> int:
        """Send everything queued now, ignoring the flush window, for at most ``timeout_s``.

        Returns the number of messages that could not be sent (0: all acknowledged); those are
        logged with their id ranges.
        """
        self._draining = True
        self.buffer.flush_gaps()
        self._wake.set()
        deadline = self.clock() + timeout_s
        while not self.idle and self.clock() < deadline:
            self._wake.set()
            await asyncio.sleep(0.01)
        unsent = self._unsent()
        return sum(n for _, n, _, _ in unsent)

    def _unsent(self) -> list[tuple[str, int, int, int]]:
        """(symbol, messages, lowest id, highest id) still unsent, logged."""
        found: list[tuple[str, int, int, int]] = []
        groups: dict[str, list[Slot]] = {}
        for pending in self._retry.values():
            groups.setdefault(pending.symbol, []).extend(pending.slots)
        for symbol, queue in self.buffer.queues.items():
            groups.setdefault(symbol, []).extend(s for s in queue if s.live)
        for symbol, slots in groups.items():
            if not slots:
                continue
            ids = [s.first for s in slots if s.first] or [0]
            found.append((symbol, len(slots), min(ids), max(s.last for s in slots)))
            log.error(
                "not sent before the deadline: %d messages of %s (ids %d..%d)",
                len(slots),
                symbol,
                min(ids),
                max(s.last for s in slots),
            )
        return found

    def stop(self) -> None:
        """End :meth:`run` (after :meth:`drain`) and release the worker threads."""
        self._stopped = True
        self._wake.set()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _earliest(current: float | None, candidate: float) -> float:
    return candidate if current is None else min(current, candidate)


def _calls(batch: list[_Pending]) -> list[list[_Pending]]:
    """Split records into calls within PutRecords' count and size limits."""
    calls: list[list[_Pending]] = []
    current: list[_Pending] = []
    size = 0
    for pending in batch:
        cost = len(pending.data) + len(pending.symbol)
        if current and (len(current) >= MAX_CALL_RECORDS or size + cost > MAX_CALL_BYTES):
            calls.append(current)
            current, size = [], 0
        current.append(pending)
        size += cost
    if current:
        calls.append(current)
    return calls
