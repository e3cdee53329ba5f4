"""Serving: the predictor loop, its fallbacks and outputs, and the client-facing APIs.

The pure core of the inference Lambda (``lambdas/inference``), the WebSocket and HTTP functions
(``lambdas/websocket``, ``lambdas/api``), the local replay and ``btcpred bench inference``.
Nothing here imports boto3 or reads the environment. Design: ``docs/inference.md``.

The names below are loaded on first use (PEP 562), so that importing a light submodule such
as :mod:`btcpred.inference.clients` (the HTTP and WebSocket functions) never pulls in numpy,
onnxruntime or fastavro through this package's ``__init__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names resolve to, for type checkers and readers
    from btcpred.inference.accuracy import AccuracyTracker, ScoredPrediction
    from btcpred.inference.app import build_service
    from btcpred.inference.fallback import generate_fallback_features, linear_trend
    from btcpred.inference.outputs import Broadcaster, HistoryWriter, Metrics, RecordingMetrics
    from btcpred.inference.posting import GoneError, ManagementApiPoster
    from btcpred.inference.predictor import NoPriceError, Predictor, PredictOutcome, TickInput
    from btcpred.inference.result import PredictionResult
    from btcpred.inference.service import InferenceService, RestFeatures, TickReport, run_loop

_WHERE = {
    "AccuracyTracker": "accuracy",
    "ScoredPrediction": "accuracy",
    "build_service": "app",
    "generate_fallback_features": "fallback",
    "linear_trend": "fallback",
    "Broadcaster": "outputs",
    "HistoryWriter": "outputs",
    "Metrics": "outputs",
    "RecordingMetrics": "outputs",
    "GoneError": "posting",
    "ManagementApiPoster": "posting",
    "NoPriceError": "predictor",
    "Predictor": "predictor",
    "PredictOutcome": "predictor",
    "TickInput": "predictor",
    "PredictionResult": "result",
    "InferenceService": "service",
    "RestFeatures": "service",
    "TickReport": "service",
    "run_loop": "service",
}

__all__ = [
    "AccuracyTracker",
    "Broadcaster",
    "GoneError",
    "HistoryWriter",
    "InferenceService",
    "ManagementApiPoster",
    "Metrics",
    "NoPriceError",
    "PredictOutcome",
    "PredictionResult",
    "Predictor",
    "RecordingMetrics",
    "RestFeatures",
    "ScoredPrediction",
    "TickInput",
    "TickReport",
    "build_service",
    "generate_fallback_features",
    "linear_trend",
    "run_loop",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
