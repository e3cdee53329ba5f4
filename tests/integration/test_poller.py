"""The fallback poller against real Redis and the local Binance REST server.

The loop runs on a fake clock and sleep (a 60 s invocation takes milliseconds); requests, Redis
and its TTLs are real. The server serves the recorded 1-minute klines of 2024-08-08/09, so its
24-hour ticker's last price is the last bar's close (61,686.00... see ``expected_ticker``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import pytest
import redis

from btcpred.features import FeatureSnapshot
from btcpred.inference.freshness import Freshness, freshness
from btcpred.inference.store import InferenceStore
from btcpred.keys import RedisKeys
from btcpred.klines import Kline
from btcpred.poller import CountingMetrics, FallbackStore, Poller, PollerConfig
from btcpred.redisconn import RedisClient, connect
from btcpred.sim.binance_rest import BinanceRestServer, Fault
from btcpred.sim.services import free_port
from btcpred.sources.binance_rest import BinanceRestClient
from tests.samples import COMPLETE_FEATURES

KEYS = RedisKeys()
SYMBOL = "BTCUSDT"
FALLBACK = KEYS.features_fallback(SYMBOL)
LATEST = KEYS.features_latest(SYMBOL)
TICKER_24HR, TICKER_PRICE = "/api/v3/ticker/24hr", "/api/v3/ticker/price"
GRID_MS = 1_723_161_600_000  # 2024-08-09T00:00:00Z, a multiple of every interval used here


@dataclass
class FakeClock:
    """Wall clock and sleep for the loop; each sleep notes how many requests the server had."""

    now: int = GRID_MS
    server: BinanceRestServer | None = None
    seen: list[tuple[int, int]] = field(default_factory=list)
    """(ms since the start, requests received so far), at every sleep."""

    def __post_init__(self) -> None:
        self.start = self.now

    def clock_ms(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        if self.server is not None:
            self.seen.append((self.now - self.start, len(self.server.requests)))
        self.now += round(seconds * 1000)

    def remaining(self, total_ms: int) -> Countdown:
        return Countdown(self, self.now + total_ms)


@dataclass
class Countdown:
    """``context.get_remaining_time_in_millis`` on the fake clock."""

    clock: FakeClock
    deadline: int

    def __call__(self) -> int:
        return self.deadline - self.clock.now


@pytest.fixture
def rest(warmup_klines: list[Kline]) -> Iterator[BinanceRestServer]:
    with BinanceRestServer(warmup_klines) as server:
        yield server


@pytest.fixture
def clock(rest: BinanceRestServer) -> FakeClock:
    return FakeClock(server=rest)


@dataclass
class Rig:
    poller: Poller
    metrics: CountingMetrics
    clock: FakeClock


def make_rig(
    rest: BinanceRestServer,
    client: RedisClient,
    clock: FakeClock,
    *,
    symbols: tuple[str, ...] = (SYMBOL,),
    ttl_s: int = 30,
    interval_s: float = 5.0,
    margin_ms: int = 3_000,
) -> Rig:
    metrics = CountingMetrics()
    poller = Poller(
        BinanceRestClient(rest.url, timeout_s=1.0, max_attempts=1),
        FallbackStore(client, KEYS, ttl_s=ttl_s),
        PollerConfig(symbols=symbols, interval_s=interval_s, stop_margin_ms=margin_ms),
        metrics=metrics,
        clock_ms=clock.clock_ms,
        sleep=clock.sleep,
    )
    return Rig(poller, metrics, clock)


def expected_ticker(rest: BinanceRestServer) -> dict[str, float]:
    """The server's own 24-hour ticker, as numbers."""
    body = rest.answer(TICKER_24HR, {"symbol": SYMBOL})
    assert isinstance(body, dict)
    return {k: float(v) for k, v in body.items() if k != "symbol"}


def stored(client: RedisClient, key: str = FALLBACK) -> FeatureSnapshot:
    raw = client.get(key)
    assert isinstance(raw, bytes)
    return FeatureSnapshot.from_json(raw)


# -- the happy path ----------------------------------------------------------------------------


