"""The aggregator: Kinesis records → feature engines → Redis, with exactly-once effect."""

from btcpred.aggregator.core import (
    Aggregator,
    BatchResult,
    DecodedRecord,
    PoisonPolicy,
    Warmer,
    rest_warmer,
)
from btcpred.aggregator.store import (
    BatchCommit,
    FeatureStore,
    FeatureStoreError,
    RedisFeatureStore,
    StoreConflictError,
    StoreKeys,
    StoreUnavailableError,
)

__all__ = [
    "Aggregator",
    "BatchCommit",
    "BatchResult",
    "DecodedRecord",
    "FeatureStore",
    "FeatureStoreError",
    "PoisonPolicy",
    "RedisFeatureStore",
    "StoreConflictError",
    "StoreKeys",
    "StoreUnavailableError",
    "Warmer",
    "rest_warmer",
]
