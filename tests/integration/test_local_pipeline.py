"""The local stack's aggregation leg: every event reaches Redis, the last partial batch too."""

from __future__ import annotations

from pathlib import Path

import redis

from btcpred.events import BestBidAsk, DepthSnapshot, Event, Trade
from btcpred.features import FeatureEngine
from btcpred.inference import PredictionResult
from btcpred.keys import RedisKeys
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


def test_the_replay_runs_the_predictor_loop_every_interval_of_market_time(
    redis_client: redis.Redis, capture: Capture
) -> None:
    model = open_registry(str(Path(__file__).parents[2] / "models")).load("btcpred-mlp")
    events: list[Event] = [e for e in capture.events if not isinstance(e, DepthSnapshot)][:20000]
    local = LocalAggregation(redis_client, model=model)

    lines: list[str] = []
    for start in range(0, len(events), 50):  # frames arrive a few events at a time
        lines.extend(local.formatted(events[start : start + 50]))
    local.close()

    printed = [
        PredictionResult.from_json(line.removeprefix("  >> prediction "))
        for line in lines
        if line.startswith("  >> prediction ")
    ]
    span_ms = (events[-1].event_time_us - events[0].event_time_us) // 1000
    assert printed == local.results
    assert abs(len(printed) - span_ms / 1500) <= 2  # one per 1.5 s of market time
    assert all(
        b.timestamp // 1500 > a.timestamp // 1500
        for a, b in zip(printed, printed[1:], strict=False)
    )
    assert {p.source for p in printed} == {"redis"}  # no REST here, and the stream is fresh
    assert all(p.model_version == "btcpred-mlp/1.0.0" for p in printed)
    latest = redis_client.get(RedisKeys().predictions("BTCUSDT").latest)
    assert latest is not None
    assert PredictionResult.from_json(latest) == printed[-1]
