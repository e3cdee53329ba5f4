"""EMF metrics of the ingestor: one JSON line on stdout per interval (CloudWatch Logs turns it
into metrics; namespace ``btcpred``, one dimension ``service=ingestor``, as the stack's alarms
and dashboard read them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import orjson

__all__ = ["COUNTERS", "NAMESPACE", "SERVICE", "UNITS", "emf_line"]

NAMESPACE: Final = "btcpred"
SERVICE: Final = "ingestor"

COUNTERS: Final = (
    "Frames",
    "Events",
    "Records",
    "PutCalls",
    "PutFailedEntries",
    "PutErrors",
    "Gaps",
    "GapEvents",
    "Reconnects",
    "ShedEvents",
    "MalformedFrames",
    "DepthResyncs",
)
"""Counts per interval (deltas of the running totals)."""

UNITS: Final = {
    **dict.fromkeys(COUNTERS, "Count"),
    "RecordBytes": "Bytes",
    "BufferFillPercent": "Percent",
    "ExchangeLagMs": "Milliseconds",
    "ConnectionAgeS": "Seconds",
}


def emf_line(values: Mapping[str, float], timestamp_ms: int) -> bytes:
    """One CloudWatch Embedded Metric Format document for ``values`` (names from :data:`UNITS`)."""
    doc: dict[str, object] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": n, "Unit": UNITS[n]} for n in values],
                }
            ],
        },
        "service": SERVICE,
    }
    doc.update(values)
    return orjson.dumps(doc)
