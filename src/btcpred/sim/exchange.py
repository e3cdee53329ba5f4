"""A local Binance exchange: SBE and JSON market-data WebSockets and REST depth from a capture.

A real aiohttp server on a loopback port, with its own event loop on a background thread (like
the other simulators in :mod:`btcpred.sim`). One publisher task walks the recorded events in
order, paced by their receive times, and hands each one to every open connection subscribed to
its stream; each connection has its own outbound queue, pings, limits and injectable faults
(:mod:`btcpred.sim.exchange_conn`). ``docs/simulator.md`` describes what it speaks and what it
does not model. Sample::

    with ExchangeSimulator(capture.events, speed=0) as sim:
        ...  # connect to f"{sim.url}/stream?streams=btcusdt@trade/btcusdt@depth"
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeVar

import orjson
from aiohttp import web

from btcpred.events import DepthDiff, DepthSnapshot, Event, Level
from btcpred.sbe import encode_event
from btcpred.sim.exchange_conn import Connection, ConnectionSettings
from btcpred.sim.exchange_model import (
    ConnectionInfo,
    Fault,
    FaultKind,
    LapShift,
    OrderBook,
    PublishedLedger,
    StreamName,
    depth_answer,
    json_payload,
    parse_stream,
    stream_kind,
)
from btcpred.sim.services import Service, ServiceError

__all__ = ["ConnectionInfo", "ExchangeSimulator", "Fault", "FaultKind", "PublishedLedger"]

_T = TypeVar("_T")
_NO_KEY = {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
_TOO_MANY = {"code": -1003, "msg": "Too many connection attempts; try again later."}
_YIELD_EVERY = 16  # at speed 0 the publisher lets the writers run every this many events


def _json_error(status: int, body: dict[str, object]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class ExchangeSimulator(Service):
    """Binance spot market data served from recorded events (see the module docstring).

    Parameters beyond the documented interface: ``max_connection_attempts`` and
    ``attempt_window_s`` (Binance: 300 per 300 s) and ``close_timeout_s``, how long a server
    close waits for the client's close frame before dropping the connection.
    """

    def __init__(
        self,
        events: Sequence[Event],
        *,
        speed: float = 1.0,
        loop: bool = False,
        require_api_key: bool = True,
        lifetime_s: float = 86_400.0,
        ping_interval_s: float = 20.0,
        pong_timeout_s: float = 60.0,
        max_client_messages_per_s: int = 5,
        max_queue_frames: int = 10_000,
        backpressure: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        paused: bool = False,
        checkpoint_every: int = 200,
        max_connection_attempts: int = 300,
        attempt_window_s: float = 300.0,
        close_timeout_s: float = 2.0,
    ) -> None:
        if not events:
            raise ValueError("events is empty")
        if not speed >= 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self._events = list(events)
        self._speed, self._loop_forever = speed, loop
        self._require_key = require_api_key
        self._settings = ConnectionSettings(
            ping_interval_s,
            pong_timeout_s,
            max_client_messages_per_s,
            max_queue_frames,
            lifetime_s,
            backpressure,
        )
        self.host, self._port = host, port
        self._rng = random.Random(seed)  # noqa: S311 - reproducible test traffic, not secrets
        self._paused = paused
        self._max_attempts, self._window_s = max_connection_attempts, attempt_window_s
        self._close_timeout_s = close_timeout_s
        self.symbols = sorted({e.symbol for e in self._events})
        self._shift = LapShift.of(self._events)
        self._sbe = [encode_event(e) if stream_kind(e) else b"" for e in self._events]
        self._json = [json_payload(e) if stream_kind(e) else b"" for e in self._events]
        first = self._events[0].receive_time_ns
        self._offsets_ns = [max(e.receive_time_ns - first, 0) for e in self._events]
        snapshots: dict[str, DepthSnapshot] = {}
        for e in self._events:
            if isinstance(e, DepthSnapshot):
                snapshots.setdefault(e.symbol, e)
        self._book_lock = threading.Lock()
        self._books = {s: OrderBook(snapshots.get(s), checkpoint_every) for s in self.symbols}
        self._scheduled: dict[int, list[tuple[Fault, int | None]]] = {}
        self._schedule_lock = threading.Lock()
        self.published = PublishedLedger()
        self._conns: dict[int, Connection] = {}
        self._next_id = 0
        self._attempt_times: collections.deque[float] = collections.deque()
        self._attempts = 0
        self._market_ms = self._events[0].event_time_us // 1000
        self._finished = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._resumed: asyncio.Event | None = None
        self._publisher: asyncio.Task[None] | None = None
        self.port = 0

    # -- addresses and state ---------------------------------------------------------------
    @property
    def url(self) -> str:
        """SBE base URL, e.g. ``ws://127.0.0.1:40123`` (``/stream?streams=...``, ``/ws/<s>``)."""
        return f"ws://{self.host}:{self._bound_port()}"

    @property
    def json_url(self) -> str:
        """JSON base URL (``/json/stream?streams=...``, ``/json/ws/<s>``)."""
        return f"{self.url}/json"

    @property
    def rest_url(self) -> str:
        """REST base URL (``GET /api/v3/depth``)."""
        return f"http://{self.host}:{self._bound_port()}"

    def _bound_port(self) -> int:
        if not self.port:
            raise RuntimeError("simulator not started")
        return self.port

    @property
    def connections(self) -> list[ConnectionInfo]:
        """Every accepted connection's record, in order (copies: read again for news)."""
        return self.published.connections

    @property
    def connection_attempts(self) -> int:
        """WebSocket handshakes seen, refused ones included."""
        with self.published.lock:
            return self._attempts

    def depth_book(self, symbol: str) -> tuple[tuple[Level, ...], tuple[Level, ...], int]:
        """The current full book of ``symbol``: bids descending, asks ascending, last update id."""
        with self._book_lock:
            book = self._books[symbol.upper()]
            bids, asks = book.levels()
            return bids, asks, book.last_update_id

    def book_checkpoints(
        self, symbol: str
    ) -> dict[int, tuple[tuple[Level, ...], tuple[Level, ...]]]:
        """The full book after every ``checkpoint_every``-th applied diff, by its last update id."""
        with self._book_lock:
            return dict(self._books[symbol.upper()].checkpoints)

    def wait_finished(self, timeout: float) -> bool:
        """Wait until every event was published (never, with ``loop=True``)."""
        return self._finished.wait(timeout)

    # -- control ---------------------------------------------------------------------------
    def resume(self) -> None:
        """Start publishing (the simulator was constructed with ``paused=True``)."""
        self._paused = False
        if self._loop is not None and self._resumed is not None:
            self._loop.call_soon_threadsafe(self._resumed.set)

    def fault(self, fault: Fault, connection: int | None = None) -> None:
        """Apply ``fault`` now to connection ``connection``, or to every open one.

        Returns once the fault is in effect. Raises ``KeyError`` for a connection not open.
        """
        self._call(self._apply_fault, fault, connection)

    def schedule(self, at_event: int, fault: Fault, connection: int | None = None) -> None:
        """Apply ``fault`` when the publisher is about to publish event index ``at_event``.

        With ``loop=True`` lap ``k`` publishes indexes ``k * len(events) + i``. A fault for a
        connection that is not open by then is dropped.
        """
        with self._schedule_lock:
            self._scheduled.setdefault(at_event, []).append((fault, connection))

    def server_shutdown(self, shape: str = "bare", grace_s: float = 5.0) -> None:
        """Send ``serverShutdown`` to every open connection and close them after ``grace_s``."""
        self.fault(Fault(FaultKind.SERVER_SHUTDOWN, shape=shape, grace_s=grace_s))

    def _apply_fault(self, fault: Fault, connection: int | None) -> None:
        if connection is not None and connection not in self._conns:
            raise KeyError(f"connection {connection} is not open")
        targets = list(self._conns.values()) if connection is None else [self._conns[connection]]
        for conn in targets:
            conn.apply(fault)

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = self._loop
        if loop is None:
            raise RuntimeError("simulator not started")

        async def run() -> _T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=10)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind the port, start the server thread and the publisher, and return ``self``."""
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._startup())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="exchange-simulator", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            self._loop = self._thread = None
            raise ServiceError(f"exchange simulator could not start: {failure[0]}") from failure[0]
        return self

    async def _startup(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v3/depth", self._depth)
        for prefix in ("", "/json"):
            app.router.add_get(f"{prefix}/stream", self._handshake)
            app.router.add_get(f"{prefix}/ws/{{stream}}", self._handshake)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._resumed = asyncio.Event()
        if not self._paused:
            self._resumed.set()
        self._publisher = asyncio.get_running_loop().create_task(self._publish())

    def stop(self) -> None:
        """Close every connection (1001), stop the server and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=15)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            self._loop = self._thread = None

    async def _shutdown(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
        conns = list(self._conns.values())
        for conn in conns:
            conn.close(1001, "server stopping")
        waits = [asyncio.create_task(c.closed.wait()) for c in conns]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=self._close_timeout_s + 1)
            for task in pending:
                task.cancel()
        for conn in conns:
            conn.abort("server stopped")
        if self._runner is not None:
            await self._runner.cleanup()

    # -- publisher -------------------------------------------------------------------------
    async def _publish(self) -> None:
        assert self._resumed is not None  # noqa: S101 - set by _startup before this task
        await self._resumed.wait()
        loop = asyncio.get_running_loop()
        start, count = loop.time(), len(self._events)
        lap_ns = self._shift.time_us * 1000
        index = 0
        while self._loop_forever or index < count:
            lap, i = divmod(index, count)
            if self._speed > 0:
                due = start + (self._offsets_ns[i] + lap * lap_ns) / 1e9 / self._speed
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
            elif index % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            self._fire_scheduled(index)
            await self._publish_one(lap, i)
            index += 1
        self._finished.set()

    def _fire_scheduled(self, index: int) -> None:
        with self._schedule_lock:
            due = self._scheduled.pop(index, [])
        for fault, connection in due:
            try:
                self._apply_fault(fault, connection)
            except KeyError:
                continue  # that connection closed before the fault's time

    async def _publish_one(self, lap: int, i: int) -> None:
        base = self._events[i]
        kind = stream_kind(base)
        if kind is None:
            return  # the REST snapshot the recorder took: the initial book, not a stream event
        event = self._shift.apply(base, lap)
        if lap == 0:
            sbe, payload = self._sbe[i], self._json[i]
        else:
            sbe, payload = encode_event(event), json_payload(event)
        if isinstance(event, DepthDiff):
            with self._book_lock:
                self._books[event.symbol].apply(event)
        self.published.record(event)
        self._market_ms = event.event_time_us // 1000
        for conn in list(self._conns.values()):
            if self._settings.backpressure:
                await conn.wait_space()
            conn.deliver(event.symbol, kind, sbe, payload)

    # -- HTTP ------------------------------------------------------------------------------
    async def _depth(self, request: web.Request) -> web.Response:
        symbol, limit = request.query.get("symbol", ""), request.query.get("limit", "100")
        with self._book_lock:
            status, body = depth_answer(self._books, symbol, limit)
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    def _count_attempt(self) -> bool:
        """Count one handshake; ``False`` if it exceeds the attempt limit of the window."""
        now = time.monotonic()
        with self.published.lock:
            self._attempts += 1
            times = self._attempt_times
            while times and now - times[0] >= self._window_s:
                times.popleft()
            times.append(now)
            return len(times) <= self._max_attempts

    def _streams(self, request: web.Request, fmt: str) -> list[StreamName] | str:
        """The path's streams, or the first name that is not a known stream."""
        single = request.match_info.get("stream")
        names = [single] if single is not None else request.query.get("streams", "").split("/")
        parsed: list[StreamName] = []
        for name in filter(None, names):
            stream = parse_stream(name, fmt, self.symbols)
            if stream is None:
                return name
            parsed.append(stream)
        return parsed

    async def _handshake(self, request: web.Request) -> web.StreamResponse:
        if not self._count_attempt():
            return _json_error(429, _TOO_MANY)
        fmt = "json" if request.path.startswith("/json/") else "sbe"
        streams = self._streams(request, fmt)
        if isinstance(streams, str):
            return _json_error(400, {"code": -1100, "msg": f"Invalid stream name {streams!r}."})
        api_key = request.headers.get("X-MBX-APIKEY") or None
        if fmt == "sbe" and self._require_key and api_key is None:
            return _json_error(400, _NO_KEY)
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=self._close_timeout_s)
        if not ws.can_prepare(request).ok:
            return _json_error(400, {"code": -1000, "msg": "Expected a WebSocket upgrade."})
        conn = self._register(request, ws, fmt, streams, api_key)
        try:
            # registered before the 101 goes out: once a client is connected, faults reach it
            await ws.prepare(request)
            conn.start(streams)
            async for msg in ws:
                conn.on_message(msg)
        finally:
            self._conns.pop(conn.info.id, None)
            await conn.finish()
        return ws

    def _register(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        fmt: str,
        streams: list[StreamName],
        api_key: str | None,
    ) -> Connection:
        conn_id, self._next_id = self._next_id, self._next_id + 1
        names = [s.name for s in streams]
        info = ConnectionInfo(conn_id, request.path_qs, names, fmt, time.time_ns(), api_key)
        self.published.add_connection(info)
        conn = Connection(
            info,
            ws,
            request,
            settings=self._settings,
            rng=self._rng,
            ledger=self.published,
            symbols=self.symbols,
            now_ms=lambda: self._market_ms,
            combined=request.match_info.get("stream") is None,
            close_timeout_s=self._close_timeout_s,
        )
        self._conns[conn_id] = conn
        return conn
