"""``btcpred bench inference``: one predictor tick against a real Redis, and a broadcast.

A tick is what the inference Lambda does every interval: one pipeline reading
``features:{S}:latest``, ``:fallback``, ``:history`` (10 points) and the pending handover key;
validation; the model (one ONNX run); the PredictionResult; one pipeline writing
``prediction:{S}:latest``, its history, scored predictions and the health document; the metrics
(in memory here, as EMF values are in the Lambda). ``tick_p50_ms``/``tick_p99_ms`` time
:meth:`InferenceService.tick` end to end. ``model_p99_us`` is the bare ``session.run``.
``rss_mb`` is this process's resident memory after the ticks (the predictor, its model and
Redis client; no torch). ``broadcast_100_p99_ms`` times one broadcast to 100 connections
through boto3's ``apigatewaymanagementapi`` client against the local stand-in of the management
API, ``MAX_CONCURRENT_PREDICTIONS`` (10) posts at a time; ``broadcast_100_p50_ms`` is its median
and ``broadcast_ms_per_connection`` that median over 100. ``post_cpu_us`` is the CPU time one
post costs the posting thread (boto3 building, signing and sending the request, reading the
answer; ``time.thread_time``, so the stand-in server's own work in the same process is not in
it): the broadcast's cost per connection on a vCPU.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from btcpred.features import FeatureSnapshot
from btcpred.inference import RecordingMetrics, build_service
from btcpred.inference.broadcast import Broadcaster, ManagementApiPoster, Poster
from btcpred.inference.connections import RedisConnectionRegistry
from btcpred.inference.process import rss_mb
from btcpred.keys import RedisKeys
from btcpred.redisconn import RedisClient, connect
from btcpred.settings import InferenceSettings

__all__ = ["InferenceBenchResult", "run_inference_bench"]


@dataclass(frozen=True)
class InferenceBenchResult:
    """Milliseconds unless the name says otherwise."""

    tick_p50_ms: float
    tick_p99_ms: float
    model_p99_us: float
    rss_mb: float
    broadcast_100_p99_ms: float | None
    broadcast_100_p50_ms: float | None
    broadcast_ms_per_connection: float | None
    post_cpu_us: float | None
    ticks: int
    model_version: str

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return asdict(self)


def _percentile(samples: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(samples), q)), 3)


class _CpuTimedPoster:
    """A poster that records the posting thread's CPU time per post."""

    def __init__(self, inner: Poster) -> None:
        self.inner = inner
        self.cpu_ns: list[int] = []

    def post(self, connection_id: str, data: bytes) -> None:
        started = time.thread_time_ns()
        try:
            self.inner.post(connection_id, data)
        finally:
            self.cpu_ns.append(time.thread_time_ns() - started)  # list.append: thread-safe


