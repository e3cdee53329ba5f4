"""When stored features are fresh enough to predict from: not too old, and not from the future.

A features timestamp is the exchange's event time of the newest event. Features are fresh when
``-CLOCK_SKEW_MS <= now - timestamp <= MAX_FEATURE_AGE_MS``. A point stamped more than
:data:`CLOCK_SKEW_MS` ahead of this host's clock comes from a wrong clock or a unit error (µs
read as ms), not from skew: it is not fresh, and it never enters the trend's price history,
where it would hold back every later point until the wall clock caught up with it.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Final

from btcpred.features import FeatureSnapshot
from btcpred.inference.store import StoredFeatures

__all__ = ["CLOCK_SKEW_MS", "Freshness", "freshness", "without_future_history"]

CLOCK_SKEW_MS: Final = 1_000
"""How far ahead a features timestamp may be and still count as fresh. Binance's clock, the
aggregator's and this host's are NTP-disciplined and typically agree within tens of ms; one
second is well above that and well below ``MAX_FEATURE_AGE_MS`` (5 s by default)."""


class Freshness(Enum):
    """A feature point's age class at one tick."""

    FRESH = "fresh"
    STALE = "stale"
    FUTURE = "future"


def freshness(snap: FeatureSnapshot, now_ms: int, max_age_ms: int) -> Freshness:
    """Whether ``snap`` may be predicted from at ``now_ms`` (see the module docstring)."""
    age = now_ms - snap.timestamp
    if age < -CLOCK_SKEW_MS:
        return Freshness.FUTURE
    return Freshness.FRESH if age <= max_age_ms else Freshness.STALE


def without_future_history(found: StoredFeatures, now_ms: int) -> StoredFeatures:
    """``found`` without history points stamped beyond the clock-skew tolerance."""
    limit = now_ms + CLOCK_SKEW_MS
    if all(h.timestamp <= limit for h in found.history):
        return found
    return dataclasses.replace(found, history=[h for h in found.history if h.timestamp <= limit])
