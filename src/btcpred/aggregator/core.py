"""The aggregator's logic: Kinesis records in, features and state out, with exactly-once effect.

The Lambda handler (``lambdas/aggregator/handler.py``) checks the event's envelope
(:func:`btcpred.aggregator.kinesis.kinesis_inputs`), runs :meth:`Aggregator.decode` per record,
then calls :meth:`Aggregator.apply` once for the batch. ``apply`` groups the records by
partition key (the symbol) and gives each group **one store transaction** over keys of that
symbol's hash slot only: it skips records at or below the group's (shard, partition key)
checkpoint, drops implausible messages (:mod:`btcpred.aggregator.plausibility`), streams the
rest through the symbol's :class:`FeatureEngine` (trades already applied are dropped there),
and commits features, history, engine state and checkpoints together.

Because every checkpoint belongs to one (shard, partition key), batches of one shard that
Lambda runs side by side under a ParallelizationFactor above 1 (split by partition key, their
sequence numbers interleaved) never skip each other's records, and a failed group leaves the
other groups' commits valid: the handler reports the failed group's lowest sequence number,
Lambda redelivers from there, and the checkpoints skip what was already applied. A write
conflict is retried once at once (it means another invocation just wrote the same keys).

Poison records (:class:`~btcpred.records.RecordFormatError`, including a record whose messages
name a symbol other than its partition key) follow :class:`PoisonPolicy`. Records of a symbol
outside ``symbols`` are counted and dropped before any Redis key or REST call.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from btcpred.aggregator.batch import BatchResult, DecodedRecord
from btcpred.aggregator.messages import (
    GapMessage,
    Message,
    QuoteMessage,
    TradeMessage,
    decode_record,
)
from btcpred.aggregator.plausibility import PlausibilityRules
from btcpred.aggregator.store import (
    FeatureStore,
    FeatureStoreError,
    GroupCommit,
    StoreConflictError,
)
from btcpred.features.engine import EngineStateError, FeatureEngine
from btcpred.features.spec import DEFAULT_SPEC, FeatureSpec
from btcpred.keys import KeySchemaError, hash_tag
from btcpred.klines import Kline
from btcpred.records import RecordFormatError
from btcpred.settings.aggregator import PoisonPolicy

__all__ = ["Aggregator", "MisroutedRecordError", "PoisonPolicy", "Warmer"]

logger = logging.getLogger(__name__)

Warmer = Callable[[str, int], tuple[Sequence[Kline], Sequence[Kline]]]
"""``warmer(symbol, before_ms) -> (5-minute klines, 1-minute klines)``, finished bars only."""

Failed = Mapping[tuple[str, str], int]
"""(shard, partition key) → the lowest sequence number reported as failed."""


class MisroutedRecordError(RecordFormatError):
    """A record whose partition key is not a symbol, or whose messages name another symbol."""


@dataclass(slots=True)
class _Budget:
    """The invocation's REST warm-up budget (monotonic deadline)."""

    deadline: float
    clock: Callable[[], float]

    def spent(self) -> bool:
        return self.clock() >= self.deadline


