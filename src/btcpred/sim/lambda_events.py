"""Kinesis events exactly as Lambda delivers them, and a local Lambda context.

Used by the tests, the aggregator benchmark and the local stack to drive the real handler with
the event shape of an ``aws:kinesis`` event source mapping: base64 data, sequence numbers that
grow within a shard, ``eventID = "<shardId>:<sequenceNumber>"``, the partition key (the symbol)
and ``approximateArrivalTimestamp`` (by default 50 ms after the newest event in the record, as
if Kinesis had received it live). :func:`split_by_partition_key` turns one shard's event into
the concurrent batches Lambda runs under a ParallelizationFactor above 1.
"""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import orjson

from btcpred.records import KinesisRecord

__all__ = [
    "DEFAULT_ARRIVAL_S",
    "FIRST_SEQUENCE",
    "LocalLambdaContext",
    "kinesis_event",
    "load_lambda_module",
    "record_arrival_s",
    "sequence_numbers",
    "split_by_partition_key",
]

FIRST_SEQUENCE: Final = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
"""A real-looking first sequence number (Kinesis' are 56-digit decimals)."""

_ACCOUNT, _REGION = "123456789012", "eu-west-1"
_LATENCY_S: Final = 0.05
"""Default ingest latency: an arrival time 50 ms after the record's newest event."""
DEFAULT_ARRIVAL_S: Final = 1_723_161_600.0
"""Arrival time of a record whose data names no time (raw bytes): 2024-08-09T00:00Z."""


def load_lambda_module(path: Path, name: str) -> ModuleType:
    """Import a handler file as a fresh module: what a Lambda cold start does.

    Raises
    ------
    FileNotFoundError
        No handler at ``path`` (the ``lambdas/`` tree is in the source checkout only).
    """
    spec = importlib.util.spec_from_file_location(name, path)
    if not path.is_file() or spec is None or spec.loader is None:
        raise FileNotFoundError(f"no Lambda handler at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sequence_numbers(count: int, start: int = FIRST_SEQUENCE, step: int = 1_000) -> list[int]:
    """``count`` increasing sequence numbers from ``start``."""
    return [start + i * step for i in range(count)]


def record_arrival_s(data: bytes) -> float | None:
    """Epoch seconds 50 ms after the newest ``timestamp`` (µs) in a record's data, if any."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    messages = obj if isinstance(obj, list) else [obj]
    stamps = [
        m["timestamp"] for m in messages if isinstance(m, dict) and type(m.get("timestamp")) is int
    ]
    return max(stamps) / 1e6 + _LATENCY_S if stamps else None


def kinesis_event(
    records: Sequence[KinesisRecord | bytes],
    sequences: Sequence[int],
    *,
    shard_id: str = "shardId-000000000000",
    stream: str = "btcpred-market-data",
    arrival_s: float | Sequence[float] | None = None,
    partition_key: str = "BTCUSDT",
) -> dict[str, Any]:
    """A Lambda Kinesis event for ``records`` (raw bytes count as poison-able data).

    ``arrival_s`` is one arrival time for every record, one per record, or ``None``: each
    record's own (:func:`record_arrival_s`; a record without one takes its predecessor's, the
    first one :data:`DEFAULT_ARRIVAL_S`). Raw bytes travel under ``partition_key``.
    """
    if len(records) != len(sequences):
        raise ValueError("one sequence number per record")
    arrivals = _arrivals(records, arrival_s)
    out = []
    for record, sequence, arrival in zip(records, sequences, arrivals, strict=True):
        data, key = (
            (record.data, record.partition_key)
            if isinstance(record, KinesisRecord)
            else (record, partition_key)
        )
        out.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": key,
                    "sequenceNumber": str(sequence),
                    "data": base64.b64encode(data).decode("ascii"),
                    "approximateArrivalTimestamp": arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{sequence}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::{_ACCOUNT}:role/btcpred-aggregator",
                "awsRegion": _REGION,
                "eventSourceARN": f"arn:aws:kinesis:{_REGION}:{_ACCOUNT}:stream/{stream}",
            }
        )
    return {"Records": out}


def _arrivals(
    records: Sequence[KinesisRecord | bytes], arrival_s: float | Sequence[float] | None
) -> list[float]:
    if isinstance(arrival_s, int | float):
        return [float(arrival_s)] * len(records)
    if arrival_s is not None:
        if len(arrival_s) != len(records):
            raise ValueError("one arrival time per record")
        return [float(a) for a in arrival_s]
    out, last = [], DEFAULT_ARRIVAL_S
    for record in records:
        data = record.data if isinstance(record, KinesisRecord) else record
        last = record_arrival_s(data) or last
        out.append(last)
    return out


def split_by_partition_key(event: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One shard's event as the per-partition-key batches of a ParallelizationFactor > 1.

    Lambda keeps each partition key's records in order but runs the keys' batches side by side:
    their sequence numbers interleave. Here every key gets its own batch (the limit of a large
    factor), keyed by partition key, in first-appearance order.
    """
    batches: dict[str, list[dict[str, Any]]] = {}
    for record in event["Records"]:
        batches.setdefault(record["kinesis"]["partitionKey"], []).append(record)
    return {key: {"Records": records} for key, records in batches.items()}


@dataclass
class LocalLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str = "btcpred-aggregator"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"
    remaining_ms: int = 60_000
    function_version: str = "$LATEST"

    @property
    def invoked_function_arn(self) -> str:
        """The function's ARN."""
        return f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        """The function's log group."""
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        """A log stream name."""
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left (fixed)."""
        return self.remaining_ms