def _broadcast(client: RedisClient, rounds: int) -> tuple[float, float, float] | None:
    """(p99 ms, p50 ms, median CPU µs per post) of broadcasts to 100 connections."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # boto3 is the `aws` extra: no broadcast figure without it
        return None
    from btcpred.sim.management_api import ManagementApiServer

    ids = [f"conn-{i:03d}" for i in range(100)]
    registry = RedisConnectionRegistry(client)
    now = time.time_ns() // 1_000_000
    for cid in ids:
        registry.add(cid, "BTCUSDT", now)
    with ManagementApiServer() as server:
        server.connect(*ids)
        api = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 - the local stand-in checks nothing
            config=Config(retries={"max_attempts": 1}, max_pool_connections=10),
        )
        poster = _CpuTimedPoster(ManagementApiPoster(api))
        # a budget far above the broadcast's time: the figure is the cost, never the budget
        broadcaster = Broadcaster(registry, poster, max_concurrency=10, budget_ms=30_000)
        data = b'{"symbol":"BTCUSDT"}' * 12
        samples = []
        for i in range(rounds + 5):
            if i == 5:
                poster.cpu_ns.clear()
            report = broadcaster.broadcast("BTCUSDT", data, now)
            if report.sent != 100:
                raise RuntimeError(f"broadcast delivered {report.sent} of 100")
            if i >= 5:
                samples.append(report.ms)
        broadcaster.finish()
    cpu_us = [ns / 1000 for ns in poster.cpu_ns]
    return _percentile(samples, 99), _percentile(samples, 50), _percentile(cpu_us, 50)


def run_inference_bench(
    model_location: str,
    model_name: str,
    snapshot: FeatureSnapshot,
    redis_url: str,
    *,
    ticks: int = 5_000,
    broadcasts: int = 200,
    progress: Callable[[str], None] = lambda _: None,
) -> InferenceBenchResult:
    """Run :func:`bench_in_this_process` in a fresh (spawned) process, so that ``rss_mb`` is a
    predictor's memory and not the benchmark harness's (which holds the whole capture)."""
    progress(
        f"{ticks:,} ticks against {redis_url}, then {broadcasts} broadcasts to 100 "
        "connections (local management API stand-in), in a fresh process"
    )
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(1, mp_context=context) as pool:
        future = pool.submit(
            bench_in_this_process,
            model_location,
            model_name,
            snapshot.to_json(),
            redis_url,
            ticks,
            broadcasts,
        )
        return future.result()


def bench_in_this_process(
    model_location: str,
    model_name: str,
    snapshot_json: bytes,
    redis_url: str,
    ticks: int,
    broadcasts: int,
) -> InferenceBenchResult:
    """Time ``ticks`` ticks of a real :class:`InferenceService` on one feature point."""
    snapshot = FeatureSnapshot.from_json(snapshot_json)
    client = connect(redis_url, timeout_s=2.0)
    client.flushdb()
    doc = snapshot.to_json()
    keys = RedisKeys()
    client.set(keys.features_latest("BTCUSDT"), doc)
    for _ in range(10):
        client.lpush(keys.features_history("BTCUSDT"), doc)
    service = build_service(
        InferenceSettings(model_path=model_location, model_name=model_name, redis_url=redis_url),
        owner="bench",
        metrics=RecordingMetrics(),
        client=client,
        rest=False,
    )
    model = service.predictor.model
    now = snapshot.timestamp + 200
    deadline = now + 3_600_000
    for _ in range(500):
        service.tick(now, deadline)
    samples = []
    for i in range(ticks):
        report = service.tick(now, deadline)
        if not report.outcomes or report.outcomes[0].linear_fallback:
            raise RuntimeError(f"tick {i} did not predict with the model: {report.skipped}")
        samples.append(report.ms)
        if len(service.accuracy.pending("BTCUSDT")) > 900:
            service.accuracy.drain("BTCUSDT")  # keep the queue at a live loop's size (40)
    memory = rss_mb()
    row = np.array([[[v if v is not None else np.nan for v in snapshot.values()]]], np.float32)
    runs = []
    for _ in range(20_000):
        t = time.perf_counter_ns()
        model.session.run(None, {model.metadata.input_name: row})
        runs.append((time.perf_counter_ns() - t) / 1000)
    broadcast = _broadcast(client, broadcasts)
    service.close(now + ticks)
    client.close()
    return InferenceBenchResult(
        tick_p50_ms=_percentile(samples, 50),
        tick_p99_ms=_percentile(samples, 99),
        model_p99_us=_percentile(runs, 99),
        rss_mb=round(memory, 1),
        broadcast_100_p99_ms=None if broadcast is None else broadcast[0],
        broadcast_100_p50_ms=None if broadcast is None else broadcast[1],
        broadcast_ms_per_connection=None if broadcast is None else round(broadcast[1] / 100, 3),
        post_cpu_us=None if broadcast is None else broadcast[2],
        ticks=ticks,
        model_version=model.version,
    )
