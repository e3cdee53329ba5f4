"""A local Kinesis for the ingestor: moto's server as a subprocess, a reader, and throttling.

- :class:`MotoKinesisServer` runs ``python -m moto.server`` on a free loopback port (its own
  process, so a benchmark's producer does not share a core with it).
- :func:`create_stream` / :func:`read_stream` make a stream and read back everything in it,
  shard by shard from ``TRIM_HORIZON``, in sequence order.
- :class:`ThrottlingKinesis` wraps any client and fails a seeded share of the entries of each
  ``PutRecords`` call with ``ProvisionedThroughputExceededException`` — without forwarding
  them — because no local server throttles. It keeps every blob it forwarded, so a test can
  check that retries resend only failed entries (each blob lands exactly once).
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from btcpred.sim.services import Service, ServiceError, free_port, terminate

__all__ = [
    "MotoKinesisServer",
    "StoredRecord",
    "ThrottlingKinesis",
    "create_stream",
    "kinesis_client_for",
    "read_stream",
]


class MotoKinesisServer(Service):
    """``moto.server`` on 127.0.0.1 (Kinesis, S3, Secrets Manager...: moto serves them all)."""

    def __init__(self, *, start_timeout: float = 20.0) -> None:
        self._timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The endpoint URL, e.g. ``http://127.0.0.1:5123``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start the server and wait until it accepts connections.

        Raises
        ------
        ServiceError
            The process exits or does not listen before the deadline.
        """
        self.port = free_port()
        self._log = Path(tempfile.mkstemp(prefix="btcpred-moto-", suffix=".log")[1])
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with self._log.open("wb") as out:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self._log.read_text(errors="replace")[-2000:]
                self.stop()
                raise ServiceError(
                    f"moto.server exited ({self._proc and self._proc.returncode}):\n{tail}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ServiceError(f"moto.server did not listen within {self._timeout}s")

    def stop(self) -> None:
        """Terminate the server."""
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None


def kinesis_client_for(endpoint: str, region: str = "ap-northeast-1") -> Any:
    """A boto3 Kinesis client on a local endpoint with dummy credentials, configured like the
    ingestor's own (:func:`btcpred.ingest.aws.client_config`)."""
    import boto3

    from btcpred.ingest.aws import client_config

    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - a local stand-in's dummy credentials
        config=client_config(),
    )


def create_stream(client: Any, name: str, shards: int = 1, timeout_s: float = 10.0) -> None:
    """Create a provisioned stream and wait until it is ACTIVE."""
    client.create_stream(StreamName=name, ShardCount=shards)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if status["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.05)
    raise ServiceError(f"stream {name} not ACTIVE within {timeout_s}s")


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One record as Kinesis holds it."""

    shard_id: str
    sequence_number: int
    partition_key: str
    data: bytes


def read_stream(client: Any, name: str) -> list[StoredRecord]:
    """Every record of the stream, shard by shard, each shard in sequence order."""
    found: list[StoredRecord] = []
    shards = client.list_shards(StreamName=name)["Shards"]
    for shard in shards:
        iterator = client.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            found += [
                StoredRecord(
                    shard["ShardId"], int(r["SequenceNumber"]), r["PartitionKey"], r["Data"]
                )
                for r in page["Records"]
            ]
            if not page["Records"] or page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return found


class ThrottlingKinesis:
    """A Kinesis client that refuses a share of the entries (see the module docstring).

    ``fail_share`` of the entries of each call fail (seeded); ``fail_calls`` whole calls raise
    first (a network error), before any entry fails.
    """

    def __init__(self, client: Any, *, fail_share: float = 0.0, seed: int = 0) -> None:
        self.client = client
        self.fail_share = fail_share
        self.rng = random.Random(seed)  # noqa: S311 - seeded fault injection
        self.calls = 0
        self.entries_seen = 0
        self.entries_failed = 0
        self.forwarded: list[bytes] = []
        self.fail_calls = 0
        self.delay_s = 0.0
        self._lock = threading.Lock()

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        """Forward the entries that are not refused; answer like Kinesis for all of them."""
        entries = kwargs["Records"]
        with self._lock:
            self.calls += 1
            self.entries_seen += len(entries)
            if self.fail_calls > 0:
                self.fail_calls -= 1
                raise ConnectionError("injected: the call did not reach Kinesis")
            refused = [self.rng.random() < self.fail_share for _ in entries]
        if self.delay_s:
            time.sleep(self.delay_s)
        passed = [e for e, r in zip(entries, refused, strict=True) if not r]
        answer = iter(
            self.client.put_records(StreamName=kwargs["StreamName"], Records=passed)["Records"]
            if passed
            else []
        )
        results: list[dict[str, Any]] = []
        failed = 0
        for refuse in refused:
            if refuse:
                failed += 1
                results.append(
                    {
                        "ErrorCode": "ProvisionedThroughputExceededException",
                        "ErrorMessage": "Rate exceeded for shard (injected)",
                    }
                )
            else:
                results.append(next(answer))
        with self._lock:
            self.entries_failed += failed
            self.forwarded += [e["Data"] for e in passed]
        return {"FailedRecordCount": failed, "Records": results}
