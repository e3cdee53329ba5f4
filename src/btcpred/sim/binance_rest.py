"""A local HTTP server that speaks Binance's spot REST market-data shapes, over real HTTP.

It serves a given 1-minute kline history for one symbol on 127.0.0.1, for tests and the local
stack: ``GET /api/v3/klines``, ``/api/v3/ticker/24hr``, ``/api/v3/ticker/price`` and
``/api/v3/time`` and, when given aggregate trades, ``/api/v3/aggTrades``, with Binance's
parameter rules and error bodies (``{"code", "msg"}``). Every answer carries Binance's
``X-MBX-USED-WEIGHT-1M`` header (the weight used in the current wall-clock minute); past
``weight_limit`` the server answers 429 with a ``Retry-After`` to the next minute, as Binance
does.
Tests inject failures through :attr:`BinanceRestServer.faults` and count attempts through
:attr:`BinanceRestServer.requests`.

Simulator approximations (the 1-minute source is all it knows):

* Longer bars (3m … 1d) are aggregated from the 1-minute bars by UTC bucket. Quote volume is
  the sum of the source quote volumes; a source bar without one counts as ``volume * close``.
  Trade count is the sum of the source counts, or 0 when any source bar lacks one. The taker
  buy volumes (columns 10 and 11) are always ``"0"``.
* Time moves with ``now_ms``: only bars opened at or before it exist. A bar still forming at
  ``now_ms`` is served partial, as Binance does, with Binance's scheduled ``closeTime`` (after
  ``now_ms``); it holds the 1-minute bars opened so far, and the minute in progress is served
  whole (there is nothing finer to cut it with).
* The 24-hour ticker covers the 1-minute bars opened in ``(now - 24h, now]``; its best bid is
  the last close and its best ask one cent above, both with quantity 0; ``lastQty`` is 0 and
  ``firstId``/``lastId`` are -1.
* Intervals ``1s``, ``3d``, ``1w`` and ``1M`` are valid on Binance but not served (400, -1120).
"""

from __future__ import annotations

import bisect
import collections
import json
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal, Self

from btcpred.aggtrades import AggTrade
from btcpred.klines import Kline
from btcpred.sim.services import Service

__all__ = ["BinanceRestServer", "Fault", "FaultQueue", "RequestLog"]

_MINUTE = 60_000
_DAY = 1440 * _MINUTE
_INTERVALS = {
    **{f"{n}m": n * _MINUTE for n in (1, 3, 5, 15, 30)},
    **{f"{n}h": n * 60 * _MINUTE for n in (1, 2, 4, 6, 8, 12)},
    "1d": _DAY,
}
_STATUS_BODIES = {
    418: {"code": -1003, "msg": "Way too much request weight used; IP banned."},
    429: {"code": -1003, "msg": "Too much request weight used; please use WebSocket Streams."},
    451: {"code": 0, "msg": "Service unavailable from a restricted location."},
}
_MISSING = "Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
_ILLEGAL = "Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
_WEIGHTS = {
    "/api/v3/klines": 2,
    "/api/v3/aggTrades": 4,
    "/api/v3/ticker/24hr": 2,
    "/api/v3/ticker/price": 2,
    "/api/v3/time": 1,
}
_INTERNAL = {"code": -1001, "msg": "Internal error; unable to process your request."}


@dataclass(frozen=True)
class Fault:
    """A failure the server applies to one request instead of (or before) answering it.

    Build one with :meth:`status`, :meth:`malformed` or :meth:`delay`.
    """

    kind: Literal["status", "malformed", "delay"]
    code: int = 200
    retry_after_s: float | None = None
    body: bytes | None = None
    seconds: float = 0.0

    @classmethod
    def status(
        cls, code: int, *, retry_after_s: float | None = None, body: bytes | None = None
    ) -> Fault:
        """Answer with HTTP ``code`` and a Binance-like error body (or ``body``).

        ``retry_after_s`` adds a ``Retry-After`` header (whole seconds are sent as integers).
        """
        return cls("status", code=code, retry_after_s=retry_after_s, body=body)

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with a body that is not valid JSON."""
        return cls("malformed", body=b'[[1723161600000,"61686.00",')

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before answering normally (to make a client time out)."""
        return cls("delay", seconds=seconds)