def test_a_poll_writes_the_seeds_fallback_features_with_the_ttl(
    rest: BinanceRestServer, any_redis: tuple[RedisClient, str, bool], clock: FakeClock
) -> None:
    client = any_redis[0]
    client.delete(FALLBACK)
    rig = make_rig(rest, client, clock, ttl_s=30)
    t = expected_ticker(rest)

    report = rig.poller.run(clock.remaining(4_000))  # one round: the next would pass the margin

    snap = stored(client)
    ttl = client.ttl(FALLBACK)
    assert (report.rounds, report.polls, report.writes, report.errors) == (1, 1, 1, 0)
    assert 0 < ttl <= 30
    assert snap.timestamp == GRID_MS
    # decision 32, computed here from the server's answer
    assert snap.price == t["lastPrice"]
    assert snap.volume == pytest.approx(t["volume"] / 1440)
    assert snap.volume_avg_1m == pytest.approx(t["volume"] / 1440)
    assert snap.vwap == pytest.approx(t["weightedAvgPrice"])
    assert snap.trade_intensity == pytest.approx(t["count"] / 86_400)
    assert snap.price_change_1m == 0.0
    assert snap.price_change_5m == pytest.approx(t["priceChangePercent"] / 100 / 288)
    assert snap.bid_ask_spread == pytest.approx(0.01 / t["bidPrice"])
    assert (snap.rsi_5m, snap.macd_signal, snap.bollinger_position) == (50.0, 0.0, 0.5)
    assert orjson.loads(client.get(FALLBACK) or b"{}")["source"] == "fallback"
    assert rest.requests.count(TICKER_24HR) == rest.requests.count(TICKER_PRICE) == 1