class Aggregator:
    """Applies decoded batches to per-symbol engines kept in a :class:`FeatureStore`.

    Parameters
    ----------
    symbols
        The configured symbols (``SYMBOLS``); ``None`` accepts every valid symbol.
    warmup_budget_s
        Total time per :meth:`apply` for REST warm-ups; once spent, symbols start cold.
    """

    def __init__(
        self,
        store: FeatureStore,
        *,
        warmer: Warmer | None = None,
        spec: FeatureSpec = DEFAULT_SPEC,
        poison_policy: PoisonPolicy = PoisonPolicy.SKIP,
        symbols: Collection[str] | None = None,
        rules: PlausibilityRules | None = None,
        warmup_budget_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.warmer = warmer
        self.spec = spec
        self.poison_policy = poison_policy
        self.symbols = None if symbols is None else frozenset(symbols)
        self.rules = rules or PlausibilityRules()
        self.warmup_budget_s = warmup_budget_s
        self.clock = clock

    def decode(
        self,
        shard_id: str,
        sequence_number: int,
        data: bytes | str,
        partition_key: str,
        arrival_us: int | None = None,
    ) -> DecodedRecord:
        """Decode one record; a poison record raises or decodes to nothing, per the policy.

        ``data`` is the record's bytes, or the base64 text Lambda delivers.

        Raises
        ------
        RecordFormatError
            Under :attr:`PoisonPolicy.REPORT`, for a record that cannot be decoded or is
            misrouted (:class:`MisroutedRecordError`).
        """
        try:
            raw = _base64(data) if isinstance(data, str) else data
            messages = decode_record(raw)
            _check_route(partition_key, messages)
        except RecordFormatError as exc:
            logger.warning(
                "poison record %s/%s (key %.40r): %s; first bytes %r",
                shard_id,
                sequence_number,
                partition_key,
                exc,
                data[:64],
            )
            if self.poison_policy is PoisonPolicy.REPORT:
                raise
            misrouted = isinstance(exc, MisroutedRecordError)
            return DecodedRecord(
                shard_id, sequence_number, partition_key, [], poison=True, misrouted=misrouted
            )
        return DecodedRecord(
            shard_id, sequence_number, partition_key, messages, arrival_us=arrival_us
        )

    def apply(self, records: Sequence[DecodedRecord], failed: Failed | None = None) -> BatchResult:
        """Apply a batch: one store transaction per partition key (see the module docstring).

        ``failed`` holds the records reported as failed; that record and the later ones of the
        same (shard, partition key) are held back so that Lambda's retry delivers them again.
        A group whose transaction fails lands in :attr:`BatchResult.failed_groups`.

        Raises
        ------
        FeatureStoreError
            The transaction of every group failed (nothing was written): retry the batch.
        """
        failed = failed or {}
        result = BatchResult(records=len(records))
        groups: dict[str, list[DecodedRecord]] = {}
        for record in records:
            if record.poison:
                result.poison_records += 1
                result.misrouted_records += record.misrouted
            else:
                groups.setdefault(record.partition_key, []).append(record)
        budget = _Budget(self.clock() + self.warmup_budget_s, self.clock)
        errors: list[FeatureStoreError] = []
        for symbol, group in groups.items():
            if self.symbols is not None and symbol not in self.symbols:
                result.unknown_symbol_records += len(group)
                continue
            try:
                result.absorb(self._apply_group(symbol, group, failed, budget))
            except FeatureStoreError as exc:
                logger.warning("transaction of %s failed, reported for retry: %s", symbol, exc)
                result.failed_groups[symbol] = _lowest_per_shard(group)
                errors.append(exc)
        if errors and len(errors) == len(groups) - _unknown(groups, self.symbols):
            raise errors[0]
        return result

    def _apply_group(
        self, symbol: str, group: list[DecodedRecord], failed: Failed, budget: _Budget
    ) -> BatchResult:
        try:
            return self._transact(symbol, group, failed, budget)
        except StoreConflictError:
            return self._transact(symbol, group, failed, budget)  # re-read: skip what they wrote

    def _transact(
        self, symbol: str, group: list[DecodedRecord], failed: Failed, budget: _Budget
    ) -> BatchResult:
        ordered = sorted(group, key=lambda r: (r.shard_id, r.sequence_number))
        out = BatchResult()
        txn = self.store.begin(symbol, list(dict.fromkeys(r.shard_id for r in ordered)))
        try:
            engine: FeatureEngine | None = None
            commit = GroupCommit()
            for record in ordered:
                applied = txn.checkpoints.get(record.shard_id)
                held = failed.get((record.shard_id, symbol))
                if applied is not None and record.sequence_number <= applied:
                    out.skipped_records += 1
                    continue
                if held is not None and record.sequence_number >= held:
                    out.held_records += 1
                    continue
                window = self.rules.window(record.arrival_us)
                for message in record.messages:
                    engine = self._apply_message(engine, message, window, txn.state, out, budget)
                commit.checkpoints[record.shard_id] = record.sequence_number
            if engine is not None:
                commit.snapshot, commit.state = engine.snapshot(), engine.state()
                out.snapshots[symbol] = commit.snapshot
                out.newest_event_us = engine.now_us
                out.trade_id_resets += engine.id_resets
            if commit.checkpoints:
                txn.commit(commit)
            else:
                txn.abort()
        except BaseException:
            txn.abort()
            raise
        return out

    def _apply_message(
        self,
        engine: FeatureEngine | None,
        message: Message,
        window: tuple[int, int] | None,
        state: bytes | None,
        out: BatchResult,
        budget: _Budget,
    ) -> FeatureEngine | None:
        """Check and feed one message; returns the symbol's engine (built on first need)."""
        if isinstance(message, GapMessage):
            out.gap_messages += 1
            out.gap_ids += message.size
            return engine
        out.events += 1
        reason = self.rules.check_time(message, window)
        if reason is None and isinstance(message, TradeMessage | QuoteMessage):
            if engine is None:
                engine = self._engine(message, state, out, budget)
            if isinstance(message, TradeMessage):
                reason, engine.id_candidate = self.rules.check_trade_id(
                    message, engine.last_trade_id, engine.last_trade_us, engine.id_candidate
                )
            if reason is None and not _feed(engine, message):
                out.duplicate_events += 1
        if reason is not None:
            out.implausible_events[reason.value] += 1
        return engine

    def _engine(
        self, first: Message, state: bytes | None, out: BatchResult, budget: _Budget
    ) -> FeatureEngine:
        symbol = first.symbol
        engine = self._restore(symbol, state)
        if engine is not None:
            out.trade_id_resets -= engine.id_resets  # the batch counts the increase only
            return engine
        engine = FeatureEngine(symbol, self.spec)
        if self.warmer is None:
            return engine
        if budget.spent():
            logger.warning("warm-up budget spent: %s starts cold", symbol)
            out.warmup_skipped += 1
            return engine
        try:
            klines_long, klines_short = self.warmer(symbol, first.time_us // 1000)
        except Exception as exc:  # noqa: BLE001  # any REST failure: start cold, say so
            logger.warning("warm-up of %s from REST failed, starting cold: %s", symbol, exc)
            out.warmup_failures += 1
        else:
            engine.warm_up(klines_long, klines_short)
            out.warmed_symbols.append(symbol)
        return engine

    def _restore(self, symbol: str, state: bytes | None) -> FeatureEngine | None:
        if state is None:
            return None
        try:
            return FeatureEngine.from_state(state, self.spec)
        except EngineStateError as exc:
            logger.warning("discarding %s engine state: %s", symbol, exc)
            return None


def _feed(engine: FeatureEngine, message: TradeMessage | QuoteMessage) -> bool:
    """Apply a trade or quote; False for a duplicate."""
    if isinstance(message, TradeMessage):
        return engine.add_trade(message.time_us, message.trade_id, message.price, message.quantity)
    return engine.add_quote(
        message.timestamp,
        message.update_id,
        message.bid_price,
        message.bid_quantity,
        message.ask_price,
        message.ask_quantity,
    )


def _check_route(partition_key: str, messages: list[Message]) -> None:
    try:
        hash_tag(partition_key)
    except KeySchemaError:
        raise MisroutedRecordError(
            f"partition key {partition_key[:40]!r} is not a symbol"
        ) from None
    for message in messages:
        if message.symbol != partition_key:
            raise MisroutedRecordError(
                f"a message names {message.symbol[:40]!r} under partition key {partition_key!r}"
            )


def _lowest_per_shard(group: Sequence[DecodedRecord]) -> list[tuple[str, int]]:
    lowest: dict[str, int] = {}
    for r in group:
        lowest[r.shard_id] = min(lowest.get(r.shard_id, r.sequence_number), r.sequence_number)
    return sorted(lowest.items())


def _unknown(groups: Mapping[str, object], symbols: frozenset[str] | None) -> int:
    return 0 if symbols is None else sum(1 for s in groups if s not in symbols)


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
