"""Decoder for Binance's spot SBE stream frames (schema id 1, version 0, little-endian).

One WebSocket binary frame holds one message: the 8-byte header, the root block, the repeating
groups and the ``symbol`` (``varString8``). The decoder trusts nothing in the frame:

* the root block is read at its declared ``blockLength`` (a newer version may append fields; a
  block shorter than this schema's is an error), and so is every group entry;
* every group's ``numInGroup`` is checked against the bytes that remain *before* anything is
  read, so a forged count can neither over-read nor loop for long;
* the symbol must be 1-255 bytes of valid UTF-8.

Trailing bytes after the symbol are an error for version 0 frames (the schema defines nothing
there, so they mean corruption or a framing bug). Frames of a newer version may carry variable-
length fields appended after the symbol (SBE's extension rules), so there they are ignored.

Everything malformed raises :class:`~btcpred.sbe.errors.DecodeError` naming the reason and the
byte offset; nothing else escapes for any ``bytes`` input.
"""

from __future__ import annotations

from struct import Struct
from typing import TYPE_CHECKING

from btcpred.events import BestBidAsk, DepthDiff, DepthSnapshot, Level, Trade
from btcpred.sbe.errors import DecodeError, DecodeErrorReason
from btcpred.sbe.schema import HEADER_SIZE, SCHEMA_ID, SCHEMA_VERSION, TemplateId

if TYPE_CHECKING:
    from btcpred.events import Event

__all__ = ["decode"]

Buffer = bytes | bytearray | memoryview

_HEADER = Struct("<HHHH")
_GROUP = Struct("<HI")  # groupSizeEncoding: blockLength u16, numInGroup u32
_GROUP16 = Struct("<HH")  # groupSize16Encoding: blockLength u16, numInGroup u16
_TRADES_ROOT = Struct("<qqbb")  # eventTime, transactTime, priceExponent, qtyExponent
_BBA_ROOT = Struct("<qqbbqqqq")  # eventTime, bookUpdateId, exponents, bid p/q, ask p/q
_SNAPSHOT_ROOT = Struct("<qqbb")  # eventTime, bookUpdateId, priceExponent, qtyExponent
_DIFF_ROOT = Struct("<qqqbb")  # eventTime, firstBookUpdateId, lastBookUpdateId, exponents
_TRADE_ENTRY = Struct("<qqqB")  # id, price, qty, isBuyerMaker (isBestMatch is constant)
_LEVEL = Struct("<qq")  # price, qty

_SYMBOL_CACHE: dict[bytes, str] = {}
_SYMBOL_CACHE_MAX = 4096

_R = DecodeErrorReason


def decode(frame: Buffer, receive_time_ns: int = 0) -> list[Event]:
    """Decode one SBE frame into market events.

    A trades frame (template 10000) yields one :class:`~btcpred.events.Trade` per entry (possibly
    none); the other templates yield exactly one event.

    Parameters
    ----------
    frame
        The binary WebSocket frame.
    receive_time_ns
        Local receive time stamped on every event (nanoseconds since the epoch).

    Raises
    ------
    DecodeError
        The frame is truncated, has another schema id or an unknown template, a block length
        shorter than the schema's, a group larger than the frame, an invalid enum value or symbol,
        or trailing bytes (version 0).
    """
    size = len(frame)
    if size < HEADER_SIZE:
        raise DecodeError(_R.TRUNCATED, 0, f"{size} bytes, header needs {HEADER_SIZE}")
    block_length, template_id, schema_id, version = _HEADER.unpack_from(frame)
    if schema_id != SCHEMA_ID:
        raise DecodeError(_R.WRONG_SCHEMA, 4, f"schemaId {schema_id}, expected {SCHEMA_ID}")
    if template_id == TemplateId.BEST_BID_ASK:
        return [_best_bid_ask(frame, size, block_length, version, receive_time_ns)]
    if template_id == TemplateId.TRADES:
        return _trades(frame, size, block_length, version, receive_time_ns)
    if template_id == TemplateId.DEPTH_DIFF:
        return [_depth_diff(frame, size, block_length, version, receive_time_ns)]
    if template_id == TemplateId.DEPTH_SNAPSHOT:
        return [_depth_snapshot(frame, size, block_length, version, receive_time_ns)]
    raise DecodeError(_R.UNKNOWN_TEMPLATE, 2, f"templateId {template_id}")


def _root_end(size: int, block_length: int, known: int) -> int:
    """Check the root block and return the offset just past it."""
    if block_length < known:
        raise DecodeError(_R.BAD_BLOCK_LENGTH, 0, f"root blockLength {block_length} < {known}")
    end = HEADER_SIZE + block_length
    if end > size:
        raise DecodeError(_R.TRUNCATED, HEADER_SIZE, f"root block needs {end} bytes, have {size}")
    return end


def _symbol(frame: Buffer, offset: int, size: int, version: int) -> str:
    """Read the ``varString8`` symbol at ``offset``; it must end the frame in version 0."""
    if offset >= size:
        raise DecodeError(_R.TRUNCATED, offset, "symbol length missing")
    end = offset + 1 + frame[offset]
    if end > size:
        raise DecodeError(_R.TRUNCATED, offset, f"symbol needs {end} bytes, have {size}")
    if end != size and version <= SCHEMA_VERSION:
        raise DecodeError(_R.TRAILING_BYTES, end, f"{size - end} bytes after the symbol")
    raw = bytes(frame[offset + 1 : end])
    symbol = _SYMBOL_CACHE.get(raw)
    if symbol is None:
        symbol = _new_symbol(raw, offset)
    return symbol


