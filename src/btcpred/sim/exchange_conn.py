"""One WebSocket connection of the exchange simulator: its queues, pings, limits and faults.

All of it runs on the simulator's event loop; the publisher calls :meth:`Connection.deliver`,
the handler feeds it the client's messages. Only :class:`ConnectionInfo` fields are read from
other threads (under the ledger's lock).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from btcpred.sim.exchange_model import (
    ConnectionInfo,
    Fault,
    FaultKind,
    PublishedLedger,
    StreamKind,
    StreamName,
    parse_stream,
)

__all__ = ["Connection", "ConnectionSettings"]

# Garbage for MALFORMED: an SBE trades header promising an 18-byte root block followed by 3
# bytes (truncated), an unknown template id (9999), and a JSON message cut in the middle.
_TRUNCATED_SBE = bytes.fromhex("1200102701000000") + b"\x00\x01\x02"
_UNKNOWN_TEMPLATE = bytes.fromhex("10000f2701000000")
_TRUNCATED_JSON = b'{"e":"trade","E":17231612'


@dataclass(frozen=True)
class ConnectionSettings:
    """The per-connection limits, all in seconds or frames."""

    ping_interval_s: float
    pong_timeout_s: float
    max_client_messages_per_s: int
    max_queue_frames: int
    lifetime_s: float
    backpressure: bool


class Connection:
    """The server side of one accepted WebSocket."""

    def __init__(
        self,
        info: ConnectionInfo,
        ws: web.WebSocketResponse,
        request: web.Request,
        *,
        settings: ConnectionSettings,
        rng: random.Random,
        ledger: PublishedLedger,
        symbols: Iterable[str],
        now_ms: Callable[[], int],
        combined: bool,
        close_timeout_s: float,
    ) -> None:
        self.info = info
        self.ws = ws
        self._transport = request.transport
        self.combined = combined
        self._settings = settings
        self._rng = rng
        self._lock = ledger.lock
        self._symbols = frozenset(symbols)
        self._now_ms = now_ms
        self.subscriptions: dict[str, StreamName] = {}
        self._data: collections.deque[bytes] = collections.deque()
        self._pings: collections.deque[tuple[WSMsgType, bytes]] = collections.deque()
        self._control: collections.deque[bytes] = collections.deque()
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self.closing = False
        self._stall_until = 0.0
        self._stall_pings = True
        self._skip = {StreamKind.TRADE: 0, StreamKind.DEPTH: 0}
        self._duplicate = 0
        self._reorder = False
        self._held: list[bytes] | None = None
        self._pending_pings: dict[bytes, float] = {}
        self._client_times: collections.deque[float] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closer: asyncio.Task[None] | None = None
        self._close_timeout_s = close_timeout_s
        self.closed = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, streams: Iterable[StreamName]) -> None:
        """Subscribe to the path's streams and start the writer, pinger and lifetime tasks."""
        for stream in streams:
            self.subscriptions[stream.name] = stream
        self._spawn(self._writer())
        self._spawn(self._pinger())
        self._spawn(self._lifetime())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _update(self, **fields: object) -> None:
        with self._lock:
            for name, value in fields.items():
                setattr(self.info, name, value)

    def _bump(self, name: str) -> None:
        with self._lock:
            setattr(self.info, name, getattr(self.info, name) + 1)

    async def finish(self) -> None:
        """After the client's side ended: stop every task and record the close."""
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._closer is not None:
            await asyncio.gather(self._closer, return_exceptions=True)
        if self.info.close_code is None and not self.closing:
            self._update(close_code=self.ws.close_code, close_reason="closed by the client")
        self._update(closed_ns=time.time_ns())
        self.closing = True
        self._space.set()
        self.closed.set()

    def close(self, code: int, reason: str) -> None:
        """Close with a close frame (once); later data is dropped."""
        if self.closing:
            return
        self.closing = True
        self._update(close_code=code, close_reason=reason)
        self._data.clear()
        self._space.set()
        self._closer = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        # ws.close waits for the client's close frame (and first for the socket to drain,
        # forever with a client that stopped reading): bounded, then the socket is dropped.
        try:
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode()), self._close_timeout_s
            )
        except (ConnectionError, RuntimeError, TimeoutError):
            if self._transport is not None:
                self._transport.abort()

    def abort(self, reason: str = "aborted") -> None:
        """Drop the TCP connection without a close frame."""
        if not self.closing:
            self.closing = True
            self._update(close_code=None, close_reason=reason)
        self._space.set()
        if self._transport is not None:
            self._transport.abort()

    # -- outbound --------------------------------------------------------------------------
    def _stalled(self) -> bool:
        return time.monotonic() < self._stall_until

    def deliver(self, symbol: str, kind: StreamKind, sbe: bytes, payload: bytes) -> None:
        """Queue one published event for every subscribed stream it belongs to."""
        for stream in self.subscriptions.values():
            if stream.symbol != symbol or stream.kind is not kind:
                continue
            if self.info.fmt == "sbe":
                self._offer(kind, sbe)
            elif self.combined:
                name = orjson.dumps(stream.name)
                self._offer(kind, b'{"stream":' + name + b',"data":' + payload + b"}")
            else:
                self._offer(kind, payload)

    def _offer(self, kind: StreamKind, frame: bytes) -> None:
        if self.closing:
            return
        if self._skip.get(kind, 0) > 0:
            self._skip[kind] -= 1
            return
        if self._stalled():
            return
        frames = [frame]
        if self._duplicate > 0:
            self._duplicate -= 1
            frames.append(frame)
        if self._reorder:
            if self._held is None:
                self._held = frames
                return
            frames += self._held
            self._held, self._reorder = None, False
        self._queue_data(frames)

    def _queue_data(self, frames: Iterable[bytes]) -> None:
        self._data.extend(frames)
        self._wake.set()
        if len(self._data) >= self._settings.max_queue_frames:
            self._space.clear()
            if (
                len(self._data) > self._settings.max_queue_frames
                and not self._settings.backpressure
            ):
                self.close(1008, "slow consumer")

    async def wait_space(self) -> None:
        """With backpressure: wait until this connection's queue is below its limit."""
        while len(self._data) >= self._settings.max_queue_frames and not self.closing:
            self._space.clear()
            await self._space.wait()

    async def _writer(self) -> None:
        binary = WSMsgType.BINARY if self.info.fmt == "sbe" else WSMsgType.TEXT
        try:
            while not self.ws.closed:
                await self._wake.wait()
                self._wake.clear()
                await self._drain(binary)
        except (ConnectionError, RuntimeError):
            self.abort("send failed")

    async def _drain(self, binary: WSMsgType) -> None:
        while not self.ws.closed:
            stalled = self._stalled()
            if self._pings and (self._stall_pings or not stalled):
                opcode, payload = self._pings.popleft()
                await self.ws.send_frame(payload, opcode)
                if opcode is WSMsgType.PING:
                    self._bump("pings_sent")
            elif stalled:
                return
            elif self._control:
                await self.ws.send_frame(self._control.popleft(), WSMsgType.TEXT)
            elif self._data:
                await self.ws.send_frame(self._data.popleft(), binary)
                self._bump("frames_sent")
                if len(self._data) < self._settings.max_queue_frames:
                    self._space.set()
            else:
                return

    def _send_control(self, body: object) -> None:
        self._control.append(orjson.dumps(body))
        self._wake.set()

    async def _pinger(self) -> None:
        loop = asyncio.get_running_loop()
        interval, timeout = self._settings.ping_interval_s, self._settings.pong_timeout_s
        next_ping = loop.time() + interval
        while not self.closing:
            now = loop.time()
            oldest = next(iter(self._pending_pings.values()), None)
            if oldest is not None and now - oldest >= timeout:
                self.close(1008, "pong timeout")
                return
            if now >= next_ping:
                next_ping += interval
                if self._stall_pings or not self._stalled():
                    payload = self._rng.randbytes(8)
                    self._pending_pings[payload] = now
                    self._pings.append((WSMsgType.PING, payload))
                    self._wake.set()
                continue
            deadline = next_ping if oldest is None else min(next_ping, oldest + timeout)
            await asyncio.sleep(max(deadline - now, 0.001))

    async def _lifetime(self) -> None:
        await asyncio.sleep(self._settings.lifetime_s)
        self.close(1001, "connection lifetime reached")

    # -- inbound ---------------------------------------------------------------------------
    def on_message(self, msg: Any) -> None:
        """Handle one client frame: count it against the limit, answer pings and requests."""
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG):
            return
        self._bump("client_messages")
        now = time.monotonic()
        times = self._client_times
        times.append(now)
        while times and now - times[0] >= 1.0:
            times.popleft()
        if len(times) > self._settings.max_client_messages_per_s:
            self.close(1008, "too many messages")
            return
        if msg.type is WSMsgType.PING:
            self._pings.append((WSMsgType.PONG, bytes(msg.data)))
            self._wake.set()
        elif msg.type is WSMsgType.PONG:
            self._bump("pongs_received")
            self._on_pong(bytes(msg.data))
        elif msg.type is WSMsgType.TEXT:
            self._send_control(self._request(str(msg.data)))

    def _on_pong(self, payload: bytes) -> None:
        if payload not in self._pending_pings:
            return  # an unsolicited pong is allowed and answers nothing
        for key in list(self._pending_pings):  # this ping and every older one are answered
            del self._pending_pings[key]
            if key == payload:
                break

    def _request(self, text: str) -> dict[str, object]:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            return _error(None, "Invalid JSON")
        if not isinstance(request, dict):
            return _error(None, "a request must be a JSON object")
        rid, method, params = request.get("id"), request.get("method"), request.get("params", [])
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return _error(rid, "params must be a list of stream names")
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(self.subscriptions), "id": rid}
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return _error(rid, f"unknown method {str(method)[:40]!r}")
        parsed = [parse_stream(p, self.info.fmt, self._symbols) for p in params]
        bad = [p for p, s in zip(params, parsed, strict=True) if s is None]
        if bad:
            return _error(rid, f"Invalid stream name {bad[0][:60]!r}")
        for stream in parsed:
            assert stream is not None  # noqa: S101 - checked just above, for mypy
            if method == "SUBSCRIBE":
                self.subscriptions.setdefault(stream.name, stream)
            else:
                self.subscriptions.pop(stream.name, None)
        self._update(streams=list(self.subscriptions))
        return {"result": None, "id": rid}

    # -- faults ----------------------------------------------------------------------------
    def apply(self, fault: Fault) -> None:
        """Apply one fault now."""
        kind = fault.kind
        if kind is FaultKind.CLOSE_ABRUPT:
            self.abort("abrupt close (fault)")
        elif kind is FaultKind.CLOSE:
            self.close(fault.code, "closed by fault")
        elif kind is FaultKind.EXPIRE:
            self.close(1001, "connection lifetime reached")
        elif kind is FaultKind.STALL:
            self._stall_until = time.monotonic() + fault.seconds
            self._stall_pings = fault.pings
            asyncio.get_running_loop().call_later(fault.seconds, self._wake.set)
        elif kind in (FaultKind.SKIP_TRADES, FaultKind.SKIP_DEPTH):
            stream = StreamKind.TRADE if kind is FaultKind.SKIP_TRADES else StreamKind.DEPTH
            self._skip[stream] += fault.count
        elif kind is FaultKind.DUPLICATE:
            self._duplicate += fault.count
        elif kind is FaultKind.REORDER:
            self._reorder = True
        elif kind is FaultKind.MALFORMED:
            self._queue_data(self._garbage(fault.count))
        else:
            self._shutdown(fault)

    def _garbage(self, count: int) -> list[bytes]:
        if self.info.fmt == "json":
            return [_TRUNCATED_JSON] * count
        pad = self._rng.randbytes(16)
        return [_TRUNCATED_SBE if i % 2 == 0 else _UNKNOWN_TEMPLATE + pad for i in range(count)]

    def _shutdown(self, fault: Fault) -> None:
        body: dict[str, object] = {"e": "serverShutdown", "E": self._now_ms()}
        self._send_control(body if fault.shape == "bare" else {"event": body})
        loop = asyncio.get_running_loop()
        loop.call_later(fault.grace_s, self.close, 1001, "server shutdown")


def _error(rid: object, msg: str) -> dict[str, object]:
    return {"error": {"code": 2, "msg": msg}, "id": rid}
