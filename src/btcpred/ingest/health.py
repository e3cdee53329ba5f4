"""The ingestor's heartbeat file and the container health check (``btcpred ingest-health``).

The running ingestor rewrites a small JSON file every couple of seconds (atomically: write,
then rename). The health check reads only that file — it never calls the exchange or Kinesis —
and says unhealthy when the file is stale, no frame arrived for ``max_frame_age_s``, nothing
was acknowledged by Kinesis for ``max_ack_age_s`` while messages wait, or the buffer is above
``max_fill``. A process still inside its start-up grace is healthy without frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

__all__ = ["Heartbeat", "HealthBounds", "check_health", "read_heartbeat", "write_heartbeat"]


class Heartbeat(msgspec.Struct, frozen=True):
    """What the ingestor last said about itself (times in ns since the epoch; 0 = never)."""

    pid: int
    written_ns: int
    started_ns: int
    last_frame_ns: int
    last_ack_ns: int
    buffer_fill: float
    queued_messages: int
    connected: bool


@dataclass(frozen=True, slots=True)
class HealthBounds:
    """Thresholds of the health check (the stack's health check and alarms match them)."""

    max_heartbeat_age_s: float = 30.0
    max_frame_age_s: float = 90.0
    max_ack_age_s: float = 90.0
    max_fill: float = 0.9
    start_grace_s: float = 60.0


def write_heartbeat(path: Path, beat: Heartbeat) -> None:
    """Replace the heartbeat file atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(msgspec.json.encode(beat))
    os.replace(tmp, path)


def read_heartbeat(path: Path) -> Heartbeat:
    """Read the heartbeat file.

    Raises
    ------
    OSError
        The file cannot be read.
    msgspec.DecodeError
        It is not a heartbeat.
    """
    return msgspec.json.decode(path.read_bytes(), type=Heartbeat)


def check_health(beat: Heartbeat, now_ns: int, bounds: HealthBounds) -> str | None:
    """None when healthy, else why not."""
    age = (now_ns - beat.written_ns) / 1e9
    if age > bounds.max_heartbeat_age_s:
        return f"heartbeat is {age:.0f} s old (process hung or gone)"
    in_grace = (now_ns - beat.started_ns) / 1e9 < bounds.start_grace_s
    frame_age = (now_ns - beat.last_frame_ns) / 1e9 if beat.last_frame_ns else None
    if not in_grace and (frame_age is None or frame_age > bounds.max_frame_age_s):
        seen = "never" if frame_age is None else f"{frame_age:.0f} s ago"
        return f"no frame from the exchange for too long (last {seen})"
    ack_age = (now_ns - (beat.last_ack_ns or beat.started_ns)) / 1e9
    if beat.queued_messages and not in_grace and ack_age > bounds.max_ack_age_s:
        waiting = beat.queued_messages
        return f"{waiting} messages wait and Kinesis acknowledged nothing for {ack_age:.0f} s"
    if beat.buffer_fill > bounds.max_fill:
        return f"buffer {beat.buffer_fill:.0%} full"
    return None
