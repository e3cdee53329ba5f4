"""Models: dataset building, training (optional ``train`` extra), ONNX serving and the registry.

Importing this package needs numpy and onnxruntime but never torch; :mod:`btcpred.model.train`
and :mod:`btcpred.model.network` are the only modules that import torch.
"""

from btcpred.model.calibration import (
    LINEAR_FALLBACK_CONFIDENCE,
    MISSING_FEATURES_FACTOR,
    Calibration,
    serving_confidence,
)
from btcpred.model.dataset import Dataset, DatasetError, build_dataset
from btcpred.model.metadata import ModelFormatError, ModelMetadata
from btcpred.model.registry import ModelRegistry, RegistryError, open_registry
from btcpred.model.runtime import MissingFeatureError, OnnxModel, Prediction

__all__ = [
    "LINEAR_FALLBACK_CONFIDENCE",
    "MISSING_FEATURES_FACTOR",
    "Calibration",
    "Dataset",
    "DatasetError",
    "MissingFeatureError",
    "ModelFormatError",
    "ModelMetadata",
    "ModelRegistry",
    "OnnxModel",
    "Prediction",
    "RegistryError",
    "build_dataset",
    "open_registry",
    "serving_confidence",
]
