"""The local stack's aggregation leg: decoded events → Kinesis records → aggregator → Redis.

:class:`LocalAggregation` does locally what the ingestor, Kinesis and the aggregator Lambda do
in AWS: it packs events into one record per ``flush_ms`` of receive time, hands every
``records_per_batch`` records to the real :class:`~btcpred.aggregator.Aggregator` (same decode,
same Redis transaction, same REST warm-up) and reads the features back from Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from btcpred.aggregator import Aggregator, DecodedRecord, RedisFeatureStore, rest_warmer
from btcpred.events import DepthSnapshot, Event
from btcpred.features import FeatureSnapshot
from btcpred.local.kinesis import FIRST_SEQUENCE
from btcpred.model import MissingFeatureError, OnnxModel
from btcpred.records import pack_records
from btcpred.sources.binance_rest import BinanceRestClient

__all__ = ["LocalAggregation", "format_features", "format_prediction"]

SHARD = "shardId-000000000000"


@dataclass
class LocalAggregation:
    """Feeds events through records and the aggregator; see the module docstring."""

    client: redis.Redis
    rest_url: str | None = None
    model: OnnxModel | None = None
    """When set, :meth:`formatted` adds the model's prediction under each features line."""
    flush_ms: int = 100
    records_per_batch: int = 10
    batches: int = 0
    _window: int = -1
    _pending: list[Event] = field(default_factory=list)
    _records: list[DecodedRecord] = field(default_factory=list)
    _sequence: int = FIRST_SEQUENCE

    def __post_init__(self) -> None:
        warmer = None
        if self.rest_url is not None:
            rest = BinanceRestClient(self.rest_url, timeout_s=2.0, max_attempts=2)
            warmer = rest_warmer(lambda s, i, n, end: rest.recent_klines(s, i, n, end_time_ms=end))
        self.aggregator = Aggregator(RedisFeatureStore(self.client), warmer=warmer)

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
        """:meth:`add`, with each completed batch's features (and prediction) as lines."""
        return self.lines(self.add(events))

    def lines(self, snaps: Sequence[FeatureSnapshot]) -> list[str]:
        """A features line per snapshot, each followed by the model's prediction when set."""
        out = []
        for snap in snaps:
            out.append(format_features(snap))
            if self.model is not None:
                out.append(format_prediction(snap, self.model))
        return out

    def finish(self) -> list[FeatureSnapshot]:
        """Flush what is left."""
        if self._pending:
            self._flush_record()
        return self._apply() if self._records else []

    def _flush_record(self) -> None:
        for record in pack_records(self._pending, ingest_ts_ms=0):
            self._sequence += 1_000
            self._records.append(self.aggregator.decode(SHARD, self._sequence, record.data))
        self._pending = []

    def _apply(self) -> list[FeatureSnapshot]:
        result = self.aggregator.apply(self._records)
        self._records = []
        self.batches += 1
        snaps = []
        for symbol in result.snapshots:
            raw = self.client.get(f"features:{symbol}:latest")
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


def format_prediction(snap: FeatureSnapshot, model: OnnxModel) -> str:
    """The model's 60-second prediction from one feature point, as the replay prints it."""
    try:
        pred = model.predict([snap.values()])
    except MissingFeatureError as exc:
        return f"  >> predict {snap.symbol}: waiting ({exc})"
    price = snap.price or 0.0
    move_bp = (pred.predicted_price / price - 1.0) * 1e4 if price else 0.0
    seconds = model.metadata.horizon_ms // 1000
    return (
        f"  >> predict {snap.symbol} +{seconds}s: {price:,.2f} -> {pred.predicted_price:,.2f}"
        f" ({move_bp:+.3f} bp)  confidence {pred.confidence:.2f}  model {model.version}"
    )
