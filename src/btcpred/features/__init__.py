"""The streaming feature engine: one implementation for live serving and for training.

See ``docs/features.md`` for every definition, window, unit and warm-up length.
"""

from btcpred.features.engine import STATE_VERSION, EngineStateError, FeatureEngine
from btcpred.features.snapshot import FeatureSnapshot, SnapshotFormatError
from btcpred.features.spec import (
    DEFAULT_SPEC,
    FEATURE_NAMES,
    SCHEMA_VERSION,
    FeatureSpec,
    spec_hash,
)

__all__ = [
    "DEFAULT_SPEC",
    "FEATURE_NAMES",
    "SCHEMA_VERSION",
    "STATE_VERSION",
    "EngineStateError",
    "FeatureEngine",
    "FeatureSnapshot",
    "FeatureSpec",
    "SnapshotFormatError",
    "spec_hash",
]
