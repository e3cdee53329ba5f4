"""The byte-bounded buffer between the socket reader and the Kinesis producer.

The reader never waits: :meth:`IngestBuffer.offer` either keeps an item or sheds it at once.
When the buffer is full, best bid/ask quotes go first (an incoming quote is dropped; an incoming
trade or depth diff evicts the oldest queued quotes); only when no quote is left to evict is a
trade or a depth diff shed, and then its ids are remembered as a pending ``overflow`` gap of
its (symbol, stream). The gap is queued just before the next item of that stream that fits (or
at :meth:`flush_gaps`), so it sits in the record stream exactly where the ids are missing. Gap
items are tiny and always admitted, so memory stays bounded by ``max_bytes`` plus one gap per
break, whatever Kinesis does. A shed depth diff breaks the book: ``resync_needed`` names the
symbols whose book must be re-synchronised from a REST snapshot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final

import msgspec

from btcpred.events import Gap

__all__ = [
    "KIND_DEPTH",
    "KIND_GAP",
    "KIND_QUOTE",
    "KIND_SNAPSHOT",
    "KIND_TRADE",
    "IngestBuffer",
    "Slot",
]

KIND_TRADE: Final = 0
KIND_QUOTE: Final = 1
KIND_DEPTH: Final = 2
KIND_SNAPSHOT: Final = 3
KIND_GAP: Final = 4

SLOT_OVERHEAD: Final = 120
"""Bytes counted per item on top of its message: the slot object and its deque entry."""


class Slot(msgspec.Struct, gc=False):
    """One packed message waiting for Kinesis: its JSON bytes and what the counters need.

    Not tracked by the garbage collector (it holds only bytes, strings and ints): a buffer of
    millions of slots would otherwise make every full collection walk them all.
    """

    symbol: str
    kind: int
    data: bytes
    recv_ns: int
    event_us: int
    first: int = 0
    last: int = 0
    live: bool = True

    @property
    def cost(self) -> int:
        """Bytes this item counts against the buffer's bound."""
        return len(self.data) + SLOT_OVERHEAD


GapPacker = Callable[[Gap], bytes]


