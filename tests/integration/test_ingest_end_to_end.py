"""``btcpred ingest`` end to end: the exchange simulator over a real local WebSocket, the real
ingestor, a real local Kinesis (moto's server). Nothing is lost; every gap is on the stream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from btcpred.events import DepthSnapshot, Event
from btcpred.ingest.service import Ingestor
from btcpred.sim.exchange import ExchangeSimulator
from btcpred.sim.exchange_model import Fault, FaultKind
from btcpred.sim.kinesis import ThrottlingKinesis
from btcpred.sources.capture import Capture
from tests.integration.ingest_harness import rebuild_books, run_ingest

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def events(capture: Capture) -> list[Event]:
    return capture.events[:6000]


def test_the_capture_lands_whole_in_order_with_one_depth_snapshot(
    kinesis_endpoint: str, events: list[Event]
) -> None:
    run = run_ingest(kinesis_endpoint, events)
    assert run.unsent == 0
    assert run.gaps == []
    assert run.trades == run.published_trades
    assert len(run.trades) > 500
    assert sum(isinstance(i, DepthSnapshot) for i in run.items) == 1
    assert all(len(r.data) + len(r.partition_key) <= 1024 * 1024 for r in run.records)
    stats = run.ingestor.producer.stats
    assert stats.messages_in == stats.messages_out == len(run.items)


def test_a_book_rebuilt_from_the_records_equals_the_exchange_book(
    kinesis_endpoint: str, events: list[Event]
) -> None:
    async def skip_depth(sim: ExchangeSimulator, ingestor: Ingestor) -> None:
        await asyncio.sleep(0.3)
        sim.fault(Fault(FaultKind.SKIP_DEPTH, count=3))  # a depth break: resynchronise

    run = run_ingest(
        kinesis_endpoint,
        events,
        during=skip_depth,
        sim_options={"speed": 10.0, "backpressure": False, "checkpoint_every": 40},
    )
    depth_gaps = [g for g in run.gaps if g.stream == "depth"]
    assert len(depth_gaps) == 1
    assert sum(isinstance(i, DepthSnapshot) for i in run.items) == 2  # start and after the gap
    books = rebuild_books(run.items)
    checkpoints = run.sim.book_checkpoints("BTCUSDT")
    compared = 0
    for update_id, (bids, asks) in checkpoints.items():
        if update_id in books:
            assert books[update_id] == (dict(bids), dict(asks)), f"book differs at {update_id}"
            compared += 1
    assert compared >= 5


@pytest.mark.parametrize(
    "fault",
    [
        Fault(FaultKind.CLOSE_ABRUPT),
        Fault(FaultKind.CLOSE, code=1011),
        Fault(FaultKind.SKIP_TRADES, count=5),
        Fault(FaultKind.DUPLICATE, count=20),
        Fault(FaultKind.REORDER),
        Fault(FaultKind.MALFORMED, count=3),
    ],
    ids=lambda f: f.kind.value,
)
def test_under_each_fault_every_trade_lands_once_or_inside_a_gap(
    kinesis_endpoint: str, events: list[Event], fault: Fault
) -> None:
    async def inject(sim: ExchangeSimulator, ingestor: Ingestor) -> None:
        await asyncio.sleep(0.4)
        sim.fault(fault)

    run = run_ingest(
        kinesis_endpoint, events, during=inject, sim_options={"speed": 10.0, "backpressure": False}
    )
    run.assert_every_trade_once_or_in_a_gap()
    if fault.kind in (FaultKind.CLOSE_ABRUPT, FaultKind.CLOSE):
        assert run.ingestor.stats.reconnects == 1
        assert all(g.reason == "reconnect" for g in run.gaps)
    if fault.kind is FaultKind.SKIP_TRADES:
        (gap,) = [g for g in run.gaps if g.stream == "trade"]
        assert (gap.size, gap.reason) == (5, "sequence")
    if fault.kind is FaultKind.DUPLICATE:
        assert run.gaps == []
        assert run.ingestor.sequencer.duplicates >= 1
    if fault.kind is FaultKind.MALFORMED:
        assert run.ingestor.stats.malformed_frames == 3
        assert run.gaps == []


@pytest.mark.parametrize("how", ["lifetime", "server_shutdown_bare", "server_shutdown_event"])
def test_a_rotation_loses_nothing(kinesis_endpoint: str, events: list[Event], how: str) -> None:
    async def shutdown(sim: ExchangeSimulator, ingestor: Ingestor) -> None:
        await asyncio.sleep(0.5)
        sim.server_shutdown(shape=how.rsplit("_", 1)[1], grace_s=2.0)

    settings: dict[str, Any] = {}
    if how == "lifetime":
        settings["connection_lifetime_s"] = 1.5
    run = run_ingest(
        kinesis_endpoint,
        events,
        settings=settings,
        during=None if how == "lifetime" else shutdown,
        sim_options={"speed": 8.0, "backpressure": False},
    )
    assert run.ingestor.stats.rotations >= 1
    assert run.ingestor.stats.reconnects == 0
    assert run.gaps == []
    assert run.trades == run.published_trades


def test_a_dead_connection_is_detected_and_replaced(
    kinesis_endpoint: str, events: list[Event]
) -> None:
    async def stall(sim: ExchangeSimulator, ingestor: Ingestor) -> None:
        await asyncio.sleep(0.4)
        sim.fault(Fault(FaultKind.STALL, seconds=3.0, pings=False))

    started = time.monotonic()
    run = run_ingest(
        kinesis_endpoint,
        events,
        during=stall,
        settings={"dead_after_s": 0.8, "data_timeout_s": 5.0},
        sim_options={"speed": 10.0, "backpressure": False},
    )
    assert run.ingestor.stats.reconnects == 1
    assert "dead" in run.ingestor.connections[0].end_reason
    assert time.monotonic() - started < 30
    run.assert_every_trade_once_or_in_a_gap()
    assert {g.reason for g in run.gaps} <= {"reconnect"}


def test_throttled_kinesis_loses_nothing(kinesis_endpoint: str, events: list[Event]) -> None:
    wrappers: list[ThrottlingKinesis] = []

    def wrap(client: Any) -> ThrottlingKinesis:
        wrappers.append(ThrottlingKinesis(client, fail_share=0.4, seed=3))
        return wrappers[0]

    run = run_ingest(kinesis_endpoint, events, wrap=wrap, settings={"flush_window_s": 0.005})
    assert wrappers[0].entries_failed > 0
    assert run.gaps == []
    assert run.trades == run.published_trades
    assert len(wrappers[0].forwarded) == len(set(wrappers[0].forwarded))


def _ingest_process(
    sim: ExchangeSimulator, endpoint: str, stream: str, heartbeat: Path, **extra: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KINESIS_STREAM_NAME": stream,
        "BINANCE_STREAM_URL": sim.url,
        "BINANCE_REST_URL": sim.rest_url,
        "BINANCE_API_KEY": "test-key",
        "AWS_ENDPOINT_URL_KINESIS": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-northeast-1",
        "INGEST_HEARTBEAT_PATH": str(heartbeat),
        "INGEST_FLUSH_DEADLINE_S": "5",
        "INGEST_METRICS_INTERVAL_S": "0.5",
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "btcpred.cli", "ingest"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_the_command_runs_reports_healthy_and_flushes_on_sigterm(
    kinesis_endpoint: str, events: list[Event], tmp_path: Path
) -> None:
    from btcpred.records import unpack_record
    from btcpred.sim.kinesis import create_stream, kinesis_client_for, read_stream

    client = kinesis_client_for(kinesis_endpoint)
    create_stream(client, "sigterm")
    heartbeat = tmp_path / "hb"
    with ExchangeSimulator(events, speed=20.0, paused=True) as sim:
        proc = _ingest_process(
            sim, kinesis_endpoint, "sigterm", heartbeat, INGEST_FLUSH_WINDOW_MS="3000"
        )
        try:
            deadline = time.monotonic() + 20
            while not sim.connections and time.monotonic() < deadline:
                time.sleep(0.05)
            sim.resume()
            time.sleep(1.5)
            health = subprocess.run(
                [sys.executable, "-m", "btcpred.cli", "ingest-health"],
                env={**os.environ, "INGEST_HEARTBEAT_PATH": str(heartbeat)},
                capture_output=True,
                text=True,
                check=False,
            )
            assert health.returncode == 0, health.stderr
            assert "healthy" in health.stdout
            sent_before = sim.published.trade_ids("BTCUSDT")
            sigterm_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)  # the 3 s flush window holds messages: flush them
            out, err = proc.communicate(timeout=15)
            took = time.monotonic() - sigterm_at
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert took < 5.0 + 2.0
    assert b'"Namespace":"btcpred"' in out  # EMF metrics on stdout
    assert b'"level":"INFO"' in err  # JSON logs on stderr
    items = [i for r in read_stream(client, "sigterm") for i in unpack_record(r.data)]
    trades = [i.trade_id for i in items if hasattr(i, "trade_id")]
    assert len(sent_before) > 100
    assert set(sent_before) <= set(trades)  # all that was sent before SIGTERM was flushed
    assert len(trades) == len(set(trades))


def test_a_refused_handshake_is_a_clear_error_with_a_slow_retry(
    kinesis_endpoint: str, events: list[Event], tmp_path: Path
) -> None:
    from btcpred.sim.kinesis import create_stream, kinesis_client_for

    create_stream(kinesis_client_for(kinesis_endpoint), "refused")
    with ExchangeSimulator(events[:100]) as sim:
        env_extra = {"BINANCE_API_KEY": ""}
        proc = _ingest_process(sim, kinesis_endpoint, "refused", tmp_path / "hb", **env_extra)
        proc.kill()
        proc.wait()
        # no key at all: a configuration error before any connection
        bad = subprocess.run(
            [sys.executable, "-m", "btcpred.cli", "ingest"],
            env={k: v for k, v in os.environ.items() if not k.startswith("BINANCE_")}
            | {"KINESIS_STREAM_NAME": "refused"},
            capture_output=True,
            text=True,
            check=False,
            timeout=20,
        )
        assert bad.returncode == 1
        assert "needs an API key" in bad.stderr
        assert "Traceback" not in bad.stderr

        async def refused() -> Ingestor:
            from btcpred.settings.ingest import IngestSettings

            settings = IngestSettings(
                stream_name="refused",
                stream_url=sim.url,
                api_key=None,
                refused_retry_s=1.0,
                heartbeat_path=str(tmp_path / "hb2"),
            )
            ingestor = Ingestor(settings, kinesis_client_for(kinesis_endpoint))
            stop = asyncio.Event()
            task = asyncio.create_task(ingestor.run(stop))
            await asyncio.sleep(2.5)
            stop.set()
            await task
            return ingestor

        ingestor = asyncio.run(refused())
    assert ingestor.stats.refused_handshakes in (2, 3)  # about one a second: no tight loop
    assert ingestor.connections == []


def test_the_json_stream_gives_the_same_records_as_the_sbe_stream(
    kinesis_endpoint: str, events: list[Event]
) -> None:
    from btcpred.events import DepthDiff, Trade

    sbe = run_ingest(kinesis_endpoint, events)
    json_ = run_ingest(kinesis_endpoint, events, json_format=True)
    assert json_.gaps == []
    assert json_.trades == json_.published_trades == sbe.trades

    # Which diffs precede the first snapshot depends on when the REST answer came: compare
    # from the later of the two snapshots on.
    start = max(
        next(i.last_update_id for i in run.items if isinstance(i, DepthSnapshot))
        for run in (sbe, json_)
    )

    def market(run: Any) -> list[Any]:  # the exchange's content, without local receive times
        return [
            msgspec.structs.replace(item, receive_time_ns=0)
            for item in run.items
            if isinstance(item, Trade)
            or (isinstance(item, DepthDiff) and item.first_update_id > start)
        ]

    assert len(market(sbe)) > len(sbe.trades) + 100
    assert market(json_) == market(sbe)
    assert {i.symbol for i in json_.items} == {"BTCUSDT"}
    assert json_.ingestor.source == "json"


def test_a_server_shutdown_that_closes_at_once_is_accounted_for(
    kinesis_endpoint: str, events: list[Event]
) -> None:
    async def abrupt(sim: ExchangeSimulator, ingestor: Ingestor) -> None:
        await asyncio.sleep(0.5)
        sim.server_shutdown(grace_s=0.0)  # no overlap is possible

    started = time.monotonic()
    run = run_ingest(
        kinesis_endpoint, events, during=abrupt, sim_options={"speed": 8.0, "backpressure": False}
    )
    assert run.ingestor.stats.rotations + run.ingestor.stats.reconnects >= 1
    run.assert_every_trade_once_or_in_a_gap()
    assert {g.reason for g in run.gaps} <= {"rotation", "reconnect"}
    assert time.monotonic() - started < 30  # no wait for the rotation timeout
