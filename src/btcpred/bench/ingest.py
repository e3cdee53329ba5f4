"""``btcpred bench ingest``: the capture through socket → decode → pack → put, one core.

The exchange simulator and moto's Kinesis server run in their own processes on the other CPU;
the ingestor (this process) is pinned to one CPU. Two phases:

1. **Throughput**: ``laps`` copies of the capture (ids and times shifted so they stay
   contiguous) published as fast as the socket takes them (the simulator waits for the
   reader: backpressure). Events per second of wall time from the first frame to the last
   acknowledgement, and per CPU second of the ingestor process (all its threads).
2. **Recorded rate**: the capture in real time for ``realtime_s`` seconds with the default
   100 ms flush window: records per second of market time and the frame-received →
   put-acknowledged latency p50/p99.

Both phases check that every published trade id landed exactly once.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IngestBenchResult", "run_ingest_bench"]


@dataclass(frozen=True)
class IngestBenchResult:
    """The figures of one run (docs/benchmarks.md)."""

    events: int
    events_per_s: float
    events_per_cpu_s: float
    throughput_latency_p50_ms: float
    throughput_latency_p99_ms: float
    realtime_market_s: float
    realtime_events: int
    realtime_records: int
    records_per_market_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    flush_window_ms: float
    lost_trades: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _serve(paths: list[str], laps: int, speed: float, cpu: int | None, pipe: Connection) -> None:
    """The simulator's process: publish on request, report what was published."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    from btcpred.sim.exchange import ExchangeSimulator
    from btcpred.sim.exchange_model import LapShift
    from btcpred.sources.capture import load_capture

    events = load_capture([Path(p) for p in paths]).events
    shift = LapShift.of(events)
    laid = [shift.apply(e, lap) for lap in range(laps) for e in events]
    with ExchangeSimulator(
        laid, speed=speed, paused=True, backpressure=speed == 0, max_queue_frames=50_000
    ) as sim:
        pipe.send((sim.url, sim.rest_url, len(laid)))
        pipe.recv()  # go
        sim.resume()
        while not sim.wait_finished(0.05):
            if pipe.poll():  # the paced phase ends early
                pipe.recv()
                break
        pipe.send(sim.published.trade_ids("BTCUSDT"))
        pipe.recv()


def _percentile_ms(samples_ns: list[int], q: float) -> float:
    return round(float(np.percentile(np.asarray(samples_ns), q)) / 1e6, 2) if samples_ns else 0.0


def _phase(
    paths: list[str],
    laps: int,
    speed: float,
    endpoint: str,
    flush_window_s: float,
    cpus: tuple[int | None, int | None],
    duration_s: float | None,
) -> dict[str, Any]:
    from btcpred.events import Trade
    from btcpred.ingest.service import Ingestor
    from btcpred.records import unpack_record
    from btcpred.settings.ingest import IngestSettings
    from btcpred.sim.kinesis import create_stream, kinesis_client_for, read_stream
    from btcpred.sources.binance_rest import BinanceRestClient

    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_serve, args=(paths, laps, speed, cpus[1], there), daemon=True)
    child.start()
    url, rest_url, count = here.recv()
    client = kinesis_client_for(endpoint)
    name = f"bench-{secrets.token_hex(4)}"
    create_stream(client, name)
    settings = IngestSettings(
        stream_name=name,
        stream_url=url,
        rest_url=rest_url,
        api_key="bench",
        flush_window_s=flush_window_s,
        buffer_bytes=1 << 30,
        heartbeat_path=f"/tmp/btcpred-bench-{name}.heartbeat",  # noqa: S108
    )
    ingestor = Ingestor(settings, client, depth_fetch=BinanceRestClient(rest_url).depth_snapshot)

    async def run() -> tuple[float, float]:
        stop = asyncio.Event()
        task = asyncio.create_task(ingestor.run(stop))
        await ingestor.started.wait()
        await asyncio.sleep(0.5)
        cpu0, t0 = time.process_time(), time.time_ns()
        here.send("go")
        if duration_s is not None:
            await asyncio.sleep(duration_s)
        else:
            while not here.poll():
                await asyncio.sleep(0.01)
        while not ingestor.producer.idle:
            await asyncio.sleep(0.001)
        wall = (ingestor.producer.stats.last_ack_ns - t0) / 1e9
        cpu = time.process_time() - cpu0
        stop.set()
        await task
        return wall, cpu

    wall, cpu = asyncio.run(run())
    if duration_s is not None:
        here.send("stop")  # the paced phase: report what was published so far
    published = here.recv()
    here.send("bye")
    child.join(10)
    records = read_stream(client, name)
    items = [i for r in records for i in unpack_record(r.data)]
    trades = {i.trade_id for i in items if isinstance(i, Trade)}
    market = [i.event_time_us for i in items if isinstance(i, Trade)]
    stats = ingestor.producer.stats
    return {
        "count": count,
        "events": stats.messages_out,
        "wall_s": wall,
        "cpu_s": cpu,
        "records": len(records),
        "market_s": (max(market) - min(market)) / 1e6 if market else 0.0,
        # the paced phase stops mid-stream: ids published after the ingestor stopped are not lost
        "lost": sum(
            1
            for t in published
            if t not in trades and (duration_s is None or t <= max(trades, default=0))
        ),
        "p50": _percentile_ms(stats.latencies_ns, 50),
        "p99": _percentile_ms(stats.latencies_ns, 99),
    }


def run_ingest_bench(
    capture_paths: list[Path],
    endpoint: str,
    *,
    laps: int = 3,
    realtime_s: float = 20.0,
    progress: Callable[[str], None] = lambda line: None,
) -> IngestBenchResult:
    """Run both phases against the Kinesis at ``endpoint``."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    mine = cpus[0] if cpus else None
    theirs = cpus[1] if len(cpus) > 1 else None
    if mine is not None:
        os.sched_setaffinity(0, {mine})
    paths = [str(p) for p in capture_paths]
    progress(f"throughput: {laps} laps of the capture as fast as the socket takes them")
    fast = _phase(paths, laps, 0.0, endpoint, 0.1, (mine, theirs), None)
    progress(
        f"  {fast['events']:,} events in {fast['wall_s']:.2f} s wall, {fast['cpu_s']:.2f} s CPU"
    )
    progress(f"recorded rate: {realtime_s:.0f} s of the capture in real time, 100 ms window")
    paced = _phase(paths, 1, 1.0, endpoint, 0.1, (mine, theirs), realtime_s)
    return IngestBenchResult(
        events=fast["events"],
        events_per_s=round(fast["events"] / fast["wall_s"]),
        events_per_cpu_s=round(fast["events"] / fast["cpu_s"]),
        throughput_latency_p50_ms=fast["p50"],
        throughput_latency_p99_ms=fast["p99"],
        realtime_market_s=round(paced["market_s"], 1),
        realtime_events=paced["events"],
        realtime_records=paced["records"],
        records_per_market_s=round(paced["records"] / max(paced["market_s"], 1e-9), 2),
        latency_p50_ms=paced["p50"],
        latency_p99_ms=paced["p99"],
        flush_window_ms=100.0,
        lost_trades=fast["lost"] + paced["lost"],
    )