def _new_symbol(raw: bytes, offset: int) -> str:
    if not raw:
        raise DecodeError(_R.BAD_SYMBOL, offset, "empty symbol")
    try:
        symbol = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(_R.BAD_SYMBOL, offset + 1 + exc.start, "invalid UTF-8") from None
    if len(_SYMBOL_CACHE) < _SYMBOL_CACHE_MAX:
        _SYMBOL_CACHE[raw] = symbol
    return symbol


def _group_end(
    header: int, header_size: int, size: int, entry_length: int, count: int, known: int
) -> int:
    """Check a group's dimensions and return the offset just past its entries.

    ``header`` is where the group header starts (blockLength u16, then numInGroup), the entries
    start ``header_size`` bytes later. Errors name the offending header field.
    """
    if entry_length < known:
        raise DecodeError(
            _R.BAD_BLOCK_LENGTH, header, f"entry blockLength {entry_length} < {known}"
        )
    end = header + header_size + entry_length * count
    if end > size:
        raise DecodeError(
            _R.GROUP_OVERFLOW, header + 2, f"{count} entries of {entry_length} bytes, have {size}"
        )
    return end


def _trades(frame: Buffer, size: int, block_length: int, version: int, recv: int) -> list[Event]:
    pos = _root_end(size, block_length, _TRADES_ROOT.size)
    event_time, transact_time, price_exp, qty_exp = _TRADES_ROOT.unpack_from(frame, HEADER_SIZE)
    if pos + _GROUP.size > size:
        raise DecodeError(_R.TRUNCATED, pos, "trades group header missing")
    entry_length, count = _GROUP.unpack_from(frame, pos)
    end = _group_end(pos, _GROUP.size, size, entry_length, count, _TRADE_ENTRY.size)
    pos += _GROUP.size
    symbol = _symbol(frame, end, size, version)
    trades: list[Event] = []
    unpack = _TRADE_ENTRY.unpack_from
    for entry in range(pos, end, entry_length):
        trade_id, price, qty, maker = unpack(frame, entry)
        if maker > 1:
            raise DecodeError(_R.BAD_ENUM, entry + 24, f"isBuyerMaker {maker}")
        trades.append(
            Trade(
                symbol,
                event_time,
                transact_time,
                trade_id,
                price,
                qty,
                price_exp,
                qty_exp,
                maker == 1,
                recv,
            )
        )
    return trades


def _best_bid_ask(frame: Buffer, size: int, block_length: int, version: int, recv: int) -> Event:
    end = _root_end(size, block_length, _BBA_ROOT.size)
    event_time, update_id, price_exp, qty_exp, bid, bid_qty, ask, ask_qty = _BBA_ROOT.unpack_from(
        frame, HEADER_SIZE
    )
    symbol = _symbol(frame, end, size, version)
    return BestBidAsk(
        symbol, event_time, update_id, price_exp, qty_exp, bid, bid_qty, ask, ask_qty, recv
    )


def _levels(frame: Buffer, pos: int, size: int) -> tuple[tuple[Level, ...], int]:
    """Read one ``groupSize16Encoding`` group of price levels; return it and the offset after."""
    if pos + _GROUP16.size > size:
        raise DecodeError(_R.TRUNCATED, pos, "level group header missing")
    entry_length, count = _GROUP16.unpack_from(frame, pos)
    end = _group_end(pos, _GROUP16.size, size, entry_length, count, _LEVEL.size)
    pos += _GROUP16.size
    if entry_length == _LEVEL.size:
        levels: tuple[Level, ...] = tuple(_LEVEL.iter_unpack(frame[pos:end]))
    else:
        unpack = _LEVEL.unpack_from
        levels = tuple(unpack(frame, entry) for entry in range(pos, end, entry_length))
    return levels, end


def _depth_diff(frame: Buffer, size: int, block_length: int, version: int, recv: int) -> Event:
    pos = _root_end(size, block_length, _DIFF_ROOT.size)
    event_time, first_id, last_id, price_exp, qty_exp = _DIFF_ROOT.unpack_from(frame, HEADER_SIZE)
    bids, pos = _levels(frame, pos, size)
    asks, pos = _levels(frame, pos, size)
    symbol = _symbol(frame, pos, size, version)
    return DepthDiff(symbol, event_time, first_id, last_id, price_exp, qty_exp, bids, asks, recv)


def _depth_snapshot(frame: Buffer, size: int, block_length: int, version: int, recv: int) -> Event:
    pos = _root_end(size, block_length, _SNAPSHOT_ROOT.size)
    event_time, update_id, price_exp, qty_exp = _SNAPSHOT_ROOT.unpack_from(frame, HEADER_SIZE)
    bids, pos = _levels(frame, pos, size)
    asks, pos = _levels(frame, pos, size)
    symbol = _symbol(frame, pos, size, version)
    return DepthSnapshot(symbol, event_time, update_id, price_exp, qty_exp, bids, asks, recv)
