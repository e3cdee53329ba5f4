"""Where predictions go besides Redis: metrics, WebSocket clients and the S3 history.

Each output is a small interface with an AWS adapter and a local one:

=====================  ==================================  ===================================
output                 AWS                                 local / tests
=====================  ==================================  ===================================
:class:`Metrics`       Powertools EMF (``inference.aws``)  :class:`RecordingMetrics`
:class:`Poster`        :class:`ManagementApiPoster` on a   the same, on the local stand-in
                       boto3 ``apigatewaymanagementapi``   (``btcpred.sim.management_api``)
:class:`HistoryWriter` an :class:`~btcpred.model.registry.ObjectStore` on S3 or a directory
=====================  ==================================  ===================================

The core never imports boto3: AWS clients are made by the handlers and passed in. The
broadcast lives in :mod:`btcpred.inference.broadcast` (no fastavro there) and is re-exported.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import fastavro

from btcpred.inference.accuracy import ScoredPrediction
from btcpred.inference.broadcast import (
    Broadcaster,
    BroadcastReport,
    GoneError,
    ManagementApiPoster,
    Poster,
)
from btcpred.inference.result import PredictionResult
from btcpred.model.registry import ObjectStore

__all__ = [
    "AVRO_SCHEMA",
    "BroadcastReport",
    "Broadcaster",
    "GoneError",
    "HistoryWriter",
    "ManagementApiPoster",
    "Metrics",
    "Poster",
    "RecordingMetrics",
    "history_record",
]


class Metrics(Protocol):
    """A metrics sink (units as CloudWatch names them: Count, Milliseconds, None, …)."""

    def add(self, name: str, unit: str, value: float) -> None:
        """Record one value."""

    def property(self, name: str, value: str) -> None:
        """Attach a searchable property (e.g. the model version) to the next flush."""

    def flush(self) -> None:
        """Send what was recorded."""


@dataclass
class RecordingMetrics:
    """:class:`Metrics` that keeps everything in memory (local stack and tests)."""

    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    properties: dict[str, str] = field(default_factory=dict)
    flushes: int = 0

    def add(self, name: str, unit: str, value: float) -> None:
        self.values[name].append(value)

    def property(self, name: str, value: str) -> None:
        self.properties[name] = value

    def flush(self) -> None:
        self.flushes += 1

    def total(self, name: str) -> float:
        """Sum of a metric's values (0 when never recorded)."""
        return sum(self.values.get(name, ()))


AVRO_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Prediction",
    "namespace": "btcpred",
    "doc": "A PredictionResult and, once its horizon passed, the realized price.",
    "fields": [
        {"name": "symbol", "type": "string"},
        {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "current_price", "type": "double"},
        {"name": "predicted_price", "type": "double"},
        {"name": "prediction_horizon_seconds", "type": "int"},
        {"name": "confidence", "type": "double"},
        {"name": "model_version", "type": "string"},
        {"name": "features_age_ms", "type": "long"},
        {"name": "inference_latency_ms", "type": "double"},
        {
            "name": "source",
            "type": {"type": "enum", "name": "Source", "symbols": ["redis", "fallback"]},
        },
        {"name": "realized_price", "type": ["null", "double"], "default": None},
        {"name": "realized_time_ms", "type": ["null", "long"], "default": None},
        {"name": "abs_error", "type": ["null", "double"], "default": None},
        {"name": "direction_hit", "type": ["null", "boolean"], "default": None},
    ],
}
_PARSED = fastavro.parse_schema(AVRO_SCHEMA)


def history_record(item: PredictionResult | ScoredPrediction) -> dict[str, Any]:
    """One Avro record: the result's fields, plus the realized fields when scored."""
    p = item.prediction if isinstance(item, ScoredPrediction) else item
    record: dict[str, Any] = {f: getattr(p, f) for f in p.__struct_fields__}
    if isinstance(item, ScoredPrediction):
        record.update(
            realized_price=item.realized_price,
            realized_time_ms=item.realized_time_ms,
            abs_error=item.abs_error,
            direction_hit=item.direction_hit,
        )
    else:
        record.update(
            realized_price=None, realized_time_ms=None, abs_error=None, direction_hit=None
        )
    return record


class HistoryWriter:
    """Buffers an invocation's history records and writes one Avro object per symbol.

    Keys, under the store's own prefix:
    ``symbol={S}/date=YYYY-MM-DD/hour=HH/{first_ms}-{writer_id}.avro``, dated by the first
    record's prediction time (UTC). What goes in: every prediction scored during the
    invocation (with its realized price) and, at the end, any prediction that could not be
    handed over for scoring (realized fields null), so each prediction is written once.
    """

    def __init__(self, store: ObjectStore, writer_id: str, prefix: str = "") -> None:
        self.store = store
        self.writer_id = writer_id
        self.prefix = prefix.strip("/")
        self._base = f"{self.prefix}/" if self.prefix else ""
        self._records: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def add(self, items: Sequence[PredictionResult | ScoredPrediction]) -> None:
        """Buffer records."""
        for item in items:
            p = item.prediction if isinstance(item, ScoredPrediction) else item
            self._records[p.symbol].append(history_record(item))

    @property
    def buffered(self) -> int:
        """Records not yet written."""
        return sum(len(r) for r in self._records.values())

    def flush(self) -> list[str]:
        """Write the buffered records (one object per symbol); return the keys written."""
        keys = []
        for symbol, records in sorted(self._records.items()):
            if not records:
                continue
            first = min(r["timestamp"] for r in records)
            when = dt.datetime.fromtimestamp(first / 1000, tz=dt.UTC)
            key = (
                f"{self._base}symbol={symbol}/date={when:%Y-%m-%d}/hour={when:%H}/"
                f"{first}-{self.writer_id}.avro"
            )
            out = io.BytesIO()
            fastavro.writer(out, _PARSED, records, codec="deflate")
            self.store.put(key, out.getvalue())
            keys.append(key)
        self._records.clear()
        return keys
