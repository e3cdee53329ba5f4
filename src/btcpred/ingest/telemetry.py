"""The ingestor's heartbeat file and EMF metrics, taken from its running totals."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from btcpred.ingest.health import Heartbeat, write_heartbeat
from btcpred.ingest.metrics import emf_line

if TYPE_CHECKING:
    from btcpred.ingest.service import Ingestor

__all__ = ["HEARTBEAT_EVERY_S", "Telemetry", "stdout_metrics"]

log = logging.getLogger("btcpred.ingest")

HEARTBEAT_EVERY_S = 2.0


class Telemetry:
    """Writes one ingestor's heartbeat every 2 s and its metrics every interval (deltas of the
    running totals, plus buffer fill, the worst exchange → acknowledged lag and the connection's
    age)."""

    def __init__(self, ingestor: Ingestor, metrics_out: IO[bytes] | None) -> None:
        self.ingestor = ingestor
        self.metrics_out = metrics_out
        self.started_ns = ingestor.clock_ns()
        self._last: dict[str, float] = {}

    async def heartbeat_loop(self) -> None:
        while True:
            self.write_heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    def write_heartbeat(self) -> None:
        ing = self.ingestor
        connections = [c for c in (ing.primary, ing.standby) if c is not None]
        beat = Heartbeat(
            pid=os.getpid(),
            written_ns=ing.clock_ns(),
            started_ns=self.started_ns,
            last_frame_ns=max((c.last_frame_ns for c in connections), default=0),
            last_ack_ns=ing.producer.stats.last_ack_ns,
            buffer_fill=ing.buffer.fill,
            queued_messages=ing.buffer.items,
            connected=ing.primary is not None and not ing.primary.end_reason,
        )
        path = ing.settings.heartbeat_path
        try:
            write_heartbeat(Path(path), beat)
        except OSError as exc:
            log.error("cannot write the heartbeat %s: %s", path, exc)

    async def metrics_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ingestor.settings.metrics_interval_s)
            self.emit_metrics()

    def totals(self) -> dict[str, float]:
        """The running totals behind the counters."""
        ing = self.ingestor
        p, s, q, b = ing.producer.stats, ing.stats, ing.sequencer, ing.buffer
        return {
            "Frames": s.frames,
            "Events": s.events,
            "Records": p.records_out,
            "RecordBytes": p.bytes_out,
            "PutCalls": p.put_calls,
            "PutFailedEntries": p.failed_entries,
            "PutErrors": p.put_errors,
            "Gaps": q.gaps + b.overflow_gaps,
            "GapEvents": q.gap_ids + b.shed_events,
            "Reconnects": s.reconnects,
            "ShedEvents": b.shed_quotes + b.shed_events,
            "MalformedFrames": s.malformed_frames,
            "DepthResyncs": s.depth_resyncs,
        }

    def emit_metrics(self) -> None:
        """Write one EMF line (nothing without an output)."""
        if self.metrics_out is None:
            return
        ing = self.ingestor
        totals = self.totals()
        values: dict[str, float] = {k: v - self._last.get(k, 0) for k, v in totals.items()}
        self._last = totals
        values["BufferFillPercent"] = round(ing.buffer.fill * 100, 2)
        stats = ing.producer.stats
        values["ExchangeLagMs"] = round(stats.max_lag_ms, 1)
        stats.max_lag_ms = 0.0
        if ing.primary is not None:
            values["ConnectionAgeS"] = round(ing.primary.age_s, 1)
        self.metrics_out.write(emf_line(values, ing.clock_ns() // 1_000_000) + b"\n")
        self.metrics_out.flush()


def stdout_metrics() -> IO[bytes]:
    """The process's stdout as bytes (where EMF lines go in the container)."""
    return sys.stdout.buffer
