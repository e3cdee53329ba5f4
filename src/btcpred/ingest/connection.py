"""One WebSocket connection to Binance's market-data stream (aiohttp), and the retry policy.

A :class:`StreamConnection` opens the socket (``X-MBX-APIKEY`` when a key is set), answers
every ping at once with a pong carrying the ping's payload, and hands each data frame to its
sink with the local receive time. It ends — returning why — when the server closes, when no
frame of any kind arrives for ``dead_after_s`` (a dead connection), when no *data* frame
arrives for ``data_timeout_s`` while pings still flow (a stalled stream), or when it is closed.
Text frames are control messages on the SBE stream (subscription answers, ``serverShutdown``),
data on the JSON stream (where ``serverShutdown`` comes the same way).

:class:`Backoff` is capped exponential backoff with full jitter; :class:`AttemptLimiter` keeps
connection attempts under a global cap per sliding window (Binance allows 300 per 5 minutes
per IP; the default is 60).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import aiohttp
import orjson

__all__ = [
    "AttemptLimiter",
    "Backoff",
    "ConnectError",
    "HandshakeRefusedError",
    "StreamConnection",
    "is_server_shutdown",
    "refusal_hint",
]

log = logging.getLogger("btcpred.ingest.connection")

MAX_FRAME_BYTES: Final = 8 * 1024 * 1024


class ConnectError(Exception):
    """The connection could not be opened (network, TLS, timeout): retry with backoff."""


class HandshakeRefusedError(ConnectError):
    """The server answered the handshake with an HTTP error (400 without a key, 429, 451...)."""

    def __init__(self, status: int, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.retry_after_s = retry_after_s


def is_server_shutdown(obj: object) -> bool:
    """True for Binance's ``serverShutdown`` in any of its shapes: bare
    ``{"e":"serverShutdown","E":ms}``, the WebSocket API's ``{"event":{...}}`` and the combined
    stream's ``{"stream":...,"data":{...}}``."""
    if not isinstance(obj, dict):
        return False
    for inner in (obj, obj.get("event"), obj.get("data")):
        if isinstance(inner, dict) and inner.get("e") == "serverShutdown":
            return True
    return False


FrameSink = Callable[["StreamConnection", bytes, bool, int], None]
"""``sink(connection, payload, is_binary, receive_time_ns)`` for each data frame."""


@dataclass(slots=True)
class ConnectionCounters:
    frames: int = 0
    data_frames: int = 0
    pings: int = 0
    texts: int = 0