class FaultQueue:
    """Thread-safe FIFO of :class:`Fault`; each request takes the next one, if any."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: collections.deque[Fault] = collections.deque()

    def put(self, *faults: Fault) -> None:
        """Append faults for the next requests, in order."""
        with self._lock:
            self._items.extend(faults)

    def pop(self) -> Fault | None:
        """Remove and return the next fault, or ``None`` when the queue is empty."""
        with self._lock:
            return self._items.popleft() if self._items else None

    def clear(self) -> None:
        """Drop all pending faults."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class RequestLog:
    """Thread-safe log of the requests received, as ``(path, query)`` in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[str, dict[str, str]]] = []

    def append(self, path: str, query: dict[str, str]) -> None:
        """Record one request."""
        with self._lock:
            self._items.append((path, query))

    def snapshot(self) -> list[tuple[str, dict[str, str]]]:
        """Return a copy of the log."""
        with self._lock:
            return list(self._items)

    def count(self, path: str) -> int:
        """Return how many requests asked for ``path``."""
        with self._lock:
            return sum(1 for p, _ in self._items if p == path)

    def clear(self) -> None:
        """Forget all requests."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class _ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _mandatory(query: dict[str, str], name: str) -> str:
    value = query.get(name, "")
    if not value:
        raise _ApiError(400, -1102, _MISSING.format(name=name))
    return value


