"""What a tick records in :class:`~btcpred.inference.outputs.Metrics` (names as in
``docs/inference.md``), and the warnings that go with it."""

from __future__ import annotations

import logging

from btcpred.inference.accuracy import ObserveReport, confidence_band
from btcpred.inference.broadcast import BroadcastReport
from btcpred.inference.outputs import Metrics
from btcpred.inference.predictor import PredictOutcome

__all__ = ["count_broadcast", "count_outcome", "count_scoring"]

log = logging.getLogger("btcpred.inference")


def count_scoring(m: Metrics, seen: ObserveReport) -> None:
    """Predictions scored (or found unscorable) by one observed price."""
    if seen.unscorable:
        m.add("UnscorablePredictions", "Count", seen.unscorable)
    for s in seen.scored:
        m.add("AbsError", "None", s.abs_error)
        m.add("NaiveAbsError", "None", s.naive_abs_error)
        m.add("DirectionHit", "Count", 1.0 if s.direction_hit else 0.0)
        band = confidence_band(s.prediction.confidence).capitalize()
        m.add(f"AbsError{band}Confidence", "None", s.abs_error)


def count_outcome(m: Metrics, outcome: PredictOutcome) -> None:
    """One prediction: its source, latency, age, confidence and fallbacks."""
    r = outcome.result
    m.add("Predictions", "Count", 1)
    m.add("PredictionsFromRedis" if r.source == "redis" else "PredictionsFromFallback", "Count", 1)
    m.add("InferenceLatency", "Milliseconds", r.inference_latency_ms)
    m.add("FeatureAge", "Milliseconds", r.features_age_ms)
    m.add("Confidence", "None", r.confidence)
    if outcome.filled:
        m.add("FallbackMissingFeatures", "Count", 1)
        log.warning(
            "%s: filled %s from last known values (confidence x0.8)",
            r.symbol,
            ", ".join(outcome.filled),
        )
    if outcome.linear_fallback:
        m.add("FallbackLinearTrend", "Count", 1)
        log.warning("%s: linear trend fallback: %s", r.symbol, outcome.model_error)


def count_broadcast(m: Metrics, b: BroadcastReport) -> None:
    """One broadcast's deliveries by outcome and its duration (nothing when it had no one)."""
    if not b.sent + b.gone + b.failed + b.timed_out:
        return
    m.add("BroadcastSent", "Count", b.sent)
    m.add("BroadcastGone", "Count", b.gone)
    m.add("BroadcastFailed", "Count", b.failed)
    m.add("BroadcastTimedOut", "Count", b.timed_out)
    m.add("BroadcastSuperseded", "Count", b.superseded)
    m.add("BroadcastDuration", "Milliseconds", b.ms)
