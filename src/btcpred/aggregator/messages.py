"""Fast decoding of Kinesis record data into what the feature engine needs.

The aggregator reads the record format of :mod:`btcpred.records` with one typed msgspec decoder
instead of building full events. Decimal strings become floats inside the decoder (msgspec's
correctly rounded parser: the same float as :func:`btcpred.events.to_float` of the exact
decimal; a test checks every number of the capture), validated by range: prices in (0, 1e12),
quantities in [0, 1e12). Depth messages are checked for type and symbol only, because no feature
reads their levels. Anything else — not JSON, an unknown ``message_type``, a missing or mistyped
field, ``"nan"``, a negative price — makes the whole record a
:class:`~btcpred.records.RecordFormatError` (a poison record). The decoder is lax in one way:
numbers may come as JSON numbers or as strings.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from btcpred.records import RecordFormatError

__all__ = [
    "DepthMessage",
    "DepthSnapshotMessage",
    "Message",
    "QuoteMessage",
    "TradeMessage",
    "decode_record",
]

Price = Annotated[float, msgspec.Meta(gt=0, lt=1e12)]
Quantity = Annotated[float, msgspec.Meta(ge=0, lt=1e12)]


class TradeMessage(msgspec.Struct, tag_field="message_type", tag="trade", gc=False):
    """A trade (``transact_time`` is the trade time, ``timestamp`` the event time; µs)."""

    symbol: str
    timestamp: int
    trade_id: int
    price: Price
    quantity: Quantity
    transact_time: int | None = None

    @property
    def time_us(self) -> int:
        """The trade's time: its transact time when present."""
        return self.transact_time or self.timestamp


class QuoteMessage(msgspec.Struct, tag_field="message_type", tag="bestbidask", gc=False):
    """A best bid/ask."""

    symbol: str
    timestamp: int
    bid_price: Price
    bid_quantity: Quantity
    ask_price: Price
    ask_quantity: Quantity
    update_id: int = 0

    @property
    def time_us(self) -> int:
        """The quote's event time."""
        return self.timestamp


class DepthMessage(msgspec.Struct, tag_field="message_type", tag="depth", gc=False):
    """A depth diff; its levels are not decoded (no feature uses them)."""

    symbol: str
    timestamp: int

    @property
    def time_us(self) -> int:
        """The event time."""
        return self.timestamp


class DepthSnapshotMessage(
    msgspec.Struct, tag_field="message_type", tag="depth_snapshot", gc=False
):
    """A depth snapshot; levels not decoded."""

    symbol: str
    timestamp: int

    @property
    def time_us(self) -> int:
        """The event time."""
        return self.timestamp


Message = TradeMessage | QuoteMessage | DepthMessage | DepthSnapshotMessage
_DECODER = msgspec.json.Decoder(list[Message] | Message, strict=False)


def decode_record(data: bytes) -> list[Message]:
    """The validated messages of one record's data (a message or a JSON array of them).

    Raises
    ------
    RecordFormatError
        The data is not a valid record (see the module docstring); the message says where.
    """
    try:
        decoded = _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise RecordFormatError(f"record is not valid: {exc}") from None
    return decoded if isinstance(decoded, list) else [decoded]
