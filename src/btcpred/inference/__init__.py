"""Serving: the predictor loop, its fallbacks and outputs, and the client-facing APIs.

The pure core of the inference Lambda (``lambdas/inference``), the WebSocket and HTTP functions
(``lambdas/websocket``, ``lambdas/api``), the local replay and ``btcpred bench inference``.
Nothing here imports boto3 or reads the environment. Design: ``docs/inference.md``.
"""

from btcpred.inference.accuracy import AccuracyTracker, ScoredPrediction
from btcpred.inference.app import build_service, redis_client
from btcpred.inference.fallback import generate_fallback_features, linear_trend
from btcpred.inference.outputs import (
    Broadcaster,
    GoneError,
    HistoryWriter,
    ManagementApiPoster,
    Metrics,
    RecordingMetrics,
)
from btcpred.inference.predictor import NoPriceError, Predictor, PredictOutcome, TickInput
from btcpred.inference.result import PredictionResult
from btcpred.inference.service import InferenceService, RestFeatures, TickReport, run_loop

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
    "redis_client",
    "run_loop",
]
