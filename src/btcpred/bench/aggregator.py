"""``btcpred bench aggregator``: the real Lambda handler against a naive pandas reference.

The capture's stream events (trades, book tickers, depth diffs; the REST snapshot left out) are
packed into Kinesis records the way the ingestor does — one record per ``flush_ms`` of receive
time (100 ms), at most 1 MiB — and grouped into Lambda events of ``records_per_batch`` records
(10: about one second of market data, what a Lambda poller collects per poll at live rates),
shaped exactly as Lambda delivers them. Each side
runs in its own fresh process (so peak RSS is its own, not the benchmark's) against the same
real Redis, flushed before every round:

* the handler: ``lambdas/aggregator/handler.py`` with Powertools, decoding, the engine and one
  Redis transaction per batch — everything a Lambda invocation does;
* the reference (:mod:`btcpred.bench.naive`): keep every trade, recompute every feature per
  batch with pandas, write the document.

events/s counts every event in the records (depth included) over the best round's wall time.
"""

from __future__ import annotations

import gc
import io
import multiprocessing
import resource
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btcpred.bench import pin_to_one_cpu
from btcpred.events import DepthSnapshot, Event
from btcpred.records import pack_records
from btcpred.sim.lambda_events import (
    LocalLambdaContext,
    kinesis_event,
    load_lambda_module,
    sequence_numbers,
)
from btcpred.sources.capture import Capture

__all__ = ["AggregatorBenchResult", "build_events", "run_aggregator_bench"]

HANDLER = Path(__file__).resolve().parents[3] / "lambdas" / "aggregator" / "handler.py"


@dataclass(frozen=True)
class AggregatorBenchResult:
    """Best-round figures of both sides."""

    events: int
    batches: int
    handler_seconds: float
    reference_seconds: float
    handler_rss_mb: float
    reference_rss_mb: float

    def as_dict(self) -> dict[str, float | int]:
        """The ``--json`` object."""
        ours = self.events / self.handler_seconds
        theirs = self.events / self.reference_seconds
        return {
            "events_per_s": round(ours),
            "reference_events_per_s": round(theirs),
            "ratio": round(ours / theirs, 2),
            "peak_rss_mb": round(self.handler_rss_mb, 1),
            "reference_peak_rss_mb": round(self.reference_rss_mb, 1),
            "events": self.events,
            "batches": self.batches,
        }


def build_events(
    capture: Capture, *, flush_ms: int = 100, records_per_batch: int = 10
) -> tuple[list[dict[str, Any]], int]:
    """Lambda Kinesis events for the capture's stream and the number of market events."""
    stream = [e for e in capture.events if not isinstance(e, DepthSnapshot)]
    windows: dict[int, list[Event]] = {}
    for event in stream:
        windows.setdefault(event.receive_time_ns // (flush_ms * 1_000_000), []).append(event)
    records = [
        record for window in windows.values() for record in pack_records(window, ingest_ts_ms=0)
    ]
    seqs = sequence_numbers(len(records))
    events = [
        kinesis_event(records[i : i + records_per_batch], seqs[i : i + records_per_batch])
        for i in range(0, len(records), records_per_batch)
    ]
    return events, len(stream)


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it restarts at exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _time_rounds(run: Callable[[], None], reset: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        reset()
        gc.collect()
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best


def _handler_side(redis_url: str, events: list[dict[str, Any]], rounds: int) -> tuple[float, float]:
    import os

    import redis

    pin_to_one_cpu()
    # the child process plays the Lambda runtime: its configuration is the environment
    os.environ.update(
        REDIS_URL=redis_url, WARMUP_FROM_REST="false", POWERTOOLS_METRICS_NAMESPACE="btcpred"
    )
    module = load_lambda_module(HANDLER, "aggregator_handler")
    client, context, sink = redis.Redis.from_url(redis_url), LocalLambdaContext(), io.StringIO()

    def run() -> None:
        with redirect_stdout(sink):  # EMF metrics are still built and written, to memory
            for event in events:
                response = module.handler(event, context)
                if response["batchItemFailures"]:
                    raise RuntimeError(f"handler reported failures: {response}")
        sink.seek(0)
        sink.truncate()

    seconds = _time_rounds(run, client.flushdb, rounds)
    return seconds, _peak_rss_mb()


def _reference_side(
    redis_url: str, events: list[dict[str, Any]], rounds: int
) -> tuple[float, float]:
    import redis

    from btcpred.bench.naive import NaiveAggregator

    pin_to_one_cpu()
    client = redis.Redis.from_url(redis_url)
    holder: list[NaiveAggregator] = []

    def reset() -> None:
        client.flushdb()
        holder[:] = [NaiveAggregator(client)]

    def run() -> None:
        for event in events:
            holder[0].handle(event)

    seconds = _time_rounds(run, reset, rounds)
    return seconds, _peak_rss_mb()


def _in_child(target: Callable[..., tuple[float, float]], *args: Any) -> tuple[float, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: tuple[float, float] = pool.apply(target, args)
    return result


def run_aggregator_bench(
    capture: Capture,
    redis_url: str,
    *,
    rounds: int = 3,
    flush_ms: int = 100,
    records_per_batch: int = 10,
    progress: Callable[[str], None] | None = None,
) -> AggregatorBenchResult:
    """Run both sides over the same Lambda events against the Redis at ``redis_url``."""
    events, count = build_events(capture, flush_ms=flush_ms, records_per_batch=records_per_batch)
    say = progress or (lambda _: None)
    say(f"{count:,} events in {len(events)} Lambda batches; handler side ({rounds} rounds)")
    ours, our_rss = _in_child(_handler_side, redis_url, events, rounds)
    say(f"handler {count / ours:,.0f} events/s; reference side ({rounds} rounds)")
    theirs, their_rss = _in_child(_reference_side, redis_url, events, rounds)
    return AggregatorBenchResult(count, len(events), ours, theirs, our_rss, their_rss)
