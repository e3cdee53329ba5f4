"""Kinesis events exactly as Lambda delivers them, and a local Lambda context.

Used by the tests, the aggregator benchmark and the local stack to drive the real handler with
the event shape of an ``aws:kinesis`` event source mapping: base64 data, sequence numbers that
grow within a shard, and ``eventID = "<shardId>:<sequenceNumber>"``.
"""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from btcpred.records import KinesisRecord

__all__ = [
    "FIRST_SEQUENCE",
    "LocalLambdaContext",
    "kinesis_event",
    "load_lambda_module",
    "sequence_numbers",
]

FIRST_SEQUENCE: Final = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
"""A real-looking first sequence number (Kinesis' are 56-digit decimals)."""

_ACCOUNT, _REGION = "123456789012", "eu-west-1"


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


def kinesis_event(
    records: Sequence[KinesisRecord | bytes],
    sequences: Sequence[int],
    *,
    shard_id: str = "shardId-000000000000",
    stream: str = "btcpred-market-data",
    arrival_s: float = 1_723_161_600.0,
) -> dict[str, Any]:
    """A Lambda Kinesis event for ``records`` (raw bytes count as poison-able data)."""
    if len(records) != len(sequences):
        raise ValueError("one sequence number per record")
    out = []
    for record, sequence in zip(records, sequences, strict=True):
        data, key = (
            (record.data, record.partition_key)
            if isinstance(record, KinesisRecord)
            else (
                record,
                "BTCUSDT",
            )
        )
        out.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": key,
                    "sequenceNumber": str(sequence),
                    "data": base64.b64encode(data).decode("ascii"),
                    "approximateArrivalTimestamp": arrival_s,
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
