"""The poller function's metrics (namespace ``btcpred``, dimension ``service=poller``), named
once for the handler, the stack's alarms and its dashboard."""

from __future__ import annotations

from typing import Final

__all__ = ["SERVICE", "UNITS"]

SERVICE: Final = "poller"

UNITS: Final = {
    "PollerPolls": "Count",
    "PollerErrors": "Count",
    "PollerRateLimited": "Count",
    "PollerFallbackWrites": "Count",
    "PriceDivergenceBps": "None",
    "StreamFeatureAgeMs": "Milliseconds",
    "PollerRestLatencyMs": "Milliseconds",
}
"""Polls made, polls that failed, polls refused or held back by a 429/418 ``Retry-After``,
fallback feature writes, |REST last − stream price| / REST last in basis points (only while
stream features exist), the stream features' age, and the REST round trip."""
