"""The local stack: decoded events → Kinesis records → aggregator → Redis → predictor loop.

:class:`LocalAggregation` does locally what the ingestor, Kinesis, the aggregator Lambda and the
inference Lambda do in AWS: it packs events into one record per ``flush_ms`` of receive time,
hands every ``records_per_batch`` records to the real :class:`~btcpred.aggregator.Aggregator`
(same decode, same Redis transaction, same REST warm-up), reads the features back from Redis
and, with a model, runs the real :class:`~btcpred.inference.InferenceService` tick every
``interval_s`` of market time (same lease, same fallbacks, same Redis outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from btcpred.aggregator import Aggregator, DecodedRecord, RedisFeatureStore, rest_warmer
from btcpred.events import DepthSnapshot, Event
from btcpred.features import FeatureSnapshot
from btcpred.inference import (
    InferenceService,
    RecordingMetrics,
    ScoredPrediction,
    TickReport,
    build_service,
)
from btcpred.inference.result import PredictionResult
from btcpred.keys import RedisKeys
from btcpred.model import OnnxModel
from btcpred.records import pack_records
from btcpred.settings import InferenceSettings
from btcpred.sim.lambda_events import FIRST_SEQUENCE
from btcpred.sources.binance_rest import BinanceRestClient

__all__ = ["LocalAggregation", "format_features", "format_result"]

SHARD = "shardId-000000000000"
NO_REST = "http://127.0.0.1:9"
"""REST base of a service built without the REST fallback (never asked)."""
_INGEST_LATENCY_US = 50_000
"""A record's local "arrival" at Kinesis: 50 ms after its newest event was received."""


