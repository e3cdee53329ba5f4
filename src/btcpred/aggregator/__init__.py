"""The aggregator: Kinesis records → feature engines → Redis, with exactly-once effect."""

from btcpred.aggregator.batch import BatchResult, DecodedRecord
from btcpred.aggregator.core import (
    Aggregator,
    MisroutedRecordError,
    PoisonPolicy,
    Warmer,
    rest_warmer,
)
from btcpred.aggregator.kinesis import InvalidEventError, KinesisInput, kinesis_inputs
from btcpred.aggregator.plausibility import Implausible, PlausibilityRules
from btcpred.aggregator.store import (
    FeatureStore,
    FeatureStoreError,
    GroupCommit,
    RedisFeatureStore,
    StoreConflictError,
    StoreUnavailableError,
)

__all__ = [
    "Aggregator",
    "BatchResult",
    "DecodedRecord",
    "FeatureStore",
    "FeatureStoreError",
    "GroupCommit",
    "Implausible",
    "InvalidEventError",
    "KinesisInput",
    "MisroutedRecordError",
    "PlausibilityRules",
    "PoisonPolicy",
    "RedisFeatureStore",
    "StoreConflictError",
    "StoreUnavailableError",
    "Warmer",
    "kinesis_inputs",
    "rest_warmer",
]
