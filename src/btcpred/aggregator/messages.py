"""Fast decoding of Kinesis record data into what the feature engine needs.

The aggregator reads the record format of :mod:`btcpred.records` with a typed msgspec decoder
instead of building full events: prices become floats directly (``float(str)`` rounds the exact
decimal once, like :func:`btcpred.events.to_float`), and depth messages are checked only for type
and symbol because no feature reads their levels. Anything else — not JSON, an unknown
``message_type``, a missing or mistyped field, a non-finite or negative number — makes the whole
record a :class:`~btcpred.records.RecordFormatError` (a poison record).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import msgspec

from btcpred.records import RecordFormatError

__all__ = [
    "BookUpdate",
    "DepthMessage",
    "Message",
    "QuoteMessage",
    "QuoteUpdate",
    "TradeMessage",
    "TradeUpdate",
    "Update",
    "decode_record",
]


class TradeMessage(msgspec.Struct, tag_field="message_type", tag="trade", gc=False):
    """A trade message (``transact_time`` is the trade time; ``timestamp`` the event time)."""

    symbol: str
    timestamp: int
    trade_id: int
    price: str
    quantity: str
    transact_time: int | None = None


class QuoteMessage(msgspec.Struct, tag_field="message_type", tag="bestbidask", gc=False):
    """A best bid/ask message."""

    symbol: str
    timestamp: int
    bid_price: str
    bid_quantity: str
    ask_price: str
    ask_quantity: str
    update_id: int = 0


class DepthMessage(msgspec.Struct, tag_field="message_type", tag="depth", gc=False):
    """A depth diff; its levels are not decoded (no feature uses them)."""

    symbol: str
    timestamp: int


class DepthSnapshotMessage(
    msgspec.Struct, tag_field="message_type", tag="depth_snapshot", gc=False
):
    """A depth snapshot; levels not decoded."""

    symbol: str
    timestamp: int


Message = TradeMessage | QuoteMessage | DepthMessage | DepthSnapshotMessage
_DECODER = msgspec.json.Decoder(list[Message] | Message)


def number(text: str, *, positive: bool) -> float:
    """A decimal string as a finite float (> 0 if ``positive``, else >= 0).

    Raises
    ------
    RecordFormatError
        Not a number, not finite, or out of range.
    """
    try:
        value = float(text)
    except ValueError:
        raise RecordFormatError(f"not a decimal: {text[:32]!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise RecordFormatError(f"out of range: {text[:32]!r}")
    return value


class TradeUpdate(NamedTuple):
    """A validated trade, ready for :meth:`FeatureEngine.add_trade` (time = trade time, µs)."""

    symbol: str
    time_us: int
    trade_id: int
    price: float
    qty: float


class QuoteUpdate(NamedTuple):
    """A validated best bid/ask, ready for :meth:`FeatureEngine.add_quote`."""

    symbol: str
    time_us: int
    update_id: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float


class BookUpdate(NamedTuple):
    """A depth message: counted, not used by any feature."""

    symbol: str
    time_us: int


Update = TradeUpdate | QuoteUpdate | BookUpdate


def _update(message: Message) -> Update:
    if isinstance(message, TradeMessage):
        return TradeUpdate(
            message.symbol,
            message.transact_time or message.timestamp,
            message.trade_id,
            number(message.price, positive=True),
            number(message.quantity, positive=False),
        )
    if isinstance(message, QuoteMessage):
        return QuoteUpdate(
            message.symbol,
            message.timestamp,
            message.update_id,
            number(message.bid_price, positive=True),
            number(message.bid_quantity, positive=False),
            number(message.ask_price, positive=True),
            number(message.ask_quantity, positive=False),
        )
    return BookUpdate(message.symbol, message.timestamp)


def decode_record(data: bytes) -> list[Update]:
    """The validated updates of one record's data (a message or a JSON array of them).

    Raises
    ------
    RecordFormatError
        The data is not a valid record (see the module docstring); it names the message index.
    """
    try:
        decoded = _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise RecordFormatError(f"record is not valid: {exc}") from None
    messages = decoded if isinstance(decoded, list) else [decoded]
    updates = []
    for index, message in enumerate(messages):
        try:
            updates.append(_update(message))
        except RecordFormatError as exc:
            raise RecordFormatError(f"message {index}: {exc}") from None
    return updates