def test_the_inference_store_reads_what_the_poller_wrote_as_fresh_fallback_features(
    rest: BinanceRestServer, redis_client: redis.Redis
) -> None:
    clock = FakeClock(now=time.time_ns() // 1_000_000)
    rig = make_rig(rest, redis_client, clock)

    rig.poller.run(clock.remaining(4_000))

    found = InferenceStore(redis_client).read([SYMBOL], 0, take_pending=False)[SYMBOL]
    assert found.bad_documents == 0
    assert found.latest is None
    assert found.fallback == stored(redis_client)
    assert found.fallback is not None
    assert freshness(found.fallback, time.time_ns() // 1_000_000, 5_000) is Freshness.FRESH


def test_the_price_ticker_is_the_fresher_price(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    rig = make_rig(rest, redis_client, clock)
    fresher = b'{"symbol":"BTCUSDT","price":"61700.50000000"}'
    rest.faults.put(Fault.delay(0), Fault.status(200, body=fresher))  # 24hr as is, then price

    rig.poller.run(clock.remaining(4_000))

    assert stored(redis_client).price == 61_700.5


def test_a_failed_price_ticker_keeps_the_24hr_last_price(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    rig = make_rig(rest, redis_client, clock)
    rest.faults.put(Fault.delay(0), Fault.status(500))

    report = rig.poller.run(clock.remaining(4_000))

    assert stored(redis_client).price == expected_ticker(rest)["lastPrice"]
    assert (report.writes, report.errors) == (1, 1)


def test_the_poller_keeps_the_fallback_fresh_against_the_local_rest_server(
    rest: BinanceRestServer, redis_client: redis.Redis
) -> None:
    """Real clock and sleep: while the loop runs, every read finds fresh fallback features."""
    metrics = CountingMetrics()
    poller = Poller(
        BinanceRestClient(rest.url, timeout_s=1.0, max_attempts=1),
        FallbackStore(redis_client, KEYS, ttl_s=3),
        PollerConfig(symbols=(SYMBOL,), interval_s=0.25, stop_margin_ms=100),
        metrics=metrics,
    )
    deadline = time.monotonic() + 2.5
    reports = []
    worker = threading.Thread(
        target=lambda: reports.append(
            poller.run(lambda: round((deadline - time.monotonic()) * 1000))
        )
    )
    store = InferenceStore(redis_client)
    worker.start()
    ages = []
    try:
        first = time.monotonic() + 2.0
        while (
            time.monotonic() < first
            and store.read([SYMBOL], 0, take_pending=False)[SYMBOL].fallback is None
        ):
            time.sleep(0.01)
        for _ in range(15):  # 1.5 s of reads, every 100 ms
            fb = store.read([SYMBOL], 0, take_pending=False)[SYMBOL].fallback
            assert fb is not None
            ages.append(time.time_ns() // 1_000_000 - fb.timestamp)
            time.sleep(0.1)
    finally:
        worker.join(timeout=10)
    assert max(ages) <= 1_000  # four polls a second: never older than a few intervals
    assert reports[0].writes >= 6
    assert reports[0].errors == 0
    assert 0 < redis_client.ttl(FALLBACK) <= 3


# -- Retry-After, 451 --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 418])
def test_retry_after_holds_back_every_request_until_it_has_passed(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock, status: int
) -> None:
    rig = make_rig(rest, redis_client, clock)
    rest.faults.put(Fault.status(status, retry_after_s=12))

    report = rig.poller.run(clock.remaining(30_000))

    during = [count for elapsed, count in clock.seen if elapsed < 12_000]
    assert during
    assert max(during) == 1
    assert report.rate_limited == 1
    assert report.held_back == 2  # the rounds at 5 s and 10 s
    assert report.writes >= 2  # resumed at 15 s
    assert rig.metrics.total("PollerRateLimited") == 3
    assert rig.metrics.total("PollerErrors") == 0
    assert stored(redis_client).timestamp >= GRID_MS + 15_000


def test_a_hold_back_carries_over_to_the_next_invocation(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    rig = make_rig(rest, redis_client, clock)
    rest.faults.put(Fault.status(429, retry_after_s=120))
    rig.poller.run(clock.remaining(30_000))
    requests = len(rest.requests)

    second = rig.poller.run(clock.remaining(30_000))  # the same warm container

    assert len(rest.requests) == requests == 1
    assert second.polls == 0
    assert second.held_back > 0


def test_a_rate_limit_holds_back_every_symbol(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    rig = make_rig(rest, redis_client, clock, symbols=(SYMBOL, "ETHUSDT"))
    rest.faults.put(Fault.status(429, retry_after_s=3))

    report = rig.poller.run(clock.remaining(4_000))

    assert len(rest.requests) == 1  # ETHUSDT was not asked either: Binance limits per IP
    assert (report.rate_limited, report.held_back) == (1, 1)


def test_451_stops_polling_for_the_rest_of_the_invocation(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    rig = make_rig(rest, redis_client, clock, symbols=(SYMBOL, "ETHUSDT"))
    rest.faults.put(Fault.status(451))

    report = rig.poller.run(clock.remaining(60_000))

    assert report.restricted
    assert len(rest.requests) == 1
    assert clock.now == GRID_MS  # it did not wait out the invocation either
    assert (report.errors, report.writes) == (1, 0)
    assert rig.metrics.total("PollerErrors") == 1
    assert redis_client.exists(FALLBACK) == 0


# -- no invented prices ------------------------------------------------------------------------

ZERO_PRICE = (
    b'{"symbol":"BTCUSDT","lastPrice":"0.00000000","bidPrice":"0","bidQty":"0","askPrice":"0",'
    b'"askQty":"0","volume":"1","quoteVolume":"1","weightedAvgPrice":"0",'
    b'"priceChangePercent":"0","openPrice":"0","highPrice":"0","lowPrice":"0",'
    b'"openTime":0,"closeTime":0,"count":0}'
)


@pytest.mark.parametrize(
    "fault",
    [Fault.malformed(), Fault.status(200, body=ZERO_PRICE), Fault.status(200, body=b"{}")],
    ids=["not-json", "zero-price", "missing-fields"],
)
def test_an_unusable_answer_writes_nothing_and_the_old_value_ages_out(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock, fault: Fault
) -> None:
    rig = make_rig(rest, redis_client, clock, ttl_s=1)
    rig.poller.run(clock.remaining(4_000))
    before = redis_client.get(FALLBACK)
    rest.faults.put(fault)

    report = rig.poller.run(clock.remaining(4_000))

    assert (report.writes, report.errors) == (0, 1)
    assert redis_client.get(FALLBACK) == before  # untouched
    deadline = time.monotonic() + 5
    while redis_client.exists(FALLBACK) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis_client.exists(FALLBACK) == 0  # gone with its TTL


def test_a_server_error_is_counted_and_the_next_round_recovers(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    rig = make_rig(rest, redis_client, clock)
    rest.faults.put(Fault.status(502))

    report = rig.poller.run(clock.remaining(9_000))

    assert (report.rounds, report.errors, report.writes) == (2, 1, 1)
    assert rig.metrics.total("PollerErrors") == 1
    assert stored(redis_client).timestamp == GRID_MS + 5_000


def test_an_unknown_symbol_is_an_error_and_the_others_are_still_written(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    # the local server knows BTCUSDT only: ETHUSDT gets Binance's 400 "Invalid symbol."
    rig = make_rig(rest, redis_client, clock, symbols=("ETHUSDT", SYMBOL))

    report = rig.poller.run(clock.remaining(9_000))

    assert (report.polls, report.errors, report.writes) == (4, 2, 2)
    assert redis_client.exists(KEYS.features_fallback("ETHUSDT")) == 0
    assert stored(redis_client).symbol == SYMBOL


def test_redis_down_is_counted_and_polling_goes_on(
    rest: BinanceRestServer, clock: FakeClock
) -> None:
    dead = connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    rig = make_rig(rest, dead, clock)

    report = rig.poller.run(clock.remaining(9_000))

    assert (report.polls, report.writes, report.errors) == (2, 0, 2)


# -- timing ------------------------------------------------------------------------------------


def test_the_loop_stops_before_the_remaining_time_margin(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    rig = make_rig(rest, redis_client, clock, interval_s=5.0, margin_ms=3_000)
    remaining = clock.remaining(60_000)

    report = rig.poller.run(remaining)

    assert report.rounds == 12  # 0, 5, ..., 55 s: the round at 55 s starts with 5 s left
    assert remaining() == 5_000  # no sleep into the margin after the last round
    assert stored(redis_client).timestamp == GRID_MS + 55_000
    assert rig.metrics.flushes >= 4  # every 15 s and at the end


def test_rounds_sit_on_the_wall_clock_grid(
    rest: BinanceRestServer, redis_client: redis.Redis
) -> None:
    clock = FakeClock(now=GRID_MS + 1_300, server=rest)
    rig = make_rig(rest, redis_client, clock)

    rig.poller.run(clock.remaining(12_000))

    assert [e + 1_300 for e, _ in clock.seen] == [1_300, 5_000]  # slept until 5 s, then 10 s
    assert stored(redis_client).timestamp == GRID_MS + 10_000


# -- divergence --------------------------------------------------------------------------------


def test_divergence_and_age_against_the_streams_latest_features(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    rest_price = expected_ticker(rest)["lastPrice"]
    stream_price = rest_price * (1 - 0.006)  # 60 bps below: a stale stream
    stream = FeatureSnapshot.build(
        SYMBOL, GRID_MS - 42_000, {**COMPLETE_FEATURES, "price": stream_price}
    )
    redis_client.set(LATEST, stream.to_json())
    rig = make_rig(rest, redis_client, clock)

    rig.poller.run(clock.remaining(4_000))

    assert rig.metrics.values["PriceDivergenceBps"] == [pytest.approx(60.0)]
    assert rig.metrics.values["StreamFeatureAgeMs"] == [42_000]


def test_no_divergence_datapoint_without_stream_features(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    rig = make_rig(rest, redis_client, clock)

    rig.poller.run(clock.remaining(4_000))

    assert "PriceDivergenceBps" not in rig.metrics.values
    assert "StreamFeatureAgeMs" not in rig.metrics.values
    assert rig.metrics.total("PollerFallbackWrites") == 1
    assert len(rig.metrics.values["PollerRestLatencyMs"]) == 2  # one per request


def test_a_503_retry_after_is_honoured_and_counted_as_an_error(
    rest: BinanceRestServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    rig = make_rig(rest, redis_client, clock)
    rest.faults.put(Fault.status(503, retry_after_s=8))

    report = rig.poller.run(clock.remaining(14_000))

    assert (report.errors, report.rate_limited, report.held_back) == (1, 0, 1)  # round at 5 s
    assert stored(redis_client).timestamp == GRID_MS + 10_000  # resumed at 10 s
