"""The Kinesis record format: market events as the seed's JSON messages, packed into records.

One message is a JSON object (see ``docs/records.md`` for every field and unit)::

    {"message_type":"trade","symbol":"BTCUSDT","timestamp":1723161255343000,
     "transact_time":1723161255342000,"trade_id":3735683259,"price":"61837.63000000",
     "quantity":"0.02000000","is_buyer_maker":true,"receive_time_ns":1723161254087896568,
     "ingest_ts":1723161254090,"source":"sbe"}

``timestamp`` is the exchange event time in microseconds, ``ingest_ts`` the ingestor's send time
in milliseconds. Prices and quantities are exact decimal strings with every digit the exchange
sent, so a record turns back into the identical event. A record's data is one message or a JSON
array of messages, at most 1 MiB together with its partition key (the symbol), so bursts fit a
shard's 1,000 records/s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from btcpred.events import (
    GAP_REASONS,
    GAP_STREAMS,
    BestBidAsk,
    DepthDiff,
    DepthSnapshot,
    Gap,
    Level,
    StreamItem,
    Trade,
    common_exponent,
    format_decimal,
    parse_decimal,
    rescale,
)

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_ID",
    "MAX_RECORD_BYTES",
    "MAX_TIMESTAMP_US",
    "MIN_TIMESTAMP_US",
    "SOURCE_SBE",
    "KinesisRecord",
    "RecordFormatError",
    "RecordTooLargeError",
    "event_to_message",
    "message_to_event",
    "pack_records",
    "unpack_record",
]

MAX_RECORD_BYTES: Final = 1024 * 1024
"""Kinesis' limit on one record: data blob plus partition key, in bytes."""

SOURCE_SBE: Final = "sbe"

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
"""Every integer field is an SBE int64 on the exchange's side; nothing wider can be sent."""

MIN_TIMESTAMP_US: Final = 1_483_228_800_000_000
"""2017-01-01T00:00Z in µs: before Binance's first trade. A millisecond value lies far below."""
MAX_TIMESTAMP_US: Final = 4_102_444_800_000_000
"""2100-01-01T00:00Z in µs (exclusive). A nanosecond value lies far above."""
MAX_ID: Final = INT64_MAX
"""Trade and update ids are non-negative int64s."""


class RecordFormatError(ValueError):
    """A record or message is not in the documented format (permanent: do not retry)."""


class RecordTooLargeError(ValueError):
    """One message alone exceeds the record size limit (permanent)."""


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    """One record for ``PutRecords``: its partition key, data blob and message count."""

    partition_key: str
    data: bytes
    count: int


def _levels_out(levels: tuple[Level, ...], price_exp: int, qty_exp: int) -> list[list[str]]:
    return [[format_decimal(p, price_exp), format_decimal(q, qty_exp)] for p, q in levels]


def _gap_message(gap: Gap, ingest_ts_ms: int, source: str) -> dict[str, Any]:
    return {
        "message_type": "gap",
        "symbol": gap.symbol,
        "timestamp": gap.event_time_us,
        "stream": gap.stream,
        "from": gap.from_id,
        "to": gap.to_id,
        "reason": gap.reason,
        "receive_time_ns": gap.receive_time_ns,
        "ingest_ts": ingest_ts_ms,
        "source": source,
    }


