"""The exchange simulator's data: faults, stream names, the ledger, the order book and payloads.

Everything here is plain data and pure functions; :mod:`btcpred.sim.exchange` serves it.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec
import orjson

from btcpred.events import BestBidAsk, DepthDiff, DepthSnapshot, Event, Level, Trade, rescale
from btcpred.events import format_decimal as fmt

__all__ = [
    "ConnectionInfo",
    "Fault",
    "FaultKind",
    "LapShift",
    "OrderBook",
    "PublishedLedger",
    "StreamKind",
    "StreamName",
    "depth_answer",
    "json_payload",
    "parse_stream",
    "stream_kind",
]


class FaultKind(enum.Enum):
    """What a :class:`Fault` does to a connection (see ``docs/simulator.md``)."""

    CLOSE_ABRUPT = "close_abrupt"  # abort the TCP transport, no close frame
    CLOSE = "close"  # close frame with ``code``
    STALL = "stall"  # send nothing for ``seconds``; ``pings`` says whether pings continue
    SKIP_TRADES = "skip_trades"  # the next ``count`` trades are not sent
    SKIP_DEPTH = "skip_depth"  # the next ``count`` depth diffs are not sent
    DUPLICATE = "duplicate"  # the next ``count`` data frames are each sent twice
    REORDER = "reorder"  # the next two data frames are sent in swapped order
    MALFORMED = "malformed"  # ``count`` garbage frames injected now
    SERVER_SHUTDOWN = "server_shutdown"  # serverShutdown text frame, close after ``grace_s``
    EXPIRE = "expire"  # the 24-hour lifetime is reached now (close 1001)


@dataclass(frozen=True)
class Fault:
    """One failure injected into a connection; only the fields of its ``kind`` matter.

    ``shape`` is the serverShutdown message's shape: ``"bare"`` (``{"e":"serverShutdown",
    "E":ms}``) or ``"event"`` (``{"event":{"e":"serverShutdown","E":ms}}``).
    """

    kind: FaultKind
    count: int = 1
    seconds: float = 0.0
    code: int = 1000
    pings: bool = True
    grace_s: float = 5.0
    shape: str = "bare"

    def __post_init__(self) -> None:
        if self.shape not in ("bare", "event"):
            raise ValueError(f"shape must be 'bare' or 'event', got {self.shape!r}")
        if self.count < 0 or self.seconds < 0 or self.grace_s < 0:
            raise ValueError("count, seconds and grace_s must be >= 0")


class StreamKind(enum.Enum):
    """The three market-data streams, whatever their name in a format."""

    TRADE = "trade"
    BEST_BID_ASK = "bestBidAsk"
    DEPTH = "depth"


# Stream name suffixes per format; JSON accepts Binance's older unsuffixed ``@depth`` too.
SUFFIXES: dict[str, dict[str, StreamKind]] = {
    "sbe": {
        "trade": StreamKind.TRADE,
        "bestBidAsk": StreamKind.BEST_BID_ASK,
        "depth": StreamKind.DEPTH,
    },
    "json": {
        "trade": StreamKind.TRADE,
        "bookTicker": StreamKind.BEST_BID_ASK,
        "depth@100ms": StreamKind.DEPTH,
        "depth": StreamKind.DEPTH,
    },
}


@dataclass(frozen=True)
class StreamName:
    """A parsed stream name: the name as the client wrote it, its symbol (upper case), its kind."""

    name: str
    symbol: str
    kind: StreamKind


def parse_stream(name: str, fmt_name: str, symbols: Iterable[str]) -> StreamName | None:
    """Parse ``<symbol>@<suffix>``; ``None`` if the suffix or the (lowercase) symbol is unknown."""
    symbol, _, suffix = name.partition("@")
    kind = SUFFIXES[fmt_name].get(suffix)
    if kind is None or symbol != symbol.lower() or symbol.upper() not in set(symbols):
        return None
    return StreamName(name, symbol.upper(), kind)


def stream_kind(event: Event) -> StreamKind | None:
    """The stream an event travels on; ``None`` for the REST snapshot (never streamed)."""
    if isinstance(event, Trade):
        return StreamKind.TRADE
    if isinstance(event, BestBidAsk):
        return StreamKind.BEST_BID_ASK
    if isinstance(event, DepthDiff):
        return StreamKind.DEPTH
    return None


def _levels(levels: Sequence[Level], price_exp: int, qty_exp: int) -> list[list[str]]:
    return [[fmt(p, price_exp), fmt(q, qty_exp)] for p, q in levels]


def json_payload(event: Event) -> bytes:
    """The Binance JSON stream payload of an event (times in ms, decimals as strings)."""
    if isinstance(event, Trade):
        body: dict[str, object] = {
            "e": "trade",
            "E": event.event_time_us // 1000,
            "s": event.symbol,
            "t": event.trade_id,
            "p": fmt(event.price_mantissa, event.price_exponent),
            "q": fmt(event.qty_mantissa, event.qty_exponent),
            "T": event.transact_time_us // 1000,
            "m": event.is_buyer_maker,
            "M": True,
        }
    elif isinstance(event, BestBidAsk):
        pe, qe = event.price_exponent, event.qty_exponent
        body = {
            "u": event.update_id,
            "s": event.symbol,
            "b": fmt(event.bid_price_mantissa, pe),
            "B": fmt(event.bid_qty_mantissa, qe),
            "a": fmt(event.ask_price_mantissa, pe),
            "A": fmt(event.ask_qty_mantissa, qe),
        }
    elif isinstance(event, DepthDiff):
        pe, qe = event.price_exponent, event.qty_exponent
        body = {
            "e": "depthUpdate",
            "E": event.event_time_us // 1000,
            "s": event.symbol,
            "U": event.first_update_id,
            "u": event.last_update_id,
            "b": _levels(event.bids, pe, qe),
            "a": _levels(event.asks, pe, qe),
        }
    else:
        raise ValueError("a depth snapshot has no stream payload")
    return orjson.dumps(body)


@dataclass(frozen=True)
class LapShift:
    """How lap ``k`` of a looped replay moves ids and times so that they stay contiguous.

    Trade ids move by ``k * (trade span + 1)``, book update ids by ``k * (book span + 1)``,
    times by ``k * time_us`` (the capture's duration plus one second, whole milliseconds).
    """

    trade_ids: int
    book_ids: int
    time_us: int

    @classmethod
    def of(cls, events: Sequence[Event]) -> LapShift:
        """The per-lap shift of a capture."""
        trade_ids = [e.trade_id for e in events if isinstance(e, Trade)]
        # The diffs' range sets the book span, so that diffs stay contiguous across laps; best
        # bid/ask ids only count without diffs (a capture ending on a best bid/ask ahead of the
        # last diff would give it a non-increasing id at the lap boundary).
        book_ids = [
            i
            for e in events
            if isinstance(e, DepthDiff)
            for i in (e.first_update_id, e.last_update_id)
        ] or [e.update_id for e in events if isinstance(e, BestBidAsk)]
        times = [e.event_time_us for e in events]
        span_us = (max(times) - min(times) if times else 0) + 1_000_000
        return cls(
            max(trade_ids) - min(trade_ids) + 1 if trade_ids else 0,
            max(book_ids) - min(book_ids) + 1 if book_ids else 0,
            -(-span_us // 1000) * 1000,
        )

    def apply(self, event: Event, lap: int) -> Event:
        """The event as lap ``lap`` publishes it (lap 0: unchanged)."""
        if lap == 0:
            return event
        t, b, us = self.trade_ids * lap, self.book_ids * lap, self.time_us * lap
        replace = msgspec.structs.replace
        if isinstance(event, Trade):
            return replace(
                event,
                trade_id=event.trade_id + t,
                event_time_us=event.event_time_us + us,
                transact_time_us=event.transact_time_us + us,
            )
        if isinstance(event, BestBidAsk):
            return replace(
                event, update_id=event.update_id + b, event_time_us=event.event_time_us + us
            )
        if isinstance(event, DepthDiff):
            return replace(
                event,
                first_update_id=event.first_update_id + b,
                last_update_id=event.last_update_id + b,
                event_time_us=event.event_time_us + us,
            )
        return replace(
            event, last_update_id=event.last_update_id + b, event_time_us=event.event_time_us + us
        )


MAX_CHECKPOINTS = 1000
Book = tuple[tuple[Level, ...], tuple[Level, ...]]


class OrderBook:
    """One symbol's full book, kept by Binance's rules from a snapshot and the published diffs.

    A diff whose last update id is at most the book's is ignored; a level of quantity 0 is
    removed. Levels are kept at the snapshot's exponents (diffs are rescaled if they differ).
    """

    def __init__(self, snapshot: DepthSnapshot | None, checkpoint_every: int) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.last_update_id = 0
        self.price_exponent = self.qty_exponent = -8
        self.checkpoints: dict[int, Book] = {}
        self._every = checkpoint_every
        self._applied = 0
        if snapshot is not None:
            self.bids = dict(snapshot.bids)
            self.asks = dict(snapshot.asks)
            self.last_update_id = snapshot.last_update_id
            self.price_exponent, self.qty_exponent = snapshot.price_exponent, snapshot.qty_exponent

    def apply(self, diff: DepthDiff) -> bool:
        """Apply one diff; ``False`` if it was ignored as already contained in the book."""
        if diff.last_update_id <= self.last_update_id:
            return False
        for side, levels in ((self.bids, diff.bids), (self.asks, diff.asks)):
            for price, qty in self._rescaled(levels, diff):
                if qty == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_update_id = diff.last_update_id
        self._applied += 1
        if self._every > 0 and self._applied % self._every == 0:
            self.checkpoints[diff.last_update_id] = self.levels()
            if len(self.checkpoints) > MAX_CHECKPOINTS:  # a looping replay runs for days
                del self.checkpoints[next(iter(self.checkpoints))]
        return True

    def _rescaled(self, levels: tuple[Level, ...], diff: DepthDiff) -> Iterable[Level]:
        pe, qe = self.price_exponent, self.qty_exponent
        if diff.price_exponent == pe and diff.qty_exponent == qe:
            return levels
        return [
            (rescale(p, diff.price_exponent, pe), rescale(q, diff.qty_exponent, qe))
            for p, q in levels
        ]

    def levels(self, limit: int | None = None) -> Book:
        """Bids best (highest) first and asks best (lowest) first, at most ``limit`` each."""
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return tuple(bids), tuple(asks)

    def rest_body(self, limit: int) -> dict[str, object]:
        """The ``GET /api/v3/depth`` answer for the top ``limit`` levels."""
        bids, asks = self.levels(limit)
        pe, qe = self.price_exponent, self.qty_exponent
        return {
            "lastUpdateId": self.last_update_id,
            "bids": _levels(bids, pe, qe),
            "asks": _levels(asks, pe, qe),
        }


def depth_answer(books: dict[str, OrderBook], symbol: str, limit: str) -> tuple[int, object]:
    """Status and body of ``GET /api/v3/depth?symbol=&limit=`` (Binance's error shapes)."""
    if not symbol:
        msg = "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
        return 400, {"code": -1102, "msg": msg}
    if symbol not in books:
        return 400, {"code": -1121, "msg": "Invalid symbol."}
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= 5000:
        return 400, {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}
    return 200, books[symbol].rest_body(int(limit))


@dataclass
class ConnectionInfo:
    """What one accepted connection asked for and what the server actually sent it.

    ``frames_sent`` counts market-data frames written (duplicates and injected garbage
    included), not control responses, pings or pongs. ``close_code`` is the server's code when
    the server closed, the client's when the client did, ``None`` after an abrupt close.
    """

    id: int
    path: str
    streams: list[str]
    fmt: str
    opened_ns: int
    api_key: str | None
    closed_ns: int | None = None
    close_code: int | None = None
    close_reason: str | None = None
    frames_sent: int = 0
    pings_sent: int = 0
    pongs_received: int = 0
    client_messages: int = 0


class PublishedLedger:
    """Thread-safe record of what the publisher published and each connection was sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._trade_ids: dict[str, list[int]] = {}
        self._depth_ranges: dict[str, list[tuple[int, int]]] = {}
        self._published = 0
        self._connections: list[ConnectionInfo] = []

    def record(self, event: Event) -> None:
        """Record one event published on the stream."""
        with self.lock:
            self._published += 1
            if isinstance(event, Trade):
                self._trade_ids.setdefault(event.symbol, []).append(event.trade_id)
            elif isinstance(event, DepthDiff):
                ranges = self._depth_ranges.setdefault(event.symbol, [])
                ranges.append((event.first_update_id, event.last_update_id))

    def add_connection(self, info: ConnectionInfo) -> None:
        """Record a newly accepted connection."""
        with self.lock:
            self._connections.append(info)

    def trade_ids(self, symbol: str) -> list[int]:
        """Every trade id published for ``symbol`` (any case), in order."""
        with self.lock:
            return list(self._trade_ids.get(symbol.upper(), ()))

    def depth_ranges(self, symbol: str) -> list[tuple[int, int]]:
        """``(first, last)`` update ids of every depth diff published for ``symbol``."""
        with self.lock:
            return list(self._depth_ranges.get(symbol.upper(), ()))

    @property
    def events_published(self) -> int:
        """Events published on the streams (the REST snapshot of the capture is not one)."""
        with self.lock:
            return self._published

    @property
    def connections(self) -> list[ConnectionInfo]:
        """Copies of every connection's record, in the order they were accepted."""
        with self.lock:
            return [dataclasses.replace(c, streams=list(c.streams)) for c in self._connections]