class StreamConnection:
    """One open stream socket; see the module docstring."""

    def __init__(
        self,
        number: int,
        url: str,
        sink: FrameSink,
        *,
        api_key: str | None,
        text_is_data: bool,
        on_shutdown: Callable[[StreamConnection], None],
        dead_after_s: float = 30.0,
        data_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.number = number
        self.url = url
        self.sink = sink
        self.api_key = api_key
        self.text_is_data = text_is_data
        self.on_shutdown = on_shutdown
        self.dead_after_s = dead_after_s
        self.data_timeout_s = data_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.clock_ns = clock_ns
        self.counters = ConnectionCounters()
        self.opened_ns = 0
        self.last_frame_ns = 0
        self.last_data_ns = 0
        self.end_reason = ""
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def open(self) -> None:
        """Open the socket.

        Raises
        ------
        HandshakeRefusedError
            The server refused the upgrade with an HTTP status.
        ConnectError
            Anything else that kept the socket from opening.
        """
        headers = {"X-MBX-APIKEY": self.api_key} if self.api_key else {}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            self._ws = await asyncio.wait_for(
                self._session.ws_connect(
                    self.url,
                    headers=headers,
                    autoping=False,
                    autoclose=False,
                    heartbeat=None,
                    max_msg_size=MAX_FRAME_BYTES,
                    compress=0,
                ),
                timeout=self.connect_timeout_s,
            )
        except aiohttp.WSServerHandshakeError as exc:
            await self._session.close()
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            raise HandshakeRefusedError(exc.status, exc.message or "refused", retry_after) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._session.close()
            raise ConnectError(f"{type(exc).__name__}: {exc}") from None
        self.opened_ns = self.last_frame_ns = self.clock_ns()

    async def read(self) -> str:
        """Read until the connection ends; return why (``closed``, ``dead``, ``stalled``...)."""
        ws = self._ws
        if ws is None:
            raise RuntimeError("open() the connection first")
        counters = self.counters
        sink = self.sink
        clock_ns = self.clock_ns
        binary = aiohttp.WSMsgType.BINARY
        watchdog = asyncio.get_running_loop().create_task(self._watch(ws))
        try:
            while True:
                try:
                    msg = await ws.receive()
                except asyncio.CancelledError:
                    await self._end("cancelled")
                    raise
                recv = clock_ns()
                if self.end_reason:  # the watchdog closed it
                    return await self._end(self.end_reason)
                self.last_frame_ns = recv
                counters.frames += 1
                if msg.type is binary:
                    counters.data_frames += 1
                    self.last_data_ns = recv
                    sink(self, msg.data, True, recv)
                    continue
                ended = await self._control(ws, msg, recv)
                if ended is not None:
                    return await self._end(ended)
        finally:
            watchdog.cancel()

    async def _watch(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Close the socket when no frame (dead) or no data frame (stalled) came for too long.

        A separate task, so that the read loop needs no timeout per frame (an asyncio timeout
        costs more than decoding a frame)."""
        step = max(0.01, min(self.dead_after_s, self.data_timeout_s) / 5)
        while not ws.closed:
            await asyncio.sleep(step)
            now = self.clock_ns()
            if (now - self.last_frame_ns) / 1e9 >= self.dead_after_s:
                self.end_reason = "dead"
            elif (now - max(self.last_data_ns, self.opened_ns)) / 1e9 >= self.data_timeout_s:
                self.end_reason = "stalled"
            else:
                continue
            await self.close()
            return

    async def _control(
        self, ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage, recv: int
    ) -> str | None:
        """Handle a frame that is not binary data; a reason when the connection is over."""
        kind = msg.type
        if kind is aiohttp.WSMsgType.PING:
            self.counters.pings += 1
            try:
                await ws.pong(msg.data)
            except (ConnectionError, RuntimeError):
                return "closed while answering a ping"
        elif kind is aiohttp.WSMsgType.TEXT:
            self.counters.texts += 1
            self._text(msg.data, recv)
        elif kind in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING):
            extra = f": {msg.extra}" if msg.extra else ""
            return f"closed by the server ({ws.close_code}{extra})"
        elif kind in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return f"connection lost ({ws.exception() or kind.name})"
        return None

    def _text(self, data: str, recv: int) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            obj = None
        if is_server_shutdown(obj):
            log.warning("serverShutdown on connection %d", self.number)
            self.on_shutdown(self)
            return
        if self.text_is_data:
            self.counters.data_frames += 1
            self.last_data_ns = recv
            self.sink(self, data.encode(), False, recv)
        elif isinstance(obj, dict) and "id" in obj:
            log.info("control answer on connection %d: %.200s", self.number, data)
        else:
            log.warning("unexpected text frame on connection %d: %.200s", self.number, data)

    async def _end(self, reason: str) -> str:
        self.end_reason = self.end_reason or reason
        await self.close()
        return self.end_reason

    async def close(self, reason: str = "") -> None:
        """Close the socket (idempotent)."""
        if reason and not self.end_reason:
            self.end_reason = reason
        ws, session = self._ws, self._session
        if ws is not None and not ws.closed:
            with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
                await asyncio.wait_for(ws.close(), timeout=2.0)
        if session is not None and not session.closed:
            await session.close()

    @property
    def age_s(self) -> float:
        """Seconds since the connection opened (0 before)."""
        return (self.clock_ns() - self.opened_ns) / 1e9 if self.opened_ns else 0.0


def refusal_hint(status: int) -> str:
    """The likely cause of a refused handshake, for the log line."""
    return {
        400: "is the API key missing? the SBE stream needs X-MBX-APIKEY",
        401: "the API key is not accepted (Ed25519 keys only)",
        403: "forbidden: an IP whitelist on the key?",
        418: "this IP is banned for a while after too many requests",
        429: "too many connection attempts",
        451: "Binance does not serve this location (deploy outside the US)",
    }.get(status, "see the server's message")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class Backoff:
    """Capped exponential backoff with full jitter: attempt n waits U(0, min(cap, base·2ⁿ))."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        """The wait before the next attempt; counts one more failure."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(self.failures, 30))
        self.failures += 1
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        """Data flowed again: start from the base."""
        self.failures = 0


class AttemptLimiter:
    """At most ``limit`` connection attempts in any ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._times: deque[float] = deque()

    def wait_s(self) -> float:
        """Seconds until another attempt is allowed (0: now)."""
        now = self.clock()
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window_s - now

    def record(self) -> None:
        """Count one attempt now."""
        self._times.append(self.clock())