def event_to_message(
    event: StreamItem, *, ingest_ts_ms: int, source: str = SOURCE_SBE
) -> dict[str, Any]:
    """Return the JSON message (as a dict) for one event or gap."""
    if isinstance(event, Gap):
        return _gap_message(event, ingest_ts_ms, source)
    pe, qe = event.price_exponent, event.qty_exponent
    head: dict[str, Any]
    if isinstance(event, Trade):
        head = {
            "message_type": "trade",
            "symbol": event.symbol,
            "timestamp": event.event_time_us,
            "transact_time": event.transact_time_us,
            "trade_id": event.trade_id,
            "price": format_decimal(event.price_mantissa, pe),
            "quantity": format_decimal(event.qty_mantissa, qe),
            "is_buyer_maker": event.is_buyer_maker,
        }
    elif isinstance(event, BestBidAsk):
        head = {
            "message_type": "bestbidask",
            "symbol": event.symbol,
            "timestamp": event.event_time_us,
            "update_id": event.update_id,
            "bid_price": format_decimal(event.bid_price_mantissa, pe),
            "bid_quantity": format_decimal(event.bid_qty_mantissa, qe),
            "ask_price": format_decimal(event.ask_price_mantissa, pe),
            "ask_quantity": format_decimal(event.ask_qty_mantissa, qe),
        }
    elif isinstance(event, DepthDiff):
        head = {
            "message_type": "depth",
            "symbol": event.symbol,
            "timestamp": event.event_time_us,
            "first_update_id": event.first_update_id,
            "final_update_id": event.last_update_id,
        }
    else:
        head = {
            "message_type": "depth_snapshot",
            "symbol": event.symbol,
            "timestamp": event.event_time_us,
            "last_update_id": event.last_update_id,
        }
    if isinstance(event, DepthDiff | DepthSnapshot):
        # The exponents travel explicitly: a message without levels has no strings to carry them.
        head["price_exponent"] = pe
        head["qty_exponent"] = qe
        head["bids"] = _levels_out(event.bids, pe, qe)
        head["asks"] = _levels_out(event.asks, pe, qe)
    head["receive_time_ns"] = event.receive_time_ns
    head["ingest_ts"] = ingest_ts_ms
    head["source"] = source
    return head


def _int(msg: dict[str, Any], key: str) -> int:
    value = msg[key]
    if type(value) is not int:
        raise TypeError(f"{key} must be an integer")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{key} is outside int64")
    return value


def _str(msg: dict[str, Any], key: str) -> str:
    value = msg[key]
    if type(value) is not str or not value:
        raise TypeError(f"{key} must be a non-empty string")
    return value


def _decimal(value: Any) -> tuple[int, int]:
    if type(value) is str:
        return parse_decimal(value)
    if type(value) is int:
        return value, 0
    if type(value) is float:  # a producer that wrote floats: exact value of its shortest repr
        return parse_decimal(repr(value))
    raise TypeError(f"expected a decimal string, got {type(value).__name__}")


def _pair(a: Any, b: Any) -> tuple[int, int, int]:
    """Two decimals at one common exponent: (mantissa a, mantissa b, exponent)."""
    (ma, mb), exponent = common_exponent([_decimal(a), _decimal(b)], 0)
    return ma, mb, exponent


def _levels_in(raw: Any, price_exp: int, qty_exp: int) -> tuple[Level, ...]:
    if not isinstance(raw, list):
        raise TypeError("levels must be a list of [price, quantity]")
    return tuple((rescale(*_decimal(p), price_exp), rescale(*_decimal(q), qty_exp)) for p, q in raw)


def _trade(msg: dict[str, Any], symbol: str, ts: int, recv: int) -> Trade:
    price, price_exp = _decimal(msg["price"])
    qty, qty_exp = _decimal(msg["quantity"])
    maker = msg["is_buyer_maker"]
    if type(maker) is not bool:
        raise TypeError("is_buyer_maker must be a boolean")
    transact = _int(msg, "transact_time") if "transact_time" in msg else ts
    return Trade(
        symbol, ts, transact, _int(msg, "trade_id"), price, qty, price_exp, qty_exp, maker, recv
    )


def _best_bid_ask(msg: dict[str, Any], symbol: str, ts: int, recv: int) -> BestBidAsk:
    bid, ask, pe = _pair(msg["bid_price"], msg["ask_price"])
    bid_qty, ask_qty, qe = _pair(msg["bid_quantity"], msg["ask_quantity"])
    update_id = _int(msg, "update_id") if "update_id" in msg else 0
    return BestBidAsk(symbol, ts, update_id, pe, qe, bid, bid_qty, ask, ask_qty, recv)


def _book(msg: dict[str, Any]) -> tuple[tuple[Level, ...], tuple[Level, ...], int, int]:
    pe, qe = _int(msg, "price_exponent"), _int(msg, "qty_exponent")
    return _levels_in(msg["bids"], pe, qe), _levels_in(msg["asks"], pe, qe), pe, qe


