"""The exchange simulator over real sockets, seen by a plain aiohttp client.

Expected values come from the recorded capture (the events it holds, Binance's book rules
applied by hand below), never from the simulator's own encoding. Intervals are scaled down
(pings every 0.1-0.25 s) so that the file runs in seconds.
"""

from __future__ import annotations

import asyncio
import gzip
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson
import pytest

from btcpred.events import BestBidAsk, DepthDiff, DepthSnapshot, Event, Level, Trade
from btcpred.sbe import DecodeError, decode
from btcpred.sim.exchange import ExchangeSimulator, Fault, FaultKind
from btcpred.sources.binance_json import parse_message
from btcpred.sources.capture import Capture

KEY = {"X-MBX-APIKEY": "test-key"}
ALL_SBE = "/stream?streams=btcusdt@trade/btcusdt@bestBidAsk/btcusdt@depth"
ALL_JSON = "/stream?streams=btcusdt@trade/btcusdt@bookTicker/btcusdt@depth@100ms"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def events(capture: Capture) -> list[Event]:
    """The first 3,000 recorded events (the REST snapshot is index 7)."""
    return capture.events[:3000]


@pytest.fixture
def make_sim(events: list[Event]) -> Iterator[Callable[..., ExchangeSimulator]]:
    started: list[ExchangeSimulator] = []

    def make(**kwargs: Any) -> ExchangeSimulator:
        options: dict[str, Any] = {"speed": 0, "paused": True, **kwargs}
        sim = ExchangeSimulator(options.pop("events", events), **options).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def run(body: Callable[[aiohttp.ClientSession], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with aiohttp.ClientSession() as session:
            return await body(session)

    return asyncio.run(main())


def streamed(events: list[Event]) -> list[Event]:
    """The capture's stream events as a decoder sees them (no snapshot, no receive time)."""
    return [
        msgspec.structs.replace(e, receive_time_ns=0)
        for e in events
        if not isinstance(e, DepthSnapshot)
    ]


async def frames(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[aiohttp.WSMessage]:
    return [await ws.receive(timeout=5) for _ in range(count)]


async def decoded(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[Event]:
    out: list[Event] = []
    while len(out) < count:
        out += decode((await ws.receive(timeout=5)).data)
    return out


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- handshake --------------------------------------------------------------------------------
def test_an_sbe_handshake_without_an_api_key_is_refused_with_binances_error(make_sim) -> None:
    sim = make_sim()

    async def body(session: aiohttp.ClientSession) -> tuple[int, Any, int]:
        async with session.get(sim.rest_url + ALL_SBE) as refused:
            error = await refused.json()
        async with session.ws_connect(sim.url + ALL_SBE, headers=KEY) as ws:
            return refused.status, error, ws._response.status

    status, error, accepted = run(body)

    assert (status, error["code"], accepted) == (400, -2015, 101)
    assert sim.connection_attempts == 2
    assert [c.api_key for c in sim.connections] == ["test-key"]


def test_json_paths_need_no_key_and_unknown_streams_are_400(make_sim) -> None:
    sim = make_sim()

    async def body(session: aiohttp.ClientSession) -> tuple[int, int, int]:
        async with session.ws_connect(sim.json_url + ALL_JSON) as ws:
            opened = ws._response.status
        async with session.get(sim.url + "/ws/btcusdt@kline_1m", headers=KEY) as bad:
            bad_status = bad.status
        async with session.get(sim.json_url + "/stream?streams=ethusdt@trade") as other:
            return opened, bad_status, other.status

    assert run(body) == (101, 400, 400)
    assert sim.connections[0].fmt == "json"


def test_sbe_frames_are_identical_on_combined_and_single_paths(make_sim, events) -> None:
    sim = make_sim()

    async def body(session: aiohttp.ClientSession) -> tuple[list[bytes], list[bytes]]:
        async with (
            session.ws_connect(sim.url + "/stream?streams=btcusdt@trade", headers=KEY) as combined,
            session.ws_connect(sim.url + "/ws/btcusdt@trade", headers=KEY) as single,
        ):
            sim.resume()
            return [m.data for m in await frames(combined, 5)], [
                m.data for m in await frames(single, 5)
            ]

    combined, single = run(body)

    assert combined == single
    assert decode(combined[0]) == [e for e in streamed(events) if isinstance(e, Trade)][:1]


def test_json_combined_frames_are_enveloped_and_single_ones_bare(make_sim) -> None:
    sim = make_sim()

    async def body(session: aiohttp.ClientSession) -> tuple[Any, Any]:
        async with (
            session.ws_connect(sim.json_url + "/stream?streams=btcusdt@depth") as combined,
            session.ws_connect(sim.json_url + "/ws/btcusdt@depth@100ms") as single,
        ):
            sim.resume()
            return (await combined.receive_json(timeout=5), await single.receive_json(timeout=5))

    combined, single = run(body)

    assert combined["stream"] == "btcusdt@depth"
    assert combined["data"] == single
    assert single["e"] == "depthUpdate"


# -- content ----------------------------------------------------------------------------------
def test_sbe_frames_decode_into_exactly_the_captured_events(make_sim, events) -> None:
    sim = make_sim(max_queue_frames=100_000)
    expected = streamed(events)

    async def body(session: aiohttp.ClientSession) -> list[Event]:
        async with session.ws_connect(sim.url + ALL_SBE, headers=KEY) as ws:
            sim.resume()
            return await decoded(ws, len(expected))

    assert run(body) == expected
    assert sim.wait_finished(5)
    assert sim.published.events_published == len(expected)


def test_json_payloads_parse_into_the_same_trades_and_diffs(make_sim, events) -> None:
    sim = make_sim(max_queue_frames=100_000)
    expected = [e for e in streamed(events) if not isinstance(e, BestBidAsk)]

    async def body(session: aiohttp.ClientSession) -> list[Event]:
        url = sim.json_url + "/stream?streams=btcusdt@trade/btcusdt@depth@100ms"
        async with session.ws_connect(url) as ws:
            sim.resume()
            return [parse_message((await ws.receive(timeout=5)).data) for _ in expected]

    assert run(body) == expected


# -- pings and limits -------------------------------------------------------------------------
def test_a_client_that_never_pongs_is_closed_and_one_that_pongs_stays(make_sim) -> None:
    sim = make_sim(ping_interval_s=0.25, pong_timeout_s=0.6)

    async def body(session: aiohttp.ClientSession) -> tuple[list[Any], list[Any]]:
        async with (
            session.ws_connect(sim.json_url + ALL_JSON, autoping=False) as silent,
            session.ws_connect(sim.json_url + ALL_JSON, autoping=True) as polite,
        ):
            polite_seen: list[Any] = []

            async def read_polite() -> None:  # receive() is where aiohttp answers pings
                async for msg in polite:
                    polite_seen.append(msg.type)

            reader = asyncio.create_task(read_polite())
            seen = []
            started = time.monotonic()
            while (msg := await silent.receive(timeout=3)).type is aiohttp.WSMsgType.PING:
                seen.append(msg.type)
            seen += [msg.type, msg.data, msg.extra, time.monotonic() - started]
            await asyncio.sleep(0.5)
            reader.cancel()
            return seen, [*polite_seen, polite.closed]

    seen, polite = run(body)

    assert seen[:2] == [aiohttp.WSMsgType.PING] * 2
    assert seen[-4:-1] == [aiohttp.WSMsgType.CLOSE, 1008, "pong timeout"]
    assert seen[-1] < 1.5
    assert polite == [False]  # nothing but answered pings, still open
    assert sim.connections[1].pongs_received >= 3
    assert wait_for(lambda: sim.connections[1].closed_ns is not None)
    assert sim.connections[1].close_reason == "closed by the client"  # not a pong timeout
    assert sim.connections[0].pings_sent >= 2


def test_more_than_five_client_messages_in_a_second_close_the_connection(make_sim) -> None:
    sim = make_sim()

    async def body(session: aiohttp.ClientSession) -> aiohttp.WSMessage:
        async with session.ws_connect(sim.json_url + ALL_JSON) as ws:
            for i in range(6):
                await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": i})
            while (msg := await ws.receive(timeout=3)).type is aiohttp.WSMsgType.TEXT:
                pass
            return msg

    msg = run(body)

    assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 1008, "too many messages")
    assert sim.connections[0].client_messages == 6


def test_subscribe_list_and_unsubscribe(make_sim) -> None:
    sim = make_sim()

    async def body(session: aiohttp.ClientSession) -> list[Any]:
        async with session.ws_connect(sim.url + "/stream", headers=KEY) as ws:
            answers = []
            for request in (
                {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "btcusdt@depth"], "id": 1},
                {"method": "UNSUBSCRIBE", "params": ["btcusdt@depth"], "id": 2},
                {"method": "LIST_SUBSCRIPTIONS", "id": 3},
                {"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 4},
            ):
                await ws.send_json(request)
                answers.append(await ws.receive_json(timeout=3))
            sim.resume()
            answers.append(decode((await ws.receive(timeout=3)).data))
            return answers

    subscribed, unsubscribed, listed, bad, data = run(body)

    assert subscribed == {"result": None, "id": 1}
    assert unsubscribed == {"result": None, "id": 2}
    assert listed == {"result": ["btcusdt@trade"], "id": 3}
    assert bad["id"] == 4
    assert bad["error"]["code"] == 2
    assert isinstance(data[0], Trade)


def test_a_connection_is_closed_with_1001_when_its_lifetime_ends(make_sim) -> None:
    sim = make_sim(lifetime_s=0.3)

    async def body(session: aiohttp.ClientSession) -> tuple[int, float]:
        async with session.ws_connect(sim.json_url + ALL_JSON) as ws:
            started = time.monotonic()
            msg = await ws.receive(timeout=3)
            return msg.data, time.monotonic() - started

    code, after = run(body)

    assert code == 1001
    assert 0.2 < after < 1.5


@pytest.mark.parametrize(
    ("shape", "unwrap"), [("bare", lambda m: m), ("event", lambda m: m["event"])]
)
def test_server_shutdown_is_announced_then_the_connection_closes(make_sim, shape, unwrap) -> None:
    sim = make_sim()

    async def body(session: aiohttp.ClientSession) -> tuple[Any, aiohttp.WSMessage, float]:
        async with session.ws_connect(sim.url + ALL_SBE, headers=KEY) as ws:
            sim.server_shutdown(shape=shape, grace_s=0.3)
            started = time.monotonic()
            notice = await ws.receive(timeout=3)
            closed = await ws.receive(timeout=3)
            return orjson.loads(notice.data), closed, time.monotonic() - started

    notice, closed, after = run(body)

    assert unwrap(notice)["e"] == "serverShutdown"
    assert isinstance(unwrap(notice)["E"], int)
    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert 0.25 < after < 1.5


# -- faults -----------------------------------------------------------------------------------
def _trade_frames_after(make_sim, fault: Fault, count: int) -> tuple[list[bytes], Any]:
    sim = make_sim()

    async def body(session: aiohttp.ClientSession) -> list[bytes]:
        async with session.ws_connect(sim.url + "/ws/btcusdt@trade", headers=KEY) as ws:
            sim.fault(fault)
            sim.resume()
            return [m.data for m in await frames(ws, count)]

    return run(body), sim


def test_skip_trades_leaves_the_trade_ids_out(make_sim) -> None:
    got, sim = _trade_frames_after(make_sim, Fault(FaultKind.SKIP_TRADES, count=3), 5)

    ids = [t.trade_id for f in got for t in decode(f) if isinstance(t, Trade)]
    assert ids == sim.published.trade_ids("BTCUSDT")[3:8]


def test_skip_depth_leaves_the_diffs_out(make_sim) -> None:
    sim = make_sim()

    async def body(session: aiohttp.ClientSession) -> list[Event]:
        async with session.ws_connect(sim.url + "/ws/btcusdt@depth", headers=KEY) as ws:
            sim.fault(Fault(FaultKind.SKIP_DEPTH, count=2))
            sim.resume()
            return await decoded(ws, 3)

    got = run(body)

    ranges = [(d.first_update_id, d.last_update_id) for d in got if isinstance(d, DepthDiff)]
    assert ranges == sim.published.depth_ranges("btcusdt")[2:5]


def test_duplicate_sends_each_of_the_next_frames_twice(make_sim) -> None:
    got, _ = _trade_frames_after(make_sim, Fault(FaultKind.DUPLICATE, count=2), 6)

    assert got[0] == got[1]
    assert got[2] == got[3]
    assert got[1] != got[2]
    assert got[4] != got[3]


def test_reorder_swaps_the_next_two_frames(make_sim, events) -> None:
    got, _ = _trade_frames_after(make_sim, Fault(FaultKind.REORDER), 3)

    ids = [t.trade_id for f in got for t in decode(f) if isinstance(t, Trade)]
    first = [e.trade_id for e in events if isinstance(e, Trade)][:3]
    assert ids == [first[1], first[0], first[2]]


def test_malformed_frames_fail_to_decode(make_sim) -> None:
    got, _ = _trade_frames_after(make_sim, Fault(FaultKind.MALFORMED, count=2), 3)

    for frame in got[:2]:
        with pytest.raises(DecodeError):
            decode(frame)
    assert isinstance(decode(got[2])[0], Trade)


@pytest.mark.parametrize("pings", [True, False])
def test_a_stall_sends_nothing_and_drops_what_was_published_meanwhile(make_sim, pings) -> None:
    sim = make_sim(ping_interval_s=0.1)

    async def body(session: aiohttp.ClientSession) -> list[aiohttp.WSMsgType]:
        async with session.ws_connect(sim.url + ALL_SBE, headers=KEY, autoping=False) as ws:
            sim.fault(Fault(FaultKind.STALL, seconds=0.5, pings=pings))
            sim.resume()
            seen = []
            deadline = time.monotonic() + 0.45
            while (left := deadline - time.monotonic()) > 0:
                try:
                    seen.append((await ws.receive(timeout=left)).type)
                except TimeoutError:
                    break
            seen.append((await ws.receive(timeout=2)).type)  # after the stall: a ping
            return seen

    seen = run(body)

    assert sim.wait_finished(5)
    assert set(seen) == {aiohttp.WSMsgType.PING}
    assert (len(seen) >= 3) is pings
    assert (len(seen) == 1) is not pings
    assert sim.connections[0].frames_sent == 0


@pytest.mark.parametrize(
    ("fault", "client_code", "server_code"),
    [
        (Fault(FaultKind.CLOSE_ABRUPT), 1006, None),
        (Fault(FaultKind.CLOSE, code=4000), 4000, 4000),
        (Fault(FaultKind.EXPIRE), 1001, 1001),
    ],
)
def test_closing_faults(make_sim, fault, client_code, server_code) -> None:
    sim = make_sim()

    async def body(session: aiohttp.ClientSession) -> tuple[aiohttp.WSMsgType, int | None]:
        async with session.ws_connect(sim.url + ALL_SBE, headers=KEY) as ws:
            sim.fault(fault, connection=0)
            msg = await ws.receive(timeout=3)
            return msg.type, ws.close_code

    kind, code = run(body)

    expected = aiohttp.WSMsgType.CLOSED if server_code is None else aiohttp.WSMsgType.CLOSE
    assert (kind, code) == (expected, client_code)
    assert wait_for(lambda: sim.connections[0].closed_ns is not None)
    assert sim.connections[0].close_code == server_code


def test_a_scheduled_fault_fires_at_its_event_index(make_sim, events) -> None:
    sim = make_sim()
    first_trade = next(i for i, e in enumerate(events) if isinstance(e, Trade))
    sim.schedule(first_trade, Fault(FaultKind.SKIP_TRADES))

    async def body(session: aiohttp.ClientSession) -> list[Event]:
        async with session.ws_connect(sim.url + "/ws/btcusdt@trade", headers=KEY) as ws:
            sim.resume()
            return await decoded(ws, 1)

    assert [t.trade_id for t in run(body) if isinstance(t, Trade)] == [
        sim.published.trade_ids("BTCUSDT")[1]
    ]


def test_a_client_that_stops_reading_is_closed_as_a_slow_consumer(make_sim) -> None:
    sim = make_sim(loop=True, max_queue_frames=50)
    handshake = (
        f"GET {ALL_SBE} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "X-MBX-APIKEY: k\r\n\r\n"
    )
    with socket.socket() as client:  # a raw socket with a small buffer that is never read
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", sim.port))
        client.sendall(handshake.encode())
        assert wait_for(lambda: len(sim.connections) == 1)
        sim.resume()

        assert wait_for(lambda: sim.connections[0].close_reason == "slow consumer", 20)
    assert sim.connections[0].close_code == 1008
    assert sim.published.events_published > sim.connections[0].frames_sent + 50


# -- loop mode and the book -------------------------------------------------------------------
def test_loop_mode_shifts_ids_contiguously_across_laps(make_sim, events) -> None:
    lap = events[:400]
    sim = make_sim(events=lap, loop=True, backpressure=True, max_queue_frames=20)
    per_lap = sum(isinstance(e, Trade) for e in lap)

    async def body(session: aiohttp.ClientSession) -> list[Event]:
        url = sim.url + "/stream?streams=btcusdt@trade/btcusdt@depth"
        async with session.ws_connect(url, headers=KEY) as ws:
            sim.resume()
            return await decoded(ws, 3 * per_lap + 40)

    got = run(body)

    trades = [e for e in got if isinstance(e, Trade)]
    diffs = [e for e in got if isinstance(e, DepthDiff)]
    assert len(trades) > 2 * per_lap
    assert all(b.trade_id == a.trade_id + 1 for a, b in zip(trades, trades[1:], strict=False))
    assert all(
        b.first_update_id == a.last_update_id + 1 for a, b in zip(diffs, diffs[1:], strict=False)
    )
    assert trades[per_lap].event_time_us > trades[per_lap - 1].event_time_us
    assert sim.depth_book("BTCUSDT")[2] >= diffs[-1].last_update_id  # the book follows the laps


def _apply(book: dict[str, dict[int, int]], diff: DepthDiff) -> None:
    for side, levels in (("bids", diff.bids), ("asks", diff.asks)):
        for price, qty in levels:
            if qty:
                book[side][price] = qty
            else:
                book[side].pop(price, None)


def _levels(book: dict[str, dict[int, int]]) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
    return tuple(sorted(book["bids"].items(), reverse=True)), tuple(sorted(book["asks"].items()))


def test_rest_depth_plus_the_following_diffs_is_the_simulators_book(make_sim, events) -> None:
    sim = make_sim(checkpoint_every=25, max_queue_frames=100_000)
    n_diffs = sum(isinstance(e, DepthDiff) for e in events)

    async def body(session: aiohttp.ClientSession) -> tuple[Any, list[Event], Any]:
        depth = sim.rest_url + "/api/v3/depth?symbol=BTCUSDT"
        async with session.get(depth + "&limit=5000") as response:
            snapshot = await response.json()
        async with session.ws_connect(sim.url + "/ws/btcusdt@depth", headers=KEY) as ws:
            sim.resume()
            diffs = await decoded(ws, n_diffs)
        async with session.get(depth + "&limit=5") as response:
            return snapshot, diffs, await response.json()

    snapshot, diffs, top5 = run(body)

    book = {
        side: {int(p.replace(".", "")): int(q.replace(".", "")) for p, q in snapshot[side]}
        for side in ("bids", "asks")
    }
    last = snapshot["lastUpdateId"]
    checkpoints = {}
    for diff in diffs:
        assert isinstance(diff, DepthDiff)
        if diff.last_update_id <= last:
            continue
        assert diff.first_update_id <= last + 1 <= diff.last_update_id
        _apply(book, diff)
        last = diff.last_update_id
        checkpoints[last] = _levels(book)
    bids, asks, last_id = sim.depth_book("BTCUSDT")
    assert (bids, asks, last_id) == (*_levels(book), last)
    saved = sim.book_checkpoints("BTCUSDT")
    assert len(saved) >= 3
    assert all(saved[key] == checkpoints[key] for key in saved)
    assert top5["lastUpdateId"] == last_id
    assert [float(p) for p, _ in top5["bids"]] == [p / 1e8 for p, _ in bids[:5]]


@pytest.mark.parametrize(
    ("query", "code"), [("symbol=ETHUSDT", -1121), ("symbol=BTCUSDT&limit=5001", -1130)]
)
def test_rest_depth_refuses_a_bad_symbol_or_limit(make_sim, query, code) -> None:
    sim = make_sim()

    async def body(session: aiohttp.ClientSession) -> tuple[int, Any]:
        async with session.get(sim.rest_url + "/api/v3/depth?" + query) as response:
            return response.status, await response.json()

    status, error = run(body)

    assert (status, error["code"]) == (400, code)


def test_too_many_connection_attempts_are_refused_with_429(make_sim) -> None:
    sim = make_sim(max_connection_attempts=5)

    async def body(session: aiohttp.ClientSession) -> list[int]:
        statuses = []
        for _ in range(6):
            async with session.get(sim.json_url + ALL_JSON) as response:
                statuses.append(response.status)
        return statuses

    assert run(body) == [400] * 5 + [429]  # plain GETs: no upgrade, but every one is counted
    assert sim.connection_attempts == 6


# -- command line -----------------------------------------------------------------------------
def test_btcpred_simulate_prints_the_urls_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    small = tmp_path / "capture.gz"
    source = sorted((ROOT / "fixtures" / "binance").glob("btcusdt_ws_capture_*.gz"))[0]
    with gzip.open(source, "rb") as full, gzip.open(small, "wb") as out:
        out.writelines(line for _, line in zip(range(500), full, strict=False))
    env = {"PYTHONPATH": f"{ROOT / 'src'}", "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-m", "btcpred.cli", "simulate", "--capture", str(small)]
    proc = subprocess.Popen(
        [*argv, "--speed", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        rest = line.split("REST ")[1].strip()
        with urllib.request.urlopen(rest + "/api/v3/depth?symbol=BTCUSDT&limit=1") as response:  # noqa: S310
            depth = orjson.loads(response.read())
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert "SBE ws://127.0.0.1:" in line
    assert "JSON ws://127.0.0.1:" in line
    assert len(depth["bids"]) == 1
    assert proc.returncode == 0, err
    assert "published" in out
    assert "events" in out
