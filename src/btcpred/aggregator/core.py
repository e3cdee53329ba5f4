"""The aggregator's logic: Kinesis records in, features and state out, with exactly-once effect.

The Lambda handler (``lambdas/aggregator/handler.py``) decodes the event, lets Powertools'
``BatchProcessor`` run :meth:`Aggregator.decode` per record, then calls :meth:`Aggregator.apply`
once for the batch. ``apply`` opens one store transaction, skips records at or below each shard's
applied sequence number, streams the rest through one :class:`FeatureEngine` per symbol (trade
ids and quote update ids already applied are dropped there), and commits features, history,
engine states and sequence numbers together. A redelivered or overlapping batch therefore never
double-counts, and a failure anywhere leaves the store as it was.

Poison records (:class:`~btcpred.records.RecordFormatError`) follow :class:`PoisonPolicy`.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from btcpred.aggregator.messages import Message, QuoteMessage, TradeMessage, decode_record
from btcpred.aggregator.store import BatchCommit, FeatureStore
from btcpred.features.engine import EngineStateError, FeatureEngine
from btcpred.features.snapshot import FeatureSnapshot
from btcpred.features.spec import DEFAULT_SPEC, FeatureSpec
from btcpred.klines import Kline
from btcpred.records import RecordFormatError
from btcpred.settings.aggregator import PoisonPolicy

__all__ = ["Aggregator", "BatchResult", "DecodedRecord", "PoisonPolicy", "Warmer"]

logger = logging.getLogger(__name__)

Warmer = Callable[[str, int], tuple[Sequence[Kline], Sequence[Kline]]]
"""``warmer(symbol, before_ms) -> (5-minute klines, 1-minute klines)``, finished bars only."""


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    """One Kinesis record after decoding; ``messages`` is empty for a skipped poison record."""

    shard_id: str
    sequence_number: int
    messages: list[Message]
    poison: bool = False


@dataclass(slots=True)
class BatchResult:
    """What one batch did (the handler turns this into metrics)."""

    records: int = 0
    skipped_records: int = 0
    """Records at or below their shard's applied sequence number (redeliveries)."""
    held_records: int = 0
    """Records after a reported poison record in the same shard, left for the retry."""
    events: int = 0
    duplicate_events: int = 0
    warmed_symbols: list[str] = field(default_factory=list)
    warmup_failures: int = 0
    snapshots: dict[str, FeatureSnapshot] = field(default_factory=dict)
    newest_event_us: int = -1