def _gap(msg: dict[str, Any], symbol: str, ts: int, recv: int) -> Gap:
    stream, reason = _str(msg, "stream"), _str(msg, "reason")
    if stream not in GAP_STREAMS:
        raise ValueError(f"unknown gap stream {stream[:20]!r}")
    if reason not in GAP_REASONS:
        raise ValueError(f"unknown gap reason {reason[:20]!r}")
    first, last = _int(msg, "from"), _int(msg, "to")
    if not 0 <= first <= last:
        raise ValueError(f"gap range {first}..{last} is empty or negative")
    return Gap(symbol, ts, stream, first, last, reason, recv)


def message_to_event(msg: Any) -> StreamItem:
    """Turn one JSON message (a dict) back into its event (or gap).

    Raises
    ------
    RecordFormatError
        A field is missing or of the wrong type, a decimal is malformed, or the message type is
        unknown.
    """
    if not isinstance(msg, dict):
        raise RecordFormatError(f"message is a {type(msg).__name__}, not an object")
    kind = msg.get("message_type")
    try:
        symbol, ts = _str(msg, "symbol"), _int(msg, "timestamp")
        recv = _int(msg, "receive_time_ns") if "receive_time_ns" in msg else 0
        if kind == "trade":
            return _trade(msg, symbol, ts, recv)
        if kind == "bestbidask":
            return _best_bid_ask(msg, symbol, ts, recv)
        if kind == "depth":
            bids, asks, pe, qe = _book(msg)
            first, final = _int(msg, "first_update_id"), _int(msg, "final_update_id")
            return DepthDiff(symbol, ts, first, final, pe, qe, bids, asks, recv)
        if kind == "depth_snapshot":
            bids, asks, pe, qe = _book(msg)
            return DepthSnapshot(symbol, ts, _int(msg, "last_update_id"), pe, qe, bids, asks, recv)
        if kind == "gap":
            return _gap(msg, symbol, ts, recv)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordFormatError(f"bad {kind} message: {type(exc).__name__}: {exc}") from None
    raise RecordFormatError(f"unknown message_type {str(kind)[:40]!r}")


def pack_records(
    events: Iterable[StreamItem],
    *,
    ingest_ts_ms: int,
    source: str = SOURCE_SBE,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> list[KinesisRecord]:
    """Pack events into as few records as the size limit allows, one partition key per symbol.

    Events keep their order within each symbol. A record holding one message carries the bare
    object, a record holding several a JSON array.

    Raises
    ------
    RecordTooLargeError
        One message alone does not fit ``max_record_bytes`` with its partition key.
    """
    open_parts: dict[str, list[bytes]] = {}
    open_sizes: dict[str, int] = {}
    records: list[KinesisRecord] = []
    for event in events:
        key = event.symbol
        limit = max_record_bytes - len(key.encode("utf-8"))
        blob = orjson.dumps(event_to_message(event, ingest_ts_ms=ingest_ts_ms, source=source))
        if len(blob) > limit:
            raise RecordTooLargeError(f"one {type(event).__name__} message is {len(blob)} bytes")
        parts = open_parts.setdefault(key, [])
        # An array of n parts costs 2 bytes of brackets and n - 1 commas.
        if parts and open_sizes[key] + 1 + len(blob) + 2 > limit:
            records.append(_record(key, parts))
            parts = open_parts[key] = []
        open_sizes[key] = (open_sizes[key] + 1 + len(blob)) if parts else len(blob)
        parts.append(blob)
    records.extend(_record(key, parts) for key, parts in open_parts.items() if parts)
    return records


def _record(key: str, parts: list[bytes]) -> KinesisRecord:
    data = parts[0] if len(parts) == 1 else b"[" + b",".join(parts) + b"]"
    return KinesisRecord(key, data, len(parts))


def unpack_record(data: bytes) -> list[StreamItem]:
    """Turn a record's data (one message or an array of them) back into events.

    Raises
    ------
    RecordFormatError
        The data is not JSON, or a message in it is malformed (the error names its index).
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RecordFormatError(f"record is not JSON: {exc}") from None
    if isinstance(obj, dict):
        return [message_to_event(obj)]
    if not isinstance(obj, list):
        raise RecordFormatError(f"record is a JSON {type(obj).__name__}")
    events: list[StreamItem] = []
    for index, msg in enumerate(obj):
        try:
            events.append(message_to_event(msg))
        except RecordFormatError as exc:
            raise RecordFormatError(f"message {index}: {exc}") from None
    return events