def _optional_int(query: dict[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise _ApiError(400, -1100, _ILLEGAL.format(name=name))
    return int(value)


def _num(value: float) -> str:
    return f"{value:.8f}"


def _aggregate(bars: Sequence[Kline], open_ms: int, interval_ms: int) -> list[object]:
    qv = sum(b.quote_volume if b.quote_volume is not None else b.volume * b.close for b in bars)
    trades = 0 if any(b.trades is None for b in bars) else sum(b.trades or 0 for b in bars)
    high, low = max(b.high for b in bars), min(b.low for b in bars)
    ohlcv = (bars[0].open, high, low, bars[-1].close, sum(b.volume for b in bars))
    close_ms = open_ms + interval_ms - 1
    return [open_ms, *map(_num, ohlcv), close_ms, _num(qv), trades, "0", "0", "0"]


class _Buckets:
    """The bucket layout of one interval: open times and source index ranges."""

    def __init__(self, source: Sequence[Kline], interval_ms: int) -> None:
        self.opens: list[int] = []
        self.starts: list[int] = []
        for index, kline in enumerate(source):
            bucket = kline.open_time_ms - kline.open_time_ms % interval_ms
            if not self.opens or self.opens[-1] != bucket:
                self.opens.append(bucket)
                self.starts.append(index)
        self.ends = [*self.starts[1:], len(source)]


class BinanceRestServer(Service):
    """Binance-shaped REST market data for one symbol on a free 127.0.0.1 port.

    Parameters
    ----------
    klines_1m
        The 1-minute history served, minute-aligned, in strictly increasing open time.
    symbol
        The only symbol known; others get 400 ``{"code": -1121, "msg": "Invalid symbol."}``.
    now_ms
        Server time; ``None``: one ms after the last bar's close, so the history looks live.
    agg_trades
        Aggregate trades served by ``/api/v3/aggTrades``, in increasing id (and time) order.
    weight_limit
        Request weight allowed per wall-clock minute (Binance's default is 6000).
    wall_ms
        The wall clock the weight minutes are counted on (tests pass a fake one).
    port
        The port to bind on 127.0.0.1 (0: a free one).
    """

    def __init__(
        self,
        klines_1m: Sequence[Kline],
        *,
        symbol: str = "BTCUSDT",
        now_ms: Callable[[], int] | None = None,
        agg_trades: Sequence[AggTrade] = (),
        weight_limit: int = 6000,
        wall_ms: Callable[[], int] | None = None,
        port: int = 0,
    ) -> None:
        if not klines_1m:
            raise ValueError("klines_1m is empty")
        for previous, kline in zip([None, *klines_1m], klines_1m, strict=False):
            if kline.open_time_ms % _MINUTE or (
                previous is not None and kline.open_time_ms <= previous.open_time_ms
            ):
                raise ValueError(f"kline at {kline.open_time_ms} is not minute-aligned or in order")
        self._agg = list(agg_trades)
        self._agg_ids = [t.agg_id for t in self._agg]
        self._agg_times = [t.time_ms for t in self._agg]
        if any(a >= b for a, b in zip(self._agg_ids, self._agg_ids[1:], strict=False)) or any(
            a > b for a, b in zip(self._agg_times, self._agg_times[1:], strict=False)
        ):
            raise ValueError("agg_trades are not in increasing id and time order")
        self.weight_limit = weight_limit
        self._port = port
        self._wall: Callable[[], int] = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._weight_minute = -1
        self.used_weight = 0
        self._klines = list(klines_1m)
        self._opens = [k.open_time_ms for k in self._klines]
        self.symbol = symbol
        end = self._klines[-1].close_time_ms + 1
        self._now: Callable[[], int] = now_ms if now_ms is not None else lambda: end
        self._buckets: dict[int, _Buckets] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.faults = FaultQueue()
        self.requests = RequestLog()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (valid after :meth:`start`)."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> Self:
        """Bind a free 127.0.0.1 port, serve from a daemon thread and return ``self``."""
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self._port), _Handler)
        self._httpd.app = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (cutting pending delay faults short) and close the socket."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _layout(self, interval_ms: int) -> _Buckets:
        with self._lock:
            if interval_ms not in self._buckets:
                self._buckets[interval_ms] = _Buckets(self._klines, interval_ms)
            return self._buckets[interval_ms]

    def _check_symbol(self, query: dict[str, str]) -> None:
        if _mandatory(query, "symbol") != self.symbol:
            raise _ApiError(400, -1121, "Invalid symbol.")

    def answer(self, path: str, query: dict[str, str]) -> object:
        """Return the JSON body for a GET of ``path`` (raises ``_ApiError`` for errors)."""
        if path == "/api/v3/time":
            return {"serverTime": self._now()}
        if path == "/api/v3/klines":
            return self._klines_body(query)
        if path == "/api/v3/aggTrades":
            return self._agg_trades_body(query)
        if path in ("/api/v3/ticker/24hr", "/api/v3/ticker/price"):
            if "symbol" not in query:  # Binance answers for every symbol: here, one
                return [self.answer(path, {**query, "symbol": self.symbol})]
            self._check_symbol(query)
            if path.endswith("price"):
                return {"symbol": self.symbol, "price": _num(self._visible()[-1].close)}
            return self._ticker_24hr()
        raise _ApiError(404, -1000, f"Unknown endpoint {path}.")

    def _visible(self) -> list[Kline]:
        count = bisect.bisect_right(self._opens, self._now())
        return self._klines[: max(count, 1)]

    def _klines_body(self, query: dict[str, str]) -> list[list[object]]:
        self._check_symbol(query)
        interval_ms = _INTERVALS.get(_mandatory(query, "interval"))
        if interval_ms is None:
            raise _ApiError(400, -1120, "Invalid interval.")
        start, end = _optional_int(query, "startTime"), _optional_int(query, "endTime")
        limit = _optional_int(query, "limit")
        limit = 500 if limit is None else limit
        if not 1 <= limit <= 1000:
            raise _ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        if start is not None and end is not None and start > end:
            raise _ApiError(400, -1023, "Start time is greater than end time.")
        now = self._now()
        layout = self._layout(interval_ms)
        visible = bisect.bisect_right(self._opens, now)
        hi = bisect.bisect_right(layout.opens, now if end is None else min(end, now))
        if start is None:
            lo = max(0, hi - limit)
        else:
            lo = bisect.bisect_left(layout.opens, start)
            hi = min(hi, lo + limit)
        return [
            _aggregate(
                self._klines[layout.starts[i] : min(layout.ends[i], visible)],
                layout.opens[i],
                interval_ms,
            )
            for i in range(lo, hi)
        ]

    def _agg_trades_body(self, query: dict[str, str]) -> list[dict[str, object]]:
        self._check_symbol(query)
        limit = _optional_int(query, "limit")
        limit = 500 if limit is None else limit
        if not 1 <= limit <= 1000:
            raise _ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        from_id = _optional_int(query, "fromId")
        start, end = _optional_int(query, "startTime"), _optional_int(query, "endTime")
        if start is not None and end is not None:
            if start > end:
                raise _ApiError(400, -1023, "Start time is greater than end time.")
            if end - start >= 3_600_000:
                raise _ApiError(400, -1127, "More than 1 hours between startTime and endTime.")
        visible = bisect.bisect_right(self._agg_times, self._now())
        if from_id is not None:
            lo = bisect.bisect_left(self._agg_ids, from_id)
            hi = visible
        elif start is not None or end is not None:
            lo = 0 if start is None else bisect.bisect_left(self._agg_times, start)
            hi = visible if end is None else min(visible, bisect.bisect_right(self._agg_times, end))
        else:
            lo, hi = max(0, visible - limit), visible
        return [
            {
                "a": t.agg_id,
                "p": _num(t.price),
                "q": _num(t.quantity),
                "f": t.first_trade_id,
                "l": t.last_trade_id,
                "T": t.time_ms,
                "m": t.is_buyer_maker,
                "M": True,
            }
            for t in self._agg[lo : min(hi, lo + limit)]
        ]

    def charge(self, path: str, query: dict[str, str]) -> tuple[int, float | None]:
        """Add ``path``'s request weight to the current minute's; return the weight used and,
        past :attr:`weight_limit`, the seconds to the next minute (the request is refused)."""
        weight = _WEIGHTS.get(path, 1)
        if path.startswith("/api/v3/ticker") and "symbol" not in query:
            weight *= 40  # every symbol at once
        with self._lock:
            wall = self._wall()
            minute = wall // _MINUTE
            if minute != self._weight_minute:
                self._weight_minute, self.used_weight = minute, 0
            self.used_weight += weight
            used = self.used_weight
        if used > self.weight_limit:
            return used, max(1.0, ((minute + 1) * _MINUTE - wall) / 1000.0)
        return used, None

    def _ticker_24hr(self) -> dict[str, object]:
        now = self._now()
        first = bisect.bisect_right(self._opens, now - _DAY)
        bars = self._klines[first : bisect.bisect_right(self._opens, now)]
        if not bars:
            bars = self._visible()[-1:]
        row = _aggregate(bars, bars[0].open_time_ms, _MINUTE)
        volume, quote = float(str(row[5])), float(str(row[7]))
        last, open_ = bars[-1].close, bars[0].open
        prev = self._klines[first - 1].close if first > 0 else open_
        return {
            "symbol": self.symbol,
            "priceChange": _num(last - open_),
            "priceChangePercent": f"{100 * (last - open_) / open_:.3f}" if open_ else "0.000",
            "weightedAvgPrice": _num(quote / volume if volume else last),
            "prevClosePrice": _num(prev),
            "lastPrice": _num(last),
            "lastQty": _num(0),
            "bidPrice": _num(last),
            "bidQty": _num(0),
            "askPrice": _num(last + 0.01),
            "askQty": _num(0),
            "openPrice": row[1],
            "highPrice": row[2],
            "lowPrice": row[3],
            "volume": row[5],
            "quoteVolume": row[7],
            "openTime": now - _DAY,
            "closeTime": now,
            "firstId": -1,
            "lastId": -1,
            "count": row[8],
        }

    def apply_fault(self, fault: Fault) -> tuple[int, bytes, dict[str, str]] | None:
        """Return the (status, body, headers) a fault answers with; ``None``: answer normally."""
        if fault.kind == "delay":
            self._stopping.wait(fault.seconds)
            return None
        if fault.kind == "malformed":
            return 200, fault.body or b"", {}
        body = fault.body
        if body is None:
            error = _STATUS_BODIES.get(fault.code, _INTERNAL if fault.code >= 500 else None)
            body = json.dumps(error or {"code": -1000, "msg": "Injected fault."}).encode()
        headers = {}
        if fault.retry_after_s is not None:
            seconds = fault.retry_after_s
            headers["Retry-After"] = str(int(seconds) if seconds == int(seconds) else seconds)
        return fault.code, body, headers


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: BinanceRestServer


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        """Log the request, apply the next fault, else answer it."""
        app = self.server.app
        split = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(split.query, True).items()}
        app.requests.append(split.path, query)
        used, refused_for = app.charge(split.path, query)
        weight = {"X-MBX-USED-WEIGHT-1M": str(used)}
        fault = app.faults.pop()
        canned = app.apply_fault(fault) if fault is not None else None
        if canned is not None:
            self._send(canned[0], canned[1], {**weight, **canned[2]})
            return
        if refused_for is not None:
            body = json.dumps(_STATUS_BODIES[429]).encode()
            self._send(429, body, {**weight, "Retry-After": str(math.ceil(refused_for))})
            return
        try:
            body = json.dumps(app.answer(split.path, query)).encode()
            self._send(200, body, weight)
        except _ApiError as exc:
            body = json.dumps({"code": exc.code, "msg": exc.msg}).encode()
            self._send(exc.status, body, weight)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            self.close_connection = True
