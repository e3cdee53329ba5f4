"""Plausibility rules: well-formed but implausible messages never reach a symbol's engine.

A message that decodes cleanly can still corrupt a symbol for good: a timestamp hours in the
future moves the engine's clock there (every later event is "late", every window empty), and a
trade id far beyond the real one makes every later trade look like a redelivery. The aggregator
therefore checks each message against the record's Kinesis arrival time and the engine's last
trade before applying it, and drops (and counts) what breaks a rule:

* **time window** — the message's ``timestamp`` and ``transact_time`` must lie within
  ``[arrival - max_past_s, arrival + max_future_s]``. ``approximateArrivalTimestamp`` is set by
  Kinesis when it accepts the record, moments after the exchange event; the future margin covers
  clock skew between Binance and AWS, the past margin an ingestor that retried or buffered.
* **trade id jump** — against the engine's last applied trade, a trade id may move by at most
  ``trade_id_slack + max_trades_per_s * seconds`` since the last trade's time, ahead or (for a
  trade with a later time) back: far more than the exchange can match, far less than a corrupt
  id. A trade at or below the last id *and* time is a redelivery, left to the engine's
  duplicate check.
* **re-anchoring** — a rejected trade is remembered as the candidate anchor (in the engine
  state). The next trade that breaks the rule but agrees with the candidate (the same bound,
  measured from the candidate) is accepted and the id sequence moves there: a real series of
  trades re-anchors after losing one trade (the engine's last id was the corrupt one, e.g. a
  huge first id after a cold start), while a single corrupt id, high or low, never gains a
  consistent successor and costs nothing but itself.

The engine adds the last guard (``FeatureEngine.add_trade``): an id at or below the last one
with a later time restarts the id sequence instead of being dropped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from btcpred.aggregator.messages import Message, TradeMessage

__all__ = ["Implausible", "PlausibilityRules"]

_US = 1_000_000


class Implausible(enum.Enum):
    """Why a message was dropped."""

    TOO_OLD = "too_old"
    IN_THE_FUTURE = "in_the_future"
    TRADE_ID_JUMP = "trade_id_jump"


@dataclass(frozen=True, slots=True)
class PlausibilityRules:
    """The bounds (see the module docstring); the defaults are what the Lambda uses."""

    max_past_s: float = 600.0
    max_future_s: float = 10.0
    trade_id_slack: int = 100_000
    max_trades_per_s: int = 100_000

    def window(self, arrival_us: int | None) -> tuple[int, int] | None:
        """The allowed ``[first, last]`` event times (µs) of a record; None: arrival unknown."""
        if arrival_us is None:
            return None
        return (
            arrival_us - round(self.max_past_s * _US),
            arrival_us + round(self.max_future_s * _US),
        )

    @staticmethod
    def check_time(message: Message, window: tuple[int, int] | None) -> Implausible | None:
        """The time-window rule on ``timestamp`` (and a trade's ``transact_time``)."""
        if window is None:
            return None
        first, last = window
        stamp = message.timestamp
        if isinstance(message, TradeMessage) and message.transact_time is not None:
            # transact_time precedes the event time by up to a fraction of a second
            stamp = min(stamp, message.transact_time)
            if message.transact_time > last:
                return Implausible.IN_THE_FUTURE
        if stamp < first:
            return Implausible.TOO_OLD
        return Implausible.IN_THE_FUTURE if message.timestamp > last else None

    def fits(self, trade_id: int, time_us: int, ref_id: int, ref_us: int) -> bool:
        """Whether ``trade_id`` at ``time_us`` is within the id bound of ``(ref_id, ref_us)``."""
        seconds = max(0, time_us - ref_us) / _US
        allowed = self.trade_id_slack + self.max_trades_per_s * seconds
        return -allowed <= trade_id - ref_id <= allowed

    def check_trade_id(
        self,
        message: TradeMessage,
        last_id: int,
        last_trade_us: int,
        candidate: tuple[int, int] | None,
    ) -> tuple[Implausible | None, tuple[int, int] | None]:
        """The id rules against the engine's last trade (``last_id`` -1: none yet) and the
        remembered candidate anchor: ``(reason or None, the candidate to remember)``."""
        trade_id, time_us = message.trade_id, message.time_us
        if last_id < 0 or (trade_id <= last_id and time_us <= last_trade_us):
            return None, candidate  # the first trade, or a redelivery for the engine to drop
        if self.fits(trade_id, time_us, last_id, last_trade_us):
            return None, None
        if (
            candidate is not None
            and time_us >= candidate[1]
            and self.fits(trade_id, time_us, *candidate)
        ):
            return None, None  # a consistent series: re-anchor here
        return Implausible.TRADE_ID_JUMP, (trade_id, time_us)
