"""What goes into a batch (decoded records) and what comes out (counts for the metrics)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from btcpred.aggregator.messages import Message
from btcpred.features.snapshot import FeatureSnapshot

__all__ = ["BatchResult", "DecodedRecord"]


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    """One Kinesis record after decoding; ``messages`` is empty for a skipped poison record.

    ``partition_key`` is the record's Kinesis partition key (the symbol: every message names
    it, or the record is poison); ``arrival_us`` its ``approximateArrivalTimestamp`` (None when
    unknown: the time-window rule is then not applied).
    """

    shard_id: str
    sequence_number: int
    partition_key: str
    messages: list[Message]
    poison: bool = False
    misrouted: bool = False
    arrival_us: int | None = None


@dataclass(slots=True)
class BatchResult:
    """What one batch did (the handler turns this into metrics)."""

    records: int = 0
    poison_records: int = 0
    """Records that could not be decoded (skipped under ``skip``; reported ones never get here)."""
    misrouted_records: int = 0
    """Poison records whose messages name a symbol other than their partition key."""
    unknown_symbol_records: int = 0
    """Records of a partition key outside ``SYMBOLS``: dropped, no key written."""
    skipped_records: int = 0
    """Records at or below their (shard, partition key) checkpoint (redeliveries)."""
    held_records: int = 0
    """Records after a reported record of the same (shard, partition key), left for the retry."""
    events: int = 0
    gap_messages: int = 0
    """The ingestor's ``gap`` messages (missing ids it recorded), counted and not applied."""
    gap_ids: int = 0
    """Ids inside those gaps: trades or book updates that never reached the stream."""
    duplicate_events: int = 0
    implausible_events: Counter[str] = field(default_factory=Counter)
    """Messages dropped by a plausibility rule, by rule."""
    trade_id_resets: int = 0
    warmed_symbols: list[str] = field(default_factory=list)
    warmup_failures: int = 0
    warmup_skipped: int = 0
    """Symbols started cold because the invocation's warm-up budget was spent."""
    snapshots: dict[str, FeatureSnapshot] = field(default_factory=dict)
    newest_event_us: int = -1
    failed_groups: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    """Partition keys whose transaction failed → the lowest (shard, sequence) per shard."""

    def absorb(self, other: BatchResult) -> None:
        """Add one partition key's counts (taken only once its transaction committed)."""
        self.skipped_records += other.skipped_records
        self.held_records += other.held_records
        self.events += other.events
        self.gap_messages += other.gap_messages
        self.gap_ids += other.gap_ids
        self.duplicate_events += other.duplicate_events
        self.implausible_events.update(other.implausible_events)
        self.trade_id_resets += other.trade_id_resets
        self.warmed_symbols.extend(other.warmed_symbols)
        self.warmup_failures += other.warmup_failures
        self.warmup_skipped += other.warmup_skipped
        self.snapshots.update(other.snapshots)
        self.newest_event_us = max(self.newest_event_us, other.newest_event_us)
