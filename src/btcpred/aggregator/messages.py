"""Fast decoding of Kinesis record data into what the feature engine needs.

The aggregator reads the record format of :mod:`btcpred.records` with one typed msgspec decoder
instead of building full events. Decimal strings become floats inside the decoder (msgspec's
correctly rounded parser: the same float as :func:`btcpred.events.to_float` of the exact
decimal; a test checks every number of the capture), validated by range: prices in (0, 1e12),
quantities in [0, 1e12). Integers are bounded to what the exchange can send (docs/records.md):
timestamps are microseconds in [2017-01-01, 2100-01-01) — a millisecond or nanosecond value
falls outside — and trade and update ids in [0, 2**63). Depth messages are checked for type and
symbol only, because no feature reads their levels. Anything else — not JSON, bytes that are not
UTF-8, an unknown ``message_type``, a missing, mistyped or out-of-range field, ``"nan"``, a
negative price — makes the whole record a :class:`~btcpred.records.RecordFormatError` (a poison
record), never another exception. The decoder is lax in one way: numbers may come as JSON numbers
or as strings.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from btcpred.records import MAX_ID, MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, RecordFormatError

__all__ = [
    "DepthMessage",
    "DepthSnapshotMessage",
    "GapMessage",
    "Message",
    "QuoteMessage",
    "TradeMessage",
    "decode_record",
]

Price = Annotated[float, msgspec.Meta(gt=0, lt=1e12)]
Quantity = Annotated[float, msgspec.Meta(ge=0, lt=1e12)]
Timestamp = Annotated[int, msgspec.Meta(ge=MIN_TIMESTAMP_US, lt=MAX_TIMESTAMP_US)]
Id = Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]


class TradeMessage(msgspec.Struct, tag_field="message_type", tag="trade", gc=False):
    """A trade (``transact_time`` is the trade time, ``timestamp`` the event time; µs)."""

    symbol: str
    timestamp: Timestamp
    trade_id: Id
    price: Price
    quantity: Quantity
    transact_time: Timestamp | None = None

    @property
    def time_us(self) -> int:
        """The trade's time: its transact time when present."""
        return self.transact_time or self.timestamp


class QuoteMessage(msgspec.Struct, tag_field="message_type", tag="bestbidask", gc=False):
    """A best bid/ask."""

    symbol: str
    timestamp: Timestamp
    bid_price: Price
    bid_quantity: Quantity
    ask_price: Price
    ask_quantity: Quantity
    update_id: Id | None = None
    """The book update id when the source has one; the engine orders quotes by time first."""

    @property
    def time_us(self) -> int:
        """The quote's event time."""
        return self.timestamp


class DepthMessage(msgspec.Struct, tag_field="message_type", tag="depth", gc=False):
    """A depth diff; its levels are not decoded (no feature uses them)."""

    symbol: str
    timestamp: Timestamp

    @property
    def time_us(self) -> int:
        """The event time."""
        return self.timestamp


class DepthSnapshotMessage(
    msgspec.Struct, tag_field="message_type", tag="depth_snapshot", gc=False
):
    """A depth snapshot; levels not decoded."""

    symbol: str
    timestamp: Timestamp

    @property
    def time_us(self) -> int:
        """The event time."""
        return self.timestamp


class GapMessage(
    msgspec.Struct,
    tag_field="message_type",
    tag="gap",
    gc=False,
    rename={"from_id": "from", "to_id": "to"},
):
    """The ingestor's record of missing ids (``from..to`` inclusive): counted, never applied."""

    symbol: str
    timestamp: Timestamp
    stream: str
    from_id: Id
    to_id: Id
    reason: str = ""

    @property
    def time_us(self) -> int:
        """The time the gap was detected."""
        return self.timestamp

    @property
    def size(self) -> int:
        """How many ids are missing (0 for a malformed range, which is counted as a gap)."""
        return max(0, self.to_id - self.from_id + 1)


Message = TradeMessage | QuoteMessage | DepthMessage | DepthSnapshotMessage | GapMessage
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
    except UnicodeError:  # msgspec raises it for a non-UTF-8 byte inside a string
        raise RecordFormatError("record is not valid UTF-8") from None
    return decoded if isinstance(decoded, list) else [decoded]
