"""Per-(symbol, stream) high-water marks: duplicates dropped, breaks turned into gaps.

Every event of every connection passes through one :class:`Sequencer`. Trade ids must be
contiguous and depth diffs continuous (``first_update_id == previous last_update_id + 1``); a
break yields a :class:`~btcpred.events.Gap` naming the missing ids, with the reason the caller
set for that stream (``reconnect`` after a new connection, ``rotation`` after a planned switch,
else ``sequence``: the exchange skipped ids on a live connection). An event at or below its
stream's high-water mark was already accepted (a redelivery, or the other connection during a
rotation) and is dropped. Best bid/ask update ids jump by design (Binance culls quotes), so
quotes are only de-duplicated (an update id at or below the mark), never a gap. The marks are
what makes switching connections lossless: both connections feed one sequencer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from btcpred.events import BestBidAsk, DepthDiff, Event, Gap, Trade

__all__ = ["TRADE", "DEPTH", "QUOTE", "Verdict", "Sequencer", "stream_of"]

TRADE: Final = "trade"
DEPTH: Final = "depth"
QUOTE: Final = "bestbidask"


def stream_of(event: Event) -> str:
    """The stream an event belongs to (``trade``, ``depth`` or ``bestbidask``)."""
    if isinstance(event, Trade):
        return TRADE
    if isinstance(event, BestBidAsk):
        return QUOTE
    return DEPTH


@dataclass(slots=True)
class Verdict:
    """What to do with one event: ``accept`` it or not, and the gap it revealed, if any."""

    accept: bool
    gap: Gap | None = None


_DUPLICATE: Final = Verdict(False)
_IN_ORDER: Final = Verdict(True)


@dataclass(slots=True)
class Sequencer:
    """The high-water marks of every (symbol, stream) and the counts of what they did."""

    marks: dict[tuple[str, str], int] = field(default_factory=dict)
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)
    duplicates: int = 0
    gaps: int = 0
    gap_ids: int = 0

    def mark(self, symbol: str, stream: str) -> int | None:
        """The last accepted id of a stream (trade id, book update id), None before the first."""
        return self.marks.get((symbol, stream))

    def expect_break(self, reason: str, streams: set[tuple[str, str]] | None = None) -> None:
        """Name the cause of the next break on these streams (all known ones by default)."""
        for key in streams if streams is not None else set(self.marks):
            self.reasons[key] = reason

    def reset_depth(self, symbol: str, last_update_id: int) -> None:
        """The book restarts from a snapshot: the next diff continues from ``last_update_id``."""
        self.marks[(symbol, DEPTH)] = last_update_id

    def check(self, event: Event) -> Verdict:
        """Judge one event and move the mark when it is accepted."""
        if isinstance(event, Trade):
            return self._advance(event.symbol, TRADE, event.trade_id, event.trade_id, event)
        if isinstance(event, DepthDiff):
            return self._advance(
                event.symbol, DEPTH, event.first_update_id, event.last_update_id, event
            )
        if isinstance(event, BestBidAsk):
            key = (event.symbol, QUOTE)
            last = self.marks.get(key)
            if last is not None and 0 < event.update_id <= last:
                self.duplicates += 1
                return _DUPLICATE
            if event.update_id > 0:
                self.marks[key] = event.update_id
            return _IN_ORDER
        return _IN_ORDER  # a DepthSnapshot: the resynchronisation sets the depth mark

    def _advance(self, symbol: str, stream: str, first: int, last: int, event: Event) -> Verdict:
        key = (symbol, stream)
        mark = self.marks.get(key)
        if mark is not None and last <= mark:
            self.duplicates += 1
            return _DUPLICATE
        self.marks[key] = last
        reason = self.reasons.pop(key, "sequence")
        if mark is None or first <= mark + 1:
            return _IN_ORDER
        gap = Gap(
            symbol, event.event_time_us, stream, mark + 1, first - 1, reason, event.receive_time_ns
        )
        self.gaps += 1
        self.gap_ids += gap.size
        return Verdict(True, gap)