class Aggregator:
    """Applies decoded batches to per-symbol engines kept in a :class:`FeatureStore`."""

    def __init__(
        self,
        store: FeatureStore,
        *,
        warmer: Warmer | None = None,
        spec: FeatureSpec = DEFAULT_SPEC,
        poison_policy: PoisonPolicy = PoisonPolicy.SKIP,
    ) -> None:
        self.store = store
        self.warmer = warmer
        self.spec = spec
        self.poison_policy = poison_policy

    def decode(self, shard_id: str, sequence_number: int, data: bytes | str) -> DecodedRecord:
        """Decode one record; a poison record raises or decodes to nothing, per the policy.

        ``data`` is the record's bytes, or the base64 text Lambda delivers.

        Raises
        ------
        RecordFormatError
            Under :attr:`PoisonPolicy.REPORT`, for a record that cannot be decoded.
        """
        try:
            if isinstance(data, str):
                data = _base64(data)
            messages = decode_record(data)
        except RecordFormatError as exc:
            logger.warning(
                "poison record %s/%s: %s; first bytes %r",
                shard_id,
                sequence_number,
                exc,
                data[:64],
            )
            if self.poison_policy is PoisonPolicy.REPORT:
                raise
            return DecodedRecord(shard_id, sequence_number, [], poison=True)
        return DecodedRecord(shard_id, sequence_number, messages)

    def apply(
        self, records: Sequence[DecodedRecord], failed: dict[str, int] | None = None
    ) -> BatchResult:
        """Apply a batch in one store transaction (see the module docstring).

        ``failed`` maps a shard to the lowest sequence number reported as failed; that record
        and the shard's later ones are held back so that Lambda's retry delivers them again.

        Raises
        ------
        FeatureStoreError
            The store failed; nothing was written, retry the whole batch.
        """
        failed = failed or {}
        ordered = sorted(records, key=lambda r: (r.shard_id, r.sequence_number))
        symbols = list(dict.fromkeys(m.symbol for r in ordered for m in r.messages))
        shards = list(dict.fromkeys(r.shard_id for r in ordered))
        result = BatchResult(records=len(ordered))
        txn = self.store.begin(symbols, shards)
        try:
            engines: dict[str, FeatureEngine] = {}
            sequences: dict[str, int] = {}
            for record in ordered:
                applied = txn.sequences.get(record.shard_id)
                if applied is not None and record.sequence_number <= applied:
                    result.skipped_records += 1
                    continue
                held = failed.get(record.shard_id)
                if held is not None and record.sequence_number >= held:
                    result.held_records += 1
                    continue
                for message in record.messages:
                    engine = engines.get(message.symbol)
                    if engine is None:
                        engine = self._engine(message, txn.states.get(message.symbol), result)
                        engines[message.symbol] = engine
                    self._apply_message(engine, message, result)
                sequences[record.shard_id] = record.sequence_number
            batch = BatchCommit(sequences=sequences)
            for symbol, engine in engines.items():
                batch.snapshots[symbol] = engine.snapshot()
                batch.states[symbol] = engine.state()
                result.newest_event_us = max(result.newest_event_us, engine.now_us)
            txn.commit(batch)
        except BaseException:
            txn.abort()
            raise
        result.snapshots = batch.snapshots
        return result

    def _engine(self, first: Message, state: bytes | None, result: BatchResult) -> FeatureEngine:
        symbol = first.symbol
        if state is not None:
            try:
                return FeatureEngine.from_state(state, self.spec)
            except EngineStateError as exc:
                logger.warning("discarding %s engine state: %s", symbol, exc)
        engine = FeatureEngine(symbol, self.spec)
        if self.warmer is not None:
            before_ms = first.time_us // 1000
            try:
                klines_long, klines_short = self.warmer(symbol, before_ms)
            except Exception as exc:  # noqa: BLE001  # any REST failure: start cold, say so
                logger.warning("warm-up of %s from REST failed, starting cold: %s", symbol, exc)
                result.warmup_failures += 1
            else:
                engine.warm_up(klines_long, klines_short)
                result.warmed_symbols.append(symbol)
        return engine

    @staticmethod
    def _apply_message(engine: FeatureEngine, message: Message, result: BatchResult) -> None:
        result.events += 1
        if isinstance(message, TradeMessage):
            fresh = engine.add_trade(
                message.time_us,
                message.trade_id,
                message.price,
                message.quantity,
            )
        elif isinstance(message, QuoteMessage):
            fresh = engine.add_quote(
                message.timestamp,
                message.update_id,
                message.bid_price,
                message.bid_quantity,
                message.ask_price,
                message.ask_quantity,
            )
        else:
            return
        if not fresh:
            result.duplicate_events += 1


def _base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RecordFormatError("record data is not valid base64") from None


def rest_warmer(
    fetch: Callable[[str, str, int, int], Sequence[Kline]],
    *,
    short_bars: int = 120,
    long_bars: int = 60,
) -> Warmer:
    """A :data:`Warmer` over ``fetch(symbol, interval, count, end_time_ms)`` (a REST client).

    It asks for the finished bars that close before the minute holding ``before_ms``: the
    engine's streamed trades start in that minute.
    """

    def warm(symbol: str, before_ms: int) -> tuple[Sequence[Kline], Sequence[Kline]]:
        end_ms = before_ms - before_ms % 60_000 - 1
        long_end = before_ms - before_ms % 300_000 - 1
        return fetch(symbol, "5m", long_bars, long_end), fetch(symbol, "1m", short_bars, end_ms)

    return warm
