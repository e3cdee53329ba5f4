"""The local stack's aggregation leg: every event reaches Redis, the last partial batch too."""

from __future__ import annotations

from pathlib import Path

import redis

from btcpred.events import BestBidAsk, DepthSnapshot, Event, Trade
from btcpred.features import FeatureEngine
from btcpred.local.pipeline import LocalAggregation
from btcpred.model import open_registry
from btcpred.sources.capture import Capture


def test_finish_applies_the_last_partial_batch(redis_client: redis.Redis, capture: Capture) -> None:
    events: list[Event] = [e for e in capture.events if not isinstance(e, DepthSnapshot)][:5000]
    local = LocalAggregation(redis_client)
    streamed = local.add(events)

    final = local.finish()

    engine = FeatureEngine("BTCUSDT")
    for event in events:
        if isinstance(event, Trade):
            engine.on_trade(event)
        elif isinstance(event, BestBidAsk):
            engine.on_quote(event)
    assert streamed  # batches completed along the way
    assert final == [engine.snapshot()]
    assert local.finish() == []  # nothing left over


def test_replay_lines_carry_a_prediction_per_features_line(
    redis_client: redis.Redis, capture: Capture
) -> None:
    model = open_registry(str(Path(__file__).parents[2] / "models")).load("btcpred-mlp")
    events: list[Event] = [e for e in capture.events if not isinstance(e, DepthSnapshot)][:5000]
    local = LocalAggregation(redis_client, model=model)

    lines = local.formatted(events)

    features = [line for line in lines if line.startswith("  >> features")]
    predictions = [line for line in lines if line.startswith("  >> predict")]
    assert features
    assert len(predictions) == len(features)
    assert all(
        lines[i + 1].startswith("  >> predict") for i, line in enumerate(lines) if line in features
    )