class IngestBuffer:
    """Per-symbol FIFO queues of :class:`Slot` under one byte bound.

    Parameters
    ----------
    max_bytes
        The bound on queued message bytes (plus :data:`SLOT_OVERHEAD` per item).
    pack_gap
        Turns a gap into its message bytes (the reader's packer).
    clock_ns
        The local clock for gaps' receive times.
    """

    def __init__(self, max_bytes: int, pack_gap: GapPacker, clock_ns: Callable[[], int]) -> None:
        if max_bytes < 64 * 1024:
            raise ValueError("an ingest buffer needs at least 64 KiB")
        self.max_bytes = max_bytes
        self._pack_gap = pack_gap
        self._clock_ns = clock_ns
        self.queues: dict[str, deque[Slot]] = {}
        self._quotes: deque[Slot] = deque()
        self._pending: dict[tuple[str, str], list[int]] = {}
        """(symbol, stream) → [first shed id, last shed id, event time] of a pending gap."""
        self._symbol_bytes: dict[str, int] = {}
        self.bytes = 0
        self.items = 0
        self.overflow_gaps = 0
        self.shed_quotes = 0
        self.shed_events = 0
        """Trades and depth diffs shed (their ids are in overflow gaps)."""
        self.resync_needed: set[str] = set()
        self.on_item: Callable[[], None] = _nothing
        """Called when a symbol's queue gets its first live message or reaches ``wake_bytes``:
        the only moments the producer's next deadline can move earlier."""
        self.wake_bytes = 1 << 62

    @property
    def fill(self) -> float:
        """How full the buffer is, 0..1 (gaps may push it slightly above 1)."""
        return self.bytes / self.max_bytes

    def offer(self, slot: Slot) -> bool:
        """Queue ``slot`` or shed it (see the module docstring); never blocks."""
        size = len(slot.data)
        cost = size + SLOT_OVERHEAD
        kind = slot.kind
        if self.bytes + cost > self.max_bytes and kind != KIND_GAP:
            if kind == KIND_QUOTE:
                self.shed_quotes += 1
                return False
            self._evict_quotes(self.bytes + cost - self.max_bytes)
            if self.bytes + cost > self.max_bytes:
                self._shed(slot)
                return False
        if self._pending and kind in (KIND_TRADE, KIND_DEPTH):
            self._release_gap(slot.symbol, "trade" if kind == KIND_TRADE else "depth")
        self._append(slot, size)
        return True

    def _append(self, slot: Slot, size: int) -> None:
        """Queue ``slot``, whose message is ``size`` bytes (the hot path: lookups hoisted)."""
        symbol = slot.symbol
        queue = self.queues.get(symbol)
        if queue is None:
            queue = self.queues[symbol] = deque()
            self._symbol_bytes[symbol] = 0
        queue.append(slot)
        if slot.kind == KIND_QUOTE:
            self._quotes.append(slot)
        before = self._symbol_bytes[symbol]
        self._symbol_bytes[symbol] = before + size
        self.bytes += size + SLOT_OVERHEAD
        self.items += 1
        if before == 0 or before < self.wake_bytes <= before + size:
            self.on_item()  # a new oldest message (a new flush deadline) or a full record

    def _evict_quotes(self, needed: int) -> None:
        freed = 0
        quotes = self._quotes
        while freed < needed and quotes:
            slot = quotes.popleft()
            if slot.live:
                slot.live = False
                self._symbol_bytes[slot.symbol] -= len(slot.data)
                freed += slot.cost
                self.bytes -= slot.cost
                self.items -= 1
                self.shed_quotes += 1

    def _shed(self, slot: Slot) -> None:
        if slot.kind == KIND_SNAPSHOT:
            self.resync_needed.add(slot.symbol)
            return
        stream = "trade" if slot.kind == KIND_TRADE else "depth"
        if slot.kind == KIND_DEPTH:
            self.resync_needed.add(slot.symbol)
        self.shed_events += 1
        pending = self._pending.get((slot.symbol, stream))
        if pending is None:
            self._pending[(slot.symbol, stream)] = [slot.first, slot.last, slot.event_us]
        else:
            pending[1] = slot.last

    def _release_gap(self, symbol: str, stream: str) -> None:
        pending = self._pending.pop((symbol, stream), None)
        if pending is not None:
            self.overflow_gaps += 1
            first, last, event_us = pending
            gap = Gap(symbol, event_us, stream, first, last, "overflow", self._clock_ns())
            packed = Slot(
                symbol, KIND_GAP, self._pack_gap(gap), gap.receive_time_ns, event_us, first, last
            )
            self._append(packed, len(packed.data))

    def flush_gaps(self) -> int:
        """Queue every pending overflow gap now (at shutdown); returns how many."""
        keys = list(self._pending)
        for symbol, stream in keys:
            self._release_gap(symbol, stream)
        return len(keys)

    def pending_gaps(self) -> list[tuple[str, str, int, int]]:
        """The overflow gaps not queued yet: (symbol, stream, first id, last id)."""
        return [(s, st, v[0], v[1]) for (s, st), v in self._pending.items()]

    def take(self, symbol: str, max_bytes: int) -> list[Slot]:
        """Pop the oldest live items of ``symbol`` whose messages fit one record of ``max_bytes``
        (as a JSON array: brackets and commas counted); at least one item if any."""
        queue = self.queues.get(symbol)
        out: list[Slot] = []
        if not queue:
            return out
        size = 2
        taken = 0  # message bytes taken: the counters are updated once, after the loop
        while queue:
            slot = queue[0]
            if not slot.live:
                queue.popleft()
                continue
            extra = len(slot.data) + (1 if out else 0)
            if out and size + extra > max_bytes:
                break
            queue.popleft()
            size += extra
            out.append(slot)
            taken += len(slot.data)
        self._symbol_bytes[symbol] -= taken
        self.bytes -= taken + SLOT_OVERHEAD * len(out)
        self.items -= len(out)
        return out

    def oldest_ns(self, symbol: str) -> int | None:
        """The receive time of the oldest live item of ``symbol`` (None: nothing queued)."""
        queue = self.queues.get(symbol)
        while queue:
            slot = queue[0]
            if slot.live:
                return slot.recv_ns
            queue.popleft()
        return None

    def queued_bytes(self, symbol: str) -> int:
        """The message bytes of the live items queued for ``symbol`` (the flush decision)."""
        return self._symbol_bytes.get(symbol, 0)

    def symbols(self) -> list[str]:
        """Symbols with live items queued."""
        return [s for s in self.queues if self.oldest_ns(s) is not None]


def _nothing() -> None:
    return None