@dataclass
class LocalAggregation:
    """Feeds events through records and the aggregator; see the module docstring."""

    client: redis.Redis
    rest_url: str | None = None
    model: OnnxModel | None = None
    """When set, the predictor loop runs and :meth:`formatted` prints each PredictionResult."""
    interval_s: float = 1.5
    flush_ms: int = 100
    records_per_batch: int = 10
    keys: RedisKeys = field(default_factory=RedisKeys)
    """The key schema (prefixes) the aggregator writes and the features are read back under."""
    batches: int = 0
    _window: int = -1
    _pending: list[Event] = field(default_factory=list)
    _records: list[DecodedRecord] = field(default_factory=list)
    _sequence: int = FIRST_SEQUENCE
    _next_tick_ms: int = 0
    scored: list[ScoredPrediction] = field(default_factory=list)
    results: list[PredictionResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        warmer = None
        self.service: InferenceService | None = None
        if self.rest_url is not None:
            rest = BinanceRestClient(self.rest_url, timeout_s=2.0, max_attempts=2)
            warmer = rest_warmer(lambda s, i, n, end: rest.recent_klines(s, i, n, end_time_ms=end))
        self.aggregator = Aggregator(RedisFeatureStore(self.client, self.keys), warmer=warmer)
        if self.model is not None:
            self.metrics = RecordingMetrics()
            self.service = build_service(
                InferenceSettings(
                    interval_s=self.interval_s,
                    binance_rest_url=self.rest_url or NO_REST,
                    features_prefix=self.keys.features_prefix,
                    prediction_key=self.keys.prediction_key,
                ),
                owner="local",
                metrics=self.metrics,
                client=self.client,
                rest=self.rest_url is not None,
                model=self.model,
            )

    def add(self, events: Sequence[Event]) -> list[FeatureSnapshot]:
        """Add decoded events; return the features of every batch this completed."""
        out: list[FeatureSnapshot] = []
        for event in events:
            if isinstance(event, DepthSnapshot):
                continue  # a REST snapshot is not part of the stream
            window = event.receive_time_ns // (self.flush_ms * 1_000_000)
            if window != self._window and self._pending:
                self._flush_record()
                if len(self._records) >= self.records_per_batch:
                    out.extend(self._apply())
            self._window = window
            self._pending.append(event)
        return out

    def formatted(self, events: Sequence[Event]) -> list[str]:
        """:meth:`add`, with each completed batch's features and each tick's results as lines."""
        lines = self.lines(self.add(events))
        if events:
            lines.extend(self.tick_to(events[-1].event_time_us // 1000))
        return lines

    def lines(self, snaps: Sequence[FeatureSnapshot]) -> list[str]:
        """A features line per snapshot."""
        return [format_features(snap) for snap in snaps]

    def tick_to(self, now_ms: int) -> list[str]:
        """Run the predictor's tick if market time reached the next grid point."""
        if self.service is None or now_ms < self._next_tick_ms:
            return []
        interval = self.service.interval_ms
        self._next_tick_ms = (now_ms // interval + 1) * interval
        report = self.service.tick(now_ms, now_ms + 3_600_000)
        return self._report_lines(report)

    def _report_lines(self, report: TickReport) -> list[str]:
        self.scored.extend(report.scored)
        self.results.extend(report.results)
        out = [format_result(r) for r in report.results]
        out.extend(f"  >> skipped: {reason}" for reason in report.skipped)
        return out

    def accuracy_lines(self) -> list[str]:
        """The online accuracy of the predictions scored during the replay."""
        if self.service is None:
            return []
        n = len(self.scored)
        lines = [f"predictions      {len(self.results):,} ({n:,} scored 60 s later)"]
        if n:
            mae = sum(s.abs_error for s in self.scored) / n
            naive = sum(s.naive_abs_error for s in self.scored) / n
            hits = sum(s.direction_hit for s in self.scored) / n
            lines.append(
                f"online accuracy  MAE {mae:.3f} USDT vs random walk {naive:.3f}; "
                f"direction hit {hits:.1%}"
            )
        return lines

    def finish(self) -> list[FeatureSnapshot]:
        """Flush what is left."""
        if self._pending:
            self._flush_record()
        return self._apply() if self._records else []

    def close(self) -> None:
        """Stop the predictor: hand over what waits for scoring, release the lease."""
        if self.service is not None:
            self.service.close(self._next_tick_ms)

    def _flush_record(self) -> None:
        received_ns = max(e.receive_time_ns for e in self._pending)
        arrival_us = received_ns // 1000 + _INGEST_LATENCY_US if received_ns > 0 else None
        for record in pack_records(self._pending, ingest_ts_ms=0):
            self._sequence += 1_000
            self._records.append(
                self.aggregator.decode(
                    SHARD, self._sequence, record.data, record.partition_key, arrival_us
                )
            )
        self._pending = []

    def _apply(self) -> list[FeatureSnapshot]:
        result = self.aggregator.apply(self._records)
        self._records = []
        self.batches += 1
        snaps = []
        for symbol in result.snapshots:
            raw = self.client.get(self.keys.features_latest(symbol))
            if raw is not None:
                snaps.append(FeatureSnapshot.from_json(raw))
        return snaps


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_features(snap: FeatureSnapshot) -> str:
    """One line of features, as the replay prints it (``-`` = not warm / not available)."""
    warm = sum(snap.warm.values())
    spread_bp = None if snap.bid_ask_spread is None else snap.bid_ask_spread * 1e4
    return (
        f"  >> features {snap.symbol} price {_num(snap.price, ',.2f')}"
        f"  vol1m {_num(snap.volume, '.3f')}  vwap {_num(snap.vwap, ',.2f')}"
        f"  chg1m {_num(snap.price_change_1m, '+.4%')}  chg5m {_num(snap.price_change_5m, '+.4%')}"
        f"  trades/s {_num(snap.trade_intensity, '.1f')}  spread {_num(spread_bp, '.3f')}bp"
        f"  imb {_num(snap.order_book_imbalance, '+.2f')}  rsi5m {_num(snap.rsi_5m, '.1f')}"
        f"  macd_sig {_num(snap.macd_signal, '+.2f')}  bb {_num(snap.bollinger_position, '.2f')}"
        f"  [{warm}/12 warm]"
    )


def format_result(result: PredictionResult) -> str:
    """A PredictionResult as the replay prints it: its JSON, field for field."""
    return f"  >> prediction {result.to_json().decode()}"
