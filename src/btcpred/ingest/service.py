"""The ingestor: stream connections → decode → sequence → buffer → Kinesis (docs/ingestor.md).

:class:`Ingestor` owns one :class:`~btcpred.ingest.sequence.Sequencer`, one
:class:`~btcpred.ingest.buffer.IngestBuffer` and one
:class:`~btcpred.ingest.producer.KinesisProducer`, and supervises the connections:

- **Reconnects.** A connection that ends (closed, dead, stalled) is replaced after capped
  exponential backoff with full jitter; the backoff resets only once a connection has carried
  data for ``healthy_after_s``; a global limiter caps attempts per window; a refused handshake
  waits ``refused_retry_s`` (or the server's ``Retry-After``). The break is expected as
  ``reconnect``: the first events of the new connection reveal the gap.
- **Rotation.** Before the 24-hour limit (30–60 minutes before, jittered; scaled for shorter
  lifetimes) and at once on ``serverShutdown``, a second connection opens while the first keeps
  delivering. The new one's events wait aside until, for every (symbol, stream), it has
  delivered an event and the old connection has caught up to where the new one starts; then
  the new one becomes primary, its waiting events go through the sequencer (duplicates drop
  out), and the old one is closed. If that does not happen within ``rotation_timeout_s``, or the
  old connection ends first, the switch happens anyway and any missing ids become ``rotation``
  gaps.
- **Depth.** The first diff of a symbol, and every break of its diff chain, starts a
  resynchronisation by Binance's rules: diffs are held, a REST ``/api/v3/depth`` snapshot is
  fetched (again if it is older than the first held diff), published as a ``depth_snapshot``
  record, and the held diffs after it follow. A consumer rebuilds the book from the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

import orjson

from btcpred import sbe
from btcpred.events import BestBidAsk, DepthDiff, DepthSnapshot, Event, Gap, Trade
from btcpred.ingest.buffer import (
    KIND_DEPTH,
    KIND_GAP,
    KIND_QUOTE,
    KIND_SNAPSHOT,
    KIND_TRADE,
    IngestBuffer,
    Slot,
)
from btcpred.ingest.connection import (
    AttemptLimiter,
    Backoff,
    ConnectError,
    HandshakeRefusedError,
    StreamConnection,
    refusal_hint,
)
from btcpred.ingest.depth import DepthFetcher, DepthSync
from btcpred.ingest.fastpath import FastPath
from btcpred.ingest.pack import Packer
from btcpred.ingest.producer import KinesisProducer, PutRecordsClient
from btcpred.ingest.sequence import DEPTH, QUOTE, TRADE, Sequencer, stream_of
from btcpred.ingest.telemetry import Telemetry
from btcpred.records import event_to_message
from btcpred.settings.ingest import IngestSettings, StreamFormat
from btcpred.sources.binance_json import MessageError, parse_message

__all__ = ["DepthFetcher", "IngestStats", "Ingestor"]

log = logging.getLogger("btcpred.ingest")


MAX_STANDBY_EVENTS: Final = 500_000


@dataclass(slots=True)
class IngestStats:
    """Running totals (the metrics take deltas)."""

    frames: int = 0
    events: int = 0
    malformed_frames: int = 0
    reconnects: int = 0
    rotations: int = 0
    connect_attempts: int = 0
    refused_handshakes: int = 0
    depth_resyncs: int = 0
    snapshots_published: int = 0
    last_frame_ns: int = 0


class Ingestor:
    """See the module docstring. ``kinesis`` is a boto3 Kinesis client (or a stand-in);
    ``depth_fetch`` gets REST depth snapshots (None: publish diffs without resynchronising);
    ``fast_path=False`` sends every frame the general way (decode, sequencer, pack), which the
    fused path for quotes and single trades (:mod:`btcpred.ingest.fastpath`) must equal."""

    def __init__(
        self,
        settings: IngestSettings,
        kinesis: PutRecordsClient,
        *,
        api_key: str | None = None,
        depth_fetch: DepthFetcher | None = None,
        rng: random.Random | None = None,
        metrics_out: IO[bytes] | None = None,
        clock: Callable[[], float] = time.monotonic,
        clock_ns: Callable[[], int] = time.time_ns,
        fast_path: bool = True,
    ) -> None:
        self.settings = settings
        self.api_key = api_key or settings.api_key
        self.depth_fetch = depth_fetch
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.clock = clock
        self.clock_ns = clock_ns
        self.source = "sbe" if settings.stream_format is StreamFormat.SBE else "json"
        self.stats = IngestStats()
        self._packer = Packer(self.source)
        self.sequencer = Sequencer()
        self.buffer = IngestBuffer(settings.buffer_bytes, self._pack_gap, clock_ns)
        self._fast = (
            FastPath(self.sequencer, self._packer, self.buffer, clock_ns, self.stats)
            if fast_path
            else None
        )
        """Quotes and single trades straight from the frame (None: always the general path)."""
        self.producer = KinesisProducer(
            kinesis,
            settings.stream_name,
            self.buffer,
            flush_window_s=settings.flush_window_s,
            rng=self.rng,
            clock=clock,
            clock_ns=clock_ns,
        )
        self.backoff = Backoff(settings.backoff_base_s, settings.backoff_cap_s, self.rng)
        self.limiter = AttemptLimiter(
            settings.max_attempts_per_window, settings.attempt_window_s, clock
        )
        self.primary: StreamConnection | None = None
        self.standby: StreamConnection | None = None
        self.connections: list[StreamConnection] = []
        self._readers: dict[int, asyncio.Task[str]] = {}
        self._standby_events: list[Event] = []
        self._standby_first: dict[tuple[str, str], int] = {}
        self._switch_ready = asyncio.Event()
        self._rotate = asyncio.Event()
        self._stop = asyncio.Event()
        self.depth = (
            None
            if depth_fetch is None
            else DepthSync(
                depth_fetch,
                settings.depth_snapshot_limit,
                self._publish_snapshot,
                self._stop,
                self.rng,
            )
        )
        self._expected = {(s, stream) for s in settings.symbols for stream in (TRADE, DEPTH, QUOTE)}
        self._rotate_after = settings.connection_lifetime_s
        self.telemetry = Telemetry(self, metrics_out)
        self.started = asyncio.Event()
        """Set once the first connection is open."""

    # -- running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> int:
        """Ingest until ``stop`` is set (or :meth:`request_stop`); then close the sockets,
        flush within ``flush_deadline_s`` and return the number of messages left unsent."""
        if stop is not None:
            asyncio.get_running_loop().create_task(self._relay(stop))
        tasks = [
            asyncio.create_task(self.producer.run(), name="producer"),
            asyncio.create_task(self._supervise(), name="supervisor"),
            asyncio.create_task(self.telemetry.heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self.telemetry.metrics_loop(), name="metrics"),
        ]
        await self._stop.wait()
        for task in tasks[1:]:
            task.cancel()
        for conn in (self.primary, self.standby):
            if conn is not None:
                await conn.close("stopping")
        for reader in self._readers.values():
            reader.cancel()
        if self.depth is not None:
            self.depth.cancel()
        await asyncio.gather(
            *tasks[1:],
            *self._readers.values(),
            *(self.depth.tasks if self.depth else ()),
            return_exceptions=True,
        )
        held = self.depth.held_count if self.depth else 0
        if held:
            log.warning("%d depth diffs were waiting for a snapshot and are not sent", held)
        unsent = await self.producer.drain(self.settings.flush_deadline_s)
        self.producer.stop()
        await asyncio.gather(tasks[0], return_exceptions=True)
        self._emit_metrics()
        self._write_heartbeat()
        log.info(
            "stopped: %d messages acknowledged, %d unsent",
            self.producer.stats.messages_out,
            unsent,
        )
        return unsent

    def request_stop(self) -> None:
        """Begin the shutdown (thread-unsafe: call from the loop, e.g. a signal handler)."""
        self._stop.set()

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stop.set()

    # -- connections -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        while not self._stop.is_set():
            if self.primary is None:
                conn = await self._open()
                if conn is None:
                    return
                self._make_primary(conn)
                self.started.set()
            outcome = await self._wait_primary()
            if outcome == "ended":
                self._lost_primary()
                await self._sleep(self.backoff.next_delay())
            elif outcome == "rotate":
                await self._rotate_now()

    async def _wait_primary(self) -> str:
        conn = self.primary
        assert conn is not None  # noqa: S101 - _supervise sets it first
        reader = self._readers[conn.number]
        due = self._rotate_after - conn.age_s
        waits: dict[asyncio.Future[Any], str] = {
            asyncio.ensure_future(self._rotate.wait()): "rotate",
            asyncio.ensure_future(self._stop.wait()): "stop",
        }
        try:
            done, _ = await asyncio.wait(
                [reader, *waits], timeout=max(0.0, due), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for future in waits:
                future.cancel()
        if not done:
            log.info("connection %d is %.0f s old: rotating", conn.number, conn.age_s)
            return "rotate"
        if reader in done:
            return "ended"
        return next(waits[f] for f in done if f in waits)

    def _rotation_delay(self) -> float:
        """Seconds after opening to rotate: 30-60 minutes before a 24-hour limit, scaled."""
        lifetime = self.settings.connection_lifetime_s
        return lifetime * (1 - self.rng.uniform(1 / 48, 1 / 24))

    def _make_primary(self, conn: StreamConnection) -> None:
        self.primary = conn
        self._rotate_after = self._rotation_delay()
        if conn.number not in self._readers:
            self._start_reader(conn)

    def _start_reader(self, conn: StreamConnection) -> None:
        task = asyncio.create_task(conn.read(), name=f"connection-{conn.number}")
        self._readers[conn.number] = task
        task.add_done_callback(functools.partial(self._reader_done, conn))

    def _reader_done(self, conn: StreamConnection, task: asyncio.Task[str]) -> None:
        self._readers.pop(conn.number, None)
        if not task.cancelled():
            log.info("connection %d ended: %s", conn.number, conn.end_reason)
        if self.standby is not None and conn in (self.standby, self.primary):
            self._switch_ready.set()  # one side of a rotation ended: switch now

    def _lost_primary(self) -> None:
        conn = self.primary
        self.primary = None
        self.stats.reconnects += 1
        self.sequencer.expect_break("reconnect", set(self._expected))
        log.warning(
            "connection %d lost (%s) after %.1f s; reconnecting",
            conn.number if conn else -1,
            conn.end_reason if conn else "?",
            conn.age_s if conn else 0.0,
        )

    async def _open(self) -> StreamConnection | None:
        """Open a connection, retrying as the policy says; None once stopping."""
        url = self.settings.connect_url()
        while not self._stop.is_set():
            wait = self.limiter.wait_s()
            if wait > 0:
                log.warning("connection attempt cap reached: waiting %.1f s", wait)
                await self._sleep(wait)
                continue
            self.limiter.record()
            self.stats.connect_attempts += 1
            number = self.stats.connect_attempts
            conn = StreamConnection(
                number,
                url,
                self._sink,
                api_key=self.api_key if self.settings.stream_format is StreamFormat.SBE else None,
                text_is_data=self.settings.stream_format is StreamFormat.JSON,
                on_shutdown=self._on_shutdown,
                dead_after_s=self.settings.dead_after_s,
                data_timeout_s=self.settings.data_timeout_s,
                clock_ns=self.clock_ns,
            )
            try:
                await conn.open()
            except HandshakeRefusedError as exc:
                self.stats.refused_handshakes += 1
                delay = exc.retry_after_s or self.settings.refused_retry_s * self.rng.uniform(
                    0.8, 1.2
                )
                log.error(
                    "Binance refused the connection to %s: %s (%s); retrying in %.0f s",
                    self.settings.stream_url,
                    exc,
                    refusal_hint(exc.status),
                    delay,
                )
                await self._sleep(delay)
                continue
            except ConnectError as exc:
                delay = self.backoff.next_delay()
                log.warning(
                    "cannot connect to %s: %s; retrying in %.2f s",
                    self.settings.stream_url,
                    exc,
                    delay,
                )
                await self._sleep(delay)
                continue
            self.connections.append(conn)
            log.info("connection %d open to %s", number, self.settings.stream_url)
            return conn
        return None

    def _on_shutdown(self, conn: StreamConnection) -> None:
        if conn is self.primary:
            self._rotate.set()

    async def _rotate_now(self) -> None:
        self._rotate.clear()
        old = self.primary
        assert old is not None  # noqa: S101 - only called with a primary
        new = await self._open_standby()
        if new is None:
            return
        try:
            await asyncio.wait_for(self._switch_ready.wait(), self.settings.rotation_timeout_s)
        except TimeoutError:
            log.warning(
                "rotation: no full overlap within %.0f s; switching anyway",
                self.settings.rotation_timeout_s,
            )
        self._switch(old, new)

    async def _open_standby(self) -> StreamConnection | None:
        self._standby_events = []
        self._standby_first = {}
        self._switch_ready.clear()
        new = await self._open()
        if new is None:
            return None
        self.standby = new
        self._start_reader(new)
        return new

    def _switch(self, old: StreamConnection, new: StreamConnection) -> None:
        behind = {key for key in self._expected if key[1] != QUOTE and not self._caught_up(key)}
        if behind:
            self.sequencer.expect_break("rotation", behind)
        self.standby = None
        self.stats.rotations += 1
        if new.end_reason:  # the new one died while waiting: keep the old one or reconnect
            self.primary = old if not old.end_reason else None
            if self.primary is None:
                self.sequencer.expect_break("reconnect", set(self._expected))
        else:
            self._make_primary(new)
        waiting, self._standby_events = self._standby_events, []
        self._process(waiting)
        log.info(
            "rotation: connection %d replaces %d (%d events waited)",
            new.number,
            old.number,
            len(waiting),
        )
        if self.primary is not old:
            asyncio.get_running_loop().create_task(old.close("rotated"))

    def _caught_up(self, key: tuple[str, str]) -> bool:
        first = self._standby_first.get(key)
        if first is None:
            return False
        mark = self.sequencer.mark(*key)
        return mark is not None and mark >= first - 1

    def _check_switch(self) -> None:
        old = self.primary
        if old is not None and old.end_reason:
            self._switch_ready.set()
            return
        for key in self._expected:
            if key not in self._standby_first:
                return
            if key[1] != QUOTE and not self._caught_up(key):
                return
        self._switch_ready.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, seconds))

    # -- frames and events -----------------------------------------------------------------

    def _sink(self, conn: StreamConnection, payload: bytes, binary: bool, recv_ns: int) -> None:
        stats = self.stats
        stats.frames += 1
        stats.last_frame_ns = recv_ns
        fast = self._fast
        if fast is not None and binary and self.standby is None and fast.take(payload, recv_ns):
            if self.backoff.failures and conn.age_s >= self.settings.healthy_after_s:
                self.backoff.reset()
            return
        try:
            events = sbe.decode(payload, recv_ns) if binary else [parse_message(payload, recv_ns)]
        except (sbe.DecodeError, MessageError) as exc:
            stats.malformed_frames += 1
            if stats.malformed_frames <= 10 or stats.malformed_frames % 1000 == 0:
                log.warning(
                    "malformed frame #%d on connection %d skipped: %s (%r)",
                    stats.malformed_frames,
                    conn.number,
                    exc,
                    payload[:32],
                )
            return
        if self.backoff.failures and conn.age_s >= self.settings.healthy_after_s:
            self.backoff.reset()
        if conn is self.standby:
            self._hold_standby(events)
            return
        self._process(events)
        if self.standby is not None:
            self._check_switch()

    def _hold_standby(self, events: list[Event]) -> None:
        for event in events:
            key = (event.symbol, stream_of(event))
            if key not in self._standby_first:
                self._standby_first[key] = _first_id(event)
        self._standby_events.extend(events)
        if len(self._standby_events) > MAX_STANDBY_EVENTS:
            self._switch_ready.set()  # do not hold more: switch now
        else:
            self._check_switch()

    def _process(self, events: Sequence[Event]) -> None:
        check = self.sequencer.check
        depth = self.depth
        for event in events:
            if depth is not None and isinstance(event, DepthDiff) and depth.hold(event):
                continue
            verdict = check(event)
            if not verdict.accept:
                continue
            self.stats.events += 1
            if verdict.gap is not None:
                self._offer_gap(verdict.gap)
            if (
                depth is not None
                and isinstance(event, DepthDiff)
                and (verdict.gap is not None or event.symbol not in depth.synced)
            ):
                depth.start(event.symbol, event)
                self.stats.depth_resyncs = depth.started
                continue
            self._offer(event)

    def _offer(self, event: Event) -> None:
        data = self._packer.pack(event, self.clock_ns() // 1_000_000)
        kind, first, last = _kind_and_ids(event)
        slot = Slot(
            event.symbol, kind, data, event.receive_time_ns, event.event_time_us, first, last
        )
        self.buffer.offer(slot)
        if self.buffer.resync_needed:
            for symbol in list(self.buffer.resync_needed):
                self.buffer.resync_needed.discard(symbol)
                if self.depth is not None:
                    self.depth.synced.discard(symbol)

    def _offer_gap(self, gap: Gap) -> None:
        log.warning(
            "gap: %s %s ids %d..%d (%d) missing: %s",
            gap.symbol,
            gap.stream,
            gap.from_id,
            gap.to_id,
            gap.size,
            gap.reason,
        )
        data = self._pack_gap(gap)
        self.buffer.offer(
            Slot(
                gap.symbol,
                KIND_GAP,
                data,
                gap.receive_time_ns,
                gap.event_time_us,
                gap.from_id,
                gap.to_id,
            )
        )

    def _pack_gap(self, gap: Gap) -> bytes:
        now_ms = self.clock_ns() // 1_000_000
        return orjson.dumps(event_to_message(gap, ingest_ts_ms=now_ms, source=self.source))

    # -- depth resynchronisation -----------------------------------------------------------

    def _publish_snapshot(
        self, symbol: str, snapshot: DepthSnapshot, held: list[DepthDiff]
    ) -> None:
        self.sequencer.reset_depth(symbol, snapshot.last_update_id)
        self.stats.snapshots_published += 1
        self._offer(snapshot)
        log.info(
            "depth of %s synchronised at update id %d (%d diffs held)",
            symbol,
            snapshot.last_update_id,
            len(held),
        )
        self._process(held)

    # -- heartbeat and metrics (btcpred.ingest.telemetry) ------------------------------------

    def totals(self) -> dict[str, float]:
        """The running totals behind the metrics."""
        return self.telemetry.totals()

    def _emit_metrics(self) -> None:
        self.telemetry.emit_metrics()

    def _write_heartbeat(self) -> None:
        self.telemetry.write_heartbeat()


def _kind_and_ids(event: Event) -> tuple[int, int, int]:
    """The buffer kind of an event and the first and last id it carries."""
    if isinstance(event, Trade):
        return KIND_TRADE, event.trade_id, event.trade_id
    if isinstance(event, BestBidAsk):
        return KIND_QUOTE, event.update_id, event.update_id
    if isinstance(event, DepthDiff):
        return KIND_DEPTH, event.first_update_id, event.last_update_id
    return KIND_SNAPSHOT, event.last_update_id, event.last_update_id


def _first_id(event: Event) -> int:
    return _kind_and_ids(event)[1]
