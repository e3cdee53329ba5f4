"""The feature specification as data: names, order, windows and indicator periods.

Everything that changes a feature's value lives in :data:`DEFAULT_SPEC`; its :func:`spec_hash`
goes into every model's metadata so that a model is never served features it was not trained on.
Definitions in words: ``docs/features.md``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass
from typing import Final

import orjson

__all__ = ["DEFAULT_SPEC", "FEATURE_NAMES", "SCHEMA_VERSION", "FeatureSpec", "spec_hash"]

FEATURE_NAMES: Final[tuple[str, ...]] = (
    "price",
    "volume",
    "vwap",
    "price_change_1m",
    "price_change_5m",
    "volume_avg_1m",
    "trade_intensity",
    "bid_ask_spread",
    "order_book_imbalance",
    "rsi_5m",
    "macd_signal",
    "bollinger_position",
)
"""The twelve features, in the order models consume them."""

SCHEMA_VERSION: Final = 1
"""Version of the ``features:{S}:latest`` JSON document."""


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Windows (seconds) and indicator parameters; the defaults are the seed's definitions."""

    bucket_seconds: int = 1
    short_window_s: int = 60
    long_window_s: int = 300
    rsi_bar_s: int = 300
    rsi_period: int = 14
    macd_bar_s: int = 60
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bollinger_bar_s: int = 60
    bollinger_period: int = 20
    bollinger_k: float = 2.0
    max_gap_bars: int = 1440
    """A silence longer than this many bars resets the indicators instead of filling flat bars."""


DEFAULT_SPEC: Final = FeatureSpec()


@functools.lru_cache(maxsize=16)
def spec_hash(spec: FeatureSpec = DEFAULT_SPEC) -> str:
    """``sha256:<hex>`` over the feature names, schema version and every spec parameter."""
    payload = {"features": FEATURE_NAMES, "schema_version": SCHEMA_VERSION, **asdict(spec)}
    digest = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"sha256:{digest}"
