"""The fused path for the common SBE frames: bytes → sequencer check → record bytes → buffer.

Best bid/ask quotes (about three quarters of the stream) and single-trade frames (nearly all
the rest but depth) are read straight from the frame with one ``struct`` call, checked against
the sequencer's marks, packed with the packer's own f-strings and queued, without building
an event object or a verdict. The result is exactly what the general path (decode, sequencer,
pack, buffer) gives — a test feeds the whole capture, with duplicates and gaps injected,
through both and compares the buffers and the sequencers.

:meth:`FastPath.take` handles a frame completely or not at all: anything it does not know at
a glance — another template, schema version or block length, a frame with several trades, a
trade that does not continue its stream's mark (the first one, a gap), a symbol it has not
seen — returns False before anything has changed, and the caller takes the general path, which
stays the single source of truth for what such a frame means.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct
from typing import Final, Protocol

from btcpred.ingest.buffer import KIND_QUOTE, KIND_TRADE, IngestBuffer, Slot
from btcpred.ingest.pack import Packer
from btcpred.ingest.sequence import QUOTE, TRADE, Sequencer
from btcpred.sbe.schema import HEADER_SIZE, SCHEMA_ID, SCHEMA_VERSION, TemplateId

__all__ = ["EventCounter", "FastPath"]

_HEADER = Struct("<HHHH")  # blockLength, templateId, schemaId, version
_QUOTE_BODY = Struct("<qqbbqqqqB")
"""BestBidAsk root (eventTime, bookUpdateId, exponents, bid p/q, ask p/q), symbol length."""
_QUOTE_ROOT_SIZE: Final = 50
_TRADE_BODY = Struct("<qqbbHIqqqBB")
"""Trades root (eventTime, transactTime, exponents), group header (blockLength, numInGroup),
one entry (id, price, qty, isBuyerMaker), symbol length."""
_TRADES_ROOT_SIZE: Final = 18
_TRADE_ENTRY_SIZE: Final = 25

_QUOTE_HEAD: Final = _HEADER.pack(
    _QUOTE_ROOT_SIZE, TemplateId.BEST_BID_ASK, SCHEMA_ID, SCHEMA_VERSION
)
_TRADE_HEAD: Final = _HEADER.pack(_TRADES_ROOT_SIZE, TemplateId.TRADES, SCHEMA_ID, SCHEMA_VERSION)
_QUOTE_SYMBOL_AT: Final = HEADER_SIZE + _QUOTE_BODY.size
_TRADE_SYMBOL_AT: Final = HEADER_SIZE + _TRADE_BODY.size
_SYMBOLS_MAX: Final = 4096


class EventCounter(Protocol):
    """Where accepted events are counted (the ingestor's stats)."""

    events: int


class FastPath:
    """The fused quote/trade path over the ingestor's sequencer, packer and buffer."""

    def __init__(
        self,
        sequencer: Sequencer,
        packer: Packer,
        buffer: IngestBuffer,
        clock_ns: Callable[[], int],
        stats: EventCounter,
    ) -> None:
        self.stats = stats
        self.sequencer = sequencer
        self.packer = packer
        self.buffer = buffer
        self.clock_ns = clock_ns
        self._symbols: dict[bytes, tuple[str, tuple[str, str], tuple[str, str]]] = {}
        """Symbol bytes → the symbol and its (symbol, stream) keys of quotes and trades."""

    def take(self, frame: bytes, recv_ns: int) -> bool:
        """Handle one binary frame; False (nothing changed): take the general path."""
        if not frame.startswith(_QUOTE_HEAD):
            return frame.startswith(_TRADE_HEAD) and self._trade(frame, recv_ns)
        # a quote (three frames in four), inline: a method call costs as much as a lookup
        if len(frame) < _QUOTE_SYMBOL_AT:
            return False
        event_us, update_id, pe, qe, bid, bid_qty, ask, ask_qty, length = _QUOTE_BODY.unpack_from(
            frame, HEADER_SIZE
        )
        if len(frame) != _QUOTE_SYMBOL_AT + length:
            return False
        known = self._symbols.get(frame[_QUOTE_SYMBOL_AT:]) or self._symbol(
            frame[_QUOTE_SYMBOL_AT:]
        )
        if known is None:
            return False
        symbol, key = known[0], known[1]
        # Sequencer.check for a BestBidAsk: drop an update id at or below the mark, never a gap.
        sequencer = self.sequencer
        marks = sequencer.marks
        last = marks.get(key)
        if last is not None and 0 < update_id <= last:
            sequencer.duplicates += 1
            return True
        if update_id > 0:
            marks[key] = update_id
        data = self.packer.pack_quote(
            symbol,
            event_us,
            update_id,
            pe,
            qe,
            bid,
            bid_qty,
            ask,
            ask_qty,
            recv_ns,
            self.clock_ns() // 1_000_000,
        )
        self.stats.events += 1
        self.buffer.offer(Slot(symbol, KIND_QUOTE, data, recv_ns, event_us, update_id, update_id))
        return True

    def _symbol(self, raw: bytes) -> tuple[str, tuple[str, str], tuple[str, str]] | None:
        """A symbol not seen before: valid (1-255 bytes of UTF-8) and remembered, or None."""
        if not raw or len(self._symbols) >= _SYMBOLS_MAX:
            return None
        try:
            symbol = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        known = self._symbols[raw] = (symbol, (symbol, QUOTE), (symbol, TRADE))
        return known

    def _trade(self, frame: bytes, recv_ns: int) -> bool:
        if len(frame) < _TRADE_SYMBOL_AT:
            return False
        fields = _TRADE_BODY.unpack_from(frame, HEADER_SIZE)
        event_us, transact_us, pe, qe, entry_length, count, trade_id, price, qty, maker, length = (
            fields
        )
        if entry_length != _TRADE_ENTRY_SIZE or count != 1 or maker > 1:
            return False
        if len(frame) != _TRADE_SYMBOL_AT + length:
            return False
        known = self._symbols.get(frame[_TRADE_SYMBOL_AT:]) or self._symbol(
            frame[_TRADE_SYMBOL_AT:]
        )
        if known is None:
            return False
        symbol, key = known[0], known[2]
        # Sequencer.check for a Trade: a duplicate is dropped, the next id accepted; the first
        # trade of a stream and a gap go the general way.
        sequencer = self.sequencer
        marks = sequencer.marks
        mark = marks.get(key)
        if mark is None:
            return False
        if trade_id <= mark:
            sequencer.duplicates += 1
            return True
        if trade_id != mark + 1:
            return False
        marks[key] = trade_id
        if sequencer.reasons:
            sequencer.reasons.pop(key, None)  # an expected break that did not happen
        data = self.packer.pack_trade(
            symbol,
            event_us,
            transact_us,
            trade_id,
            price,
            qty,
            pe,
            qe,
            maker == 1,
            recv_ns,
            self.clock_ns() // 1_000_000,
        )
        self.stats.events += 1
        self.buffer.offer(Slot(symbol, KIND_TRADE, data, recv_ns, event_us, trade_id, trade_id))
        return True
