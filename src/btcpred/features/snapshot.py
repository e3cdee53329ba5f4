"""A feature snapshot and its JSON document (``features:{S}:latest``)."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import orjson

from btcpred.features.spec import FEATURE_NAMES, SCHEMA_VERSION

__all__ = ["FeatureSnapshot", "SnapshotFormatError"]


class SnapshotFormatError(ValueError):
    """A features document is not valid JSON of the features schema."""


class FeatureSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The twelve features of one symbol at one time.

    A feature is ``None`` until it is warm or when the source cannot provide it (e.g. spread
    from klines); ``warm`` says the same per feature, so no consumer mistakes a gap for a value.
    """

    symbol: str
    timestamp: int
    """Time of the snapshot: ms since the Unix epoch (UTC)."""
    price: float | None = None
    volume: float | None = None
    vwap: float | None = None
    price_change_1m: float | None = None
    price_change_5m: float | None = None
    volume_avg_1m: float | None = None
    trade_intensity: float | None = None
    bid_ask_spread: float | None = None
    order_book_imbalance: float | None = None
    rsi_5m: float | None = None
    macd_signal: float | None = None
    bollinger_position: float | None = None

    @classmethod
    def build(
        cls, symbol: str, timestamp_ms: int, values: dict[str, float | None]
    ) -> FeatureSnapshot:
        """Build from a name → value mapping; non-finite values become ``None``."""
        clean = {
            name: (None if value is None or not math.isfinite(value) else value)
            for name, value in values.items()
        }
        return cls(symbol=symbol, timestamp=timestamp_ms, **clean)

    def values(self) -> tuple[float | None, ...]:
        """The twelve features in model order (:data:`~btcpred.features.spec.FEATURE_NAMES`)."""
        return tuple(getattr(self, name) for name in FEATURE_NAMES)

    @property
    def warm(self) -> dict[str, bool]:
        """Per feature: True when it has a value."""
        return {name: getattr(self, name) is not None for name in FEATURE_NAMES}

    def to_document(self) -> dict[str, Any]:
        """The ``features:{S}:latest`` document: seed schema + ``schema_version`` + ``warm``."""
        doc: dict[str, Any] = {"symbol": self.symbol, "timestamp": self.timestamp}
        doc.update(zip(FEATURE_NAMES, self.values(), strict=True))
        doc["schema_version"] = SCHEMA_VERSION
        doc["warm"] = self.warm
        return doc

    def to_json(self) -> bytes:
        """The document as compact JSON bytes."""
        return orjson.dumps(self.to_document())

    @classmethod
    def from_json(cls, data: bytes | str) -> FeatureSnapshot:
        """Parse a document written by :meth:`to_json`.

        Raises
        ------
        SnapshotFormatError
            Not JSON, another schema version, or fields of the wrong type.
        """
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SnapshotFormatError(f"features document is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
            raise SnapshotFormatError("features document has another schema_version")
        fields = {k: doc.get(k) for k in ("symbol", "timestamp", *FEATURE_NAMES)}
        try:
            return msgspec.convert(fields, cls)
        except msgspec.ValidationError as exc:
            raise SnapshotFormatError(f"features document: {exc}") from None
