"""Encoder for Binance's spot SBE stream frames (schema id 1, version 0, little-endian).

Written from ``stream_1_0.xml`` field by field, independently of the decoder, so that the two
check each other in the round-trip tests. It serves the exchange simulator, the replay and the
tests. ``version``, ``root_extra`` and ``entry_extra`` let tests build frames of a hypothetical
newer schema version (fields appended to the root block and to group entries).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from btcpred.events import BestBidAsk, DepthDiff, Event, Level, Trade
from btcpred.sbe.errors import EncodeError
from btcpred.sbe.schema import SCHEMA_ID, SCHEMA_VERSION, TemplateId

__all__ = [
    "TradeEntry",
    "encode_best_bid_ask",
    "encode_depth_diff",
    "encode_depth_snapshot",
    "encode_event",
    "encode_events",
    "encode_group",
    "encode_trades",
    "frame_groups",
]

TradeEntry = tuple[int, int, int, bool]
"""A ``trades`` group entry: ``(trade_id, price_mantissa, qty_mantissa, is_buyer_maker)``."""

_I64 = (-(2**63), 2**63 - 1)
_I8 = (-128, 127)


def _check(name: str, value: int, bounds: tuple[int, int]) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise EncodeError(f"{name}={value} does not fit the schema's type")


_U16 = (0, 0xFFFF)


def _header(root_length: int, template: TemplateId, version: int) -> bytes:
    # messageHeader: blockLength, templateId, schemaId, version; all uint16.
    _check("version", version, _U16)
    _check("root blockLength", root_length, _U16)
    return (
        struct.pack("<H", root_length)
        + struct.pack("<H", int(template))
        + struct.pack("<H", SCHEMA_ID)
        + struct.pack("<H", version)
    )


def _symbol(symbol: str) -> bytes:
    # varString8: uint8 length, then UTF-8 bytes.
    raw = symbol.encode("utf-8")
    if not 1 <= len(raw) <= 255:
        raise EncodeError(f"symbol must be 1-255 UTF-8 bytes, got {len(raw)}")
    return bytes([len(raw)]) + raw


def _levels(levels: Sequence[Level], entry_extra: bytes) -> bytes:
    # groupSize16Encoding: blockLength uint16, numInGroup uint16; entries price int64, qty int64.
    if len(levels) > 0xFFFF:
        raise EncodeError(f"{len(levels)} levels exceed the uint16 group count")
    _check("level blockLength", 16 + len(entry_extra), _U16)
    out = [struct.pack("<H", 16 + len(entry_extra)), struct.pack("<H", len(levels))]
    for price, qty in levels:
        _check("level price", price, _I64)
        _check("level qty", qty, _I64)
        out.append(struct.pack("<q", price) + struct.pack("<q", qty) + entry_extra)
    return b"".join(out)


def encode_trades(
    symbol: str,
    event_time_us: int,
    transact_time_us: int,
    price_exponent: int,
    qty_exponent: int,
    trades: Iterable[TradeEntry],
    *,
    version: int = SCHEMA_VERSION,
    root_extra: bytes = b"",
    entry_extra: bytes = b"",
) -> bytes:
    """Encode a ``TradesStreamEvent`` (template 10000) carrying one or more trades."""
    for name, value in (("event_time_us", event_time_us), ("transact_time_us", transact_time_us)):
        _check(name, value, _I64)
    _check("price_exponent", price_exponent, _I8)
    _check("qty_exponent", qty_exponent, _I8)
    entries = []
    for trade_id, price, qty, is_buyer_maker in trades:
        for name, value in (("trade_id", trade_id), ("price", price), ("qty", qty)):
            _check(name, value, _I64)
        # id int64, price int64, qty int64, isBuyerMaker uint8 (isBestMatch: constant, absent)
        entries.append(
            struct.pack("<q", trade_id)
            + struct.pack("<q", price)
            + struct.pack("<q", qty)
            + struct.pack("<B", 1 if is_buyer_maker else 0)
            + entry_extra
        )
    root = (
        struct.pack("<q", event_time_us)
        + struct.pack("<q", transact_time_us)
        + struct.pack("<b", price_exponent)
        + struct.pack("<b", qty_exponent)
        + root_extra
    )
    # groupSizeEncoding: blockLength uint16, numInGroup uint32 (maxValue 2^31 - 1)
    _check("trade blockLength", 25 + len(entry_extra), _U16)
    _check("trade count", len(entries), (0, 2**31 - 1))
    group = struct.pack("<H", 25 + len(entry_extra)) + struct.pack("<I", len(entries))
    return (
        _header(len(root), TemplateId.TRADES, version)
        + root
        + group
        + b"".join(entries)
        + _symbol(symbol)
    )


def encode_best_bid_ask(
    symbol: str,
    event_time_us: int,
    update_id: int,
    price_exponent: int,
    qty_exponent: int,
    bid: tuple[int, int],
    ask: tuple[int, int],
    *,
    version: int = SCHEMA_VERSION,
    root_extra: bytes = b"",
) -> bytes:
    """Encode a ``BestBidAskStreamEvent`` (template 10001); ``bid``/``ask`` are (price, qty)."""
    values = (event_time_us, update_id, bid[0], bid[1], ask[0], ask[1])
    for name, value in zip(
        ("event_time_us", "update_id", "bid", "bid_qty", "ask", "ask_qty"), values, strict=True
    ):
        _check(name, value, _I64)
    _check("price_exponent", price_exponent, _I8)
    _check("qty_exponent", qty_exponent, _I8)
    root = (
        struct.pack("<q", event_time_us)
        + struct.pack("<q", update_id)
        + struct.pack("<b", price_exponent)
        + struct.pack("<b", qty_exponent)
        + struct.pack("<q", bid[0])
        + struct.pack("<q", bid[1])
        + struct.pack("<q", ask[0])
        + struct.pack("<q", ask[1])
        + root_extra
    )
    return _header(len(root), TemplateId.BEST_BID_ASK, version) + root + _symbol(symbol)


def encode_depth_snapshot(
    symbol: str,
    event_time_us: int,
    update_id: int,
    price_exponent: int,
    qty_exponent: int,
    bids: Sequence[Level],
    asks: Sequence[Level],
    *,
    version: int = SCHEMA_VERSION,
    root_extra: bytes = b"",
    entry_extra: bytes = b"",
) -> bytes:
    """Encode a ``DepthSnapshotStreamEvent`` (template 10002)."""
    _check("event_time_us", event_time_us, _I64)
    _check("update_id", update_id, _I64)
    _check("price_exponent", price_exponent, _I8)
    _check("qty_exponent", qty_exponent, _I8)
    root = (
        struct.pack("<q", event_time_us)
        + struct.pack("<q", update_id)
        + struct.pack("<b", price_exponent)
        + struct.pack("<b", qty_exponent)
        + root_extra
    )
    return (
        _header(len(root), TemplateId.DEPTH_SNAPSHOT, version)
        + root
        + _levels(bids, entry_extra)
        + _levels(asks, entry_extra)
        + _symbol(symbol)
    )


def encode_depth_diff(
    symbol: str,
    event_time_us: int,
    first_update_id: int,
    last_update_id: int,
    price_exponent: int,
    qty_exponent: int,
    bids: Sequence[Level],
    asks: Sequence[Level],
    *,
    version: int = SCHEMA_VERSION,
    root_extra: bytes = b"",
    entry_extra: bytes = b"",
) -> bytes:
    """Encode a ``DepthDiffStreamEvent`` (template 10003)."""
    _check("event_time_us", event_time_us, _I64)
    _check("first_update_id", first_update_id, _I64)
    _check("last_update_id", last_update_id, _I64)
    _check("price_exponent", price_exponent, _I8)
    _check("qty_exponent", qty_exponent, _I8)
    root = (
        struct.pack("<q", event_time_us)
        + struct.pack("<q", first_update_id)
        + struct.pack("<q", last_update_id)
        + struct.pack("<b", price_exponent)
        + struct.pack("<b", qty_exponent)
        + root_extra
    )
    return (
        _header(len(root), TemplateId.DEPTH_DIFF, version)
        + root
        + _levels(bids, entry_extra)
        + _levels(asks, entry_extra)
        + _symbol(symbol)
    )


def encode_event(event: Event) -> bytes:
    """Encode one event as one frame (a trade becomes a trades frame with one entry)."""
    if isinstance(event, Trade):
        return _encode_trade_run([event])
    if isinstance(event, BestBidAsk):
        return encode_best_bid_ask(
            event.symbol,
            event.event_time_us,
            event.update_id,
            event.price_exponent,
            event.qty_exponent,
            (event.bid_price_mantissa, event.bid_qty_mantissa),
            (event.ask_price_mantissa, event.ask_qty_mantissa),
        )
    if isinstance(event, DepthDiff):
        return encode_depth_diff(
            event.symbol,
            event.event_time_us,
            event.first_update_id,
            event.last_update_id,
            event.price_exponent,
            event.qty_exponent,
            event.bids,
            event.asks,
        )
    return encode_depth_snapshot(
        event.symbol,
        event.event_time_us,
        event.last_update_id,
        event.price_exponent,
        event.qty_exponent,
        event.bids,
        event.asks,
    )


def _trade_frame_key(trade: Trade) -> tuple[str, int, int, int, int]:
    """Trades that share this key can travel in one frame, as the exchange sends them."""
    return (
        trade.symbol,
        trade.event_time_us,
        trade.transact_time_us,
        trade.price_exponent,
        trade.qty_exponent,
    )


def _encode_trade_run(trades: Sequence[Trade]) -> bytes:
    first = trades[0]
    return encode_trades(
        first.symbol,
        first.event_time_us,
        first.transact_time_us,
        first.price_exponent,
        first.qty_exponent,
        [(t.trade_id, t.price_mantissa, t.qty_mantissa, t.is_buyer_maker) for t in trades],
    )


def frame_groups(events: Iterable[Event]) -> list[list[Event]]:
    """Split events into the groups that travel as one frame each.

    Consecutive trades with the same symbol, event time, transact time and exponents share a
    frame (the exchange sends the fills of one taker order together); every other event is a
    frame of its own.
    """
    groups: list[list[Event]] = []
    run_key: tuple[str, int, int, int, int] | None = None
    for event in events:
        key = _trade_frame_key(event) if isinstance(event, Trade) else None
        if key is not None and key == run_key:
            groups[-1].append(event)
        else:
            groups.append([event])
        run_key = key
    return groups


def encode_group(group: Sequence[Event]) -> bytes:
    """Encode one group from :func:`frame_groups` as one frame."""
    if len(group) == 1:
        return encode_event(group[0])
    trades = [event for event in group if isinstance(event, Trade)]
    if len(trades) != len(group) or len({_trade_frame_key(t) for t in trades}) != 1:
        raise EncodeError("only trades of one match (same times and exponents) share a frame")
    return _encode_trade_run(trades)


def encode_events(events: Iterable[Event]) -> list[bytes]:
    """Encode events into frames as the exchange would send them (see :func:`frame_groups`).

    Decoding the frames in order gives back the same events (receive times aside).
    """
    return [encode_group(group) for group in frame_groups(events)]
