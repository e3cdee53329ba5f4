"""The Lambda Kinesis event, checked at the edge: what the aggregator needs of each record.

An ``aws:kinesis`` event is ``{"Records": [...]}``; each record carries ``eventID``
(``"<shardId>:<sequenceNumber>"``) and ``kinesis`` with ``partitionKey``, ``sequenceNumber``,
``data`` (base64) and ``approximateArrivalTimestamp`` (epoch seconds, a float)::

    {"Records": [{"eventID": "shardId-000000000000:4959...", "kinesis": {"partitionKey":
      "BTCUSDT", "sequenceNumber": "4959...", "data": "eyJtZXNz...", "approximateArrivalTimestamp":
      1723161600.123}, ...}]}

Bad *data* is a poison record (the aggregator's business, per ``POISON_RECORD_POLICY``); a bad
*envelope* — not a dict, no ``Records`` list, a record without a shard, sequence number,
partition key or data — is not something Lambda sends, cannot be reported per item (there is no
sequence number to name), and raises :class:`InvalidEventError`. ``Records: []`` is valid.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["InvalidEventError", "KinesisInput", "kinesis_inputs"]

_SHARD: Final = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_SEQUENCE: Final = re.compile(r"[0-9]{1,128}")
_MAX_EPOCH_S: Final = 4_102_444_800  # 2100-01-01


class InvalidEventError(ValueError):
    """The Lambda event is not a Kinesis event (permanent: a wiring mistake, not data)."""


@dataclass(frozen=True, slots=True)
class KinesisInput:
    """One record's envelope: where it sits in the stream and its (still encoded) data."""

    shard_id: str
    sequence_number: int
    partition_key: str
    data: str
    arrival_us: int | None


def _record(index: int, raw: Any) -> KinesisInput:
    kinesis = raw.get("kinesis") if isinstance(raw, dict) else None
    if not isinstance(kinesis, dict):
        raise InvalidEventError(f"Records[{index}] has no kinesis object")
    event_id, sequence = raw.get("eventID"), kinesis.get("sequenceNumber")
    key, data = kinesis.get("partitionKey"), kinesis.get("data")
    if not isinstance(sequence, str) or not _SEQUENCE.fullmatch(sequence):
        raise InvalidEventError(f"Records[{index}] has no decimal sequenceNumber")
    shard = event_id.rsplit(":", 1)[0] if isinstance(event_id, str) else ""
    if not _SHARD.fullmatch(shard) or event_id != f"{shard}:{sequence}":
        raise InvalidEventError(f"Records[{index}].eventID is not <shardId>:<sequenceNumber>")
    if not isinstance(key, str) or not isinstance(data, str):
        raise InvalidEventError(f"Records[{index}] lacks a partitionKey or data string")
    arrival_us = _arrival_us(kinesis.get("approximateArrivalTimestamp"))
    return KinesisInput(shard, int(sequence), key, data, arrival_us)


def _arrival_us(value: Any) -> int | None:
    """Epoch seconds → µs; anything else (absent, not a finite positive number) → unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or not 0 < value < _MAX_EPOCH_S:
        return None
    return round(value * 1_000_000)


def kinesis_inputs(event: object) -> list[KinesisInput]:
    """The records of a Lambda Kinesis event, in delivery order.

    Raises
    ------
    InvalidEventError
        ``event`` is not a Kinesis event (see the module docstring).
    """
    if not isinstance(event, dict):
        raise InvalidEventError(f"the event is a {type(event).__name__}, not an object")
    records = event.get("Records")
    if not isinstance(records, list):
        raise InvalidEventError("the event has no Records list")
    return [_record(i, raw) for i, raw in enumerate(records)]
