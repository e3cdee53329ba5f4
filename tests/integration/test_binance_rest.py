"""The Binance REST client against the local Binance-shaped server, over real HTTP.

Backoff sleeps go to a recorder instead of ``time.sleep``; timeouts are short and real.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from btcpred.klines import Kline, read_klines
from btcpred.sim.binance_rest import BinanceRestServer, Fault
from btcpred.sim.services import free_port
from btcpred.sources.binance_rest import (
    BinanceRestClient,
    BinanceRestError,
    ClientError,
    MalformedResponseError,
    RateLimitedError,
    RestConnectionError,
    RestrictedLocationError,
    RestTimeoutError,
    ServerError,
)

FIXTURE = (
    Path(__file__).resolve().parents[2]
    / "fixtures/binance/btcusdt_1m_2024-08-08T18_2024-08-09T0010.csv.gz"
)
MIDNIGHT = 1723161600000  # 2024-08-09 00:00 UTC; the fixture runs 18:00 → 00:09 (370 bars)
KLINES = "/api/v3/klines"


@pytest.fixture(scope="module")
def history() -> list[Kline]:
    return list(read_klines(FIXTURE))


@pytest.fixture
def server(history: list[Kline]) -> Iterator[BinanceRestServer]:
    with BinanceRestServer(history) as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(server: BinanceRestServer, sleeps: list[float]) -> BinanceRestClient:
    return BinanceRestClient(server.url, timeout_s=2.0, sleep=sleeps.append)


def _klines_requests(server: BinanceRestServer) -> list[dict[str, str]]:
    return [query for path, query in server.requests.snapshot() if path == KLINES]


# --- data and Binance semantics -------------------------------------------------------------


def test_one_minute_klines_are_the_served_history(
    client: BinanceRestClient, history: list[Kline]
) -> None:
    got = client.klines("BTCUSDT", "1m", start_time_ms=history[10].open_time_ms, limit=20)

    assert [(k.open_time_ms, k.close_time_ms) for k in got] == [
        (k.open_time_ms, k.close_time_ms) for k in history[10:30]
    ]
    assert [(k.open, k.high, k.low, k.close, k.volume) for k in got] == [
        (k.open, k.high, k.low, k.close, k.volume) for k in history[10:30]
    ]
    # the fixture has no quote volumes or trade counts: the documented approximations
    assert got[0].quote_volume == pytest.approx(history[10].volume * history[10].close)
    assert all(k.trades == 0 for k in got)


def test_five_minute_bars_aggregate_the_minutes_by_utc_bucket(
    client: BinanceRestClient, history: list[Kline]
) -> None:
    got = client.klines("BTCUSDT", "5m", limit=1000)

    assert len(got) == 74  # 370 minutes from 18:00
    for index, bar in enumerate(got):
        minutes = history[5 * index : 5 * index + 5]
        assert bar.open_time_ms == minutes[0].open_time_ms
        assert bar.open_time_ms % 300_000 == 0
        assert bar.close_time_ms == bar.open_time_ms + 299_999
        assert (bar.open, bar.close) == (minutes[0].open, minutes[-1].close)
        assert bar.high == max(m.high for m in minutes)
        assert bar.low == min(m.low for m in minutes)
        assert bar.volume == pytest.approx(sum(m.volume for m in minutes), abs=1e-8)


def test_end_time_only_gives_the_last_bars_at_or_before_it(
    client: BinanceRestClient, history: list[Kline]
) -> None:
    end = history[100].open_time_ms + 30_000

    got = client.klines("BTCUSDT", "1m", end_time_ms=end, limit=7)

    assert [k.open_time_ms for k in got] == [k.open_time_ms for k in history[94:101]]


def test_start_and_end_bound_open_times_inclusively_and_limit_counts_from_start(
    client: BinanceRestClient, history: list[Kline]
) -> None:
    start, end = history[50].open_time_ms, history[60].open_time_ms

    both = client.klines("BTCUSDT", "1m", start_time_ms=start, end_time_ms=end)
    limited = client.klines("BTCUSDT", "1m", start_time_ms=start + 1, end_time_ms=end, limit=3)
    latest = client.klines("BTCUSDT", "1m")

    assert [k.open_time_ms for k in both] == [k.open_time_ms for k in history[50:61]]
    assert [k.open_time_ms for k in limited] == [k.open_time_ms for k in history[51:54]]
    assert len(latest) == 370  # default limit 500, all there is


def test_forming_bar_is_served_partial_and_recent_klines_drops_it(
    history: list[Kline], sleeps: list[float]
) -> None:
    now = MIDNIGHT + 150_000  # 00:02:30: the 00:00 five-minute bar holds 00:00, 00:01, 00:02
    with BinanceRestServer(history, now_ms=lambda: now) as server:
        client = BinanceRestClient(server.url, sleep=sleeps.append)
        newest = client.klines("BTCUSDT", "5m", limit=2)[-1]
        finished = client.recent_klines("BTCUSDT", "5m", 2)
        minutes = [k for k in history if MIDNIGHT <= k.open_time_ms <= now]

        assert client.server_time_ms() == now
        assert client.ticker_price("BTCUSDT") == minutes[-1].close
    assert (newest.open_time_ms, newest.close_time_ms) == (MIDNIGHT, MIDNIGHT + 299_999)
    assert newest.close_time_ms > now
    assert len(minutes) == 3
    assert newest.volume == pytest.approx(sum(m.volume for m in minutes), abs=1e-8)
    assert newest.close == minutes[-1].close
    assert [k.open_time_ms for k in finished] == [MIDNIGHT - 600_000, MIDNIGHT - 300_000]


def test_recent_klines_by_server_time_drops_the_forming_hour(
    client: BinanceRestClient, server: BinanceRestServer
) -> None:
    hours = client.klines("BTCUSDT", "1h")
    finished = client.recent_klines("BTCUSDT", "1h", 3)

    assert hours[-1].open_time_ms == MIDNIGHT  # 00:00 → 00:09 so far, served partial
    assert [k.open_time_ms for k in finished] == [MIDNIGHT - h * 3_600_000 for h in (3, 2, 1)]
    assert server.requests.count("/api/v3/time") == 1


def test_recent_klines_with_end_time_keeps_only_bars_closed_by_then(
    client: BinanceRestClient, server: BinanceRestServer
) -> None:
    end = MIDNIGHT - 1  # the 23:55 bar closes exactly then
    got = client.recent_klines("BTCUSDT", "5m", 4, end_time_ms=end)
    mid = client.recent_klines("BTCUSDT", "5m", 1, end_time_ms=end - 60_000)

    assert [k.close_time_ms for k in got] == [end - n * 300_000 for n in (3, 2, 1, 0)]
    assert mid[0].close_time_ms == end - 300_000
    assert server.requests.count("/api/v3/time") == 0


def _synthetic_minutes(count: int) -> list[Kline]:
    """A smooth price path: the fixture's 370 bars are too few to page over 1000."""
    start = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
    bars = []
    for n in range(count):
        price = round(40_000 + 500 * math.sin(n / 50), 2)
        bars.append(Kline(start + n * 60_000, start + n * 60_000 + 59_999, price, price + 5,
                          price - 5, price + 1, 1.5, round(1.5 * price, 8), 10))  # fmt: skip
    return bars


def test_recent_klines_pages_backwards_over_more_than_1000_bars(sleeps: list[float]) -> None:
    source = _synthetic_minutes(2_500)
    with BinanceRestServer(source) as server:
        client = BinanceRestClient(server.url, sleep=sleeps.append)
        got = client.recent_klines("BTCUSDT", "1m", 2_345)
        pages = _klines_requests(server)
        server.requests.clear()
        everything = client.recent_klines("BTCUSDT", "1m", 10_000)
        pages_all = _klines_requests(server)

    assert [k.open_time_ms for k in got] == [k.open_time_ms for k in source[-2_345:]]
    assert got[-1] == source[-1]
    assert [int(q["limit"]) for q in pages] == [1000, 1000, 345]
    assert [int(q["endTime"]) for q in pages[1:]] == [
        source[-1000].open_time_ms - 1,
        source[-2000].open_time_ms - 1,
    ]
    assert len(everything) == 2_500  # the history starts there
    assert [int(q["limit"]) for q in pages_all] == [1000, 1000, 1000]
    assert sleeps == []


def test_tickers_summarise_the_last_24_hours(
    client: BinanceRestClient, history: list[Kline]
) -> None:
    ticker = client.ticker_24hr("BTCUSDT")
    now = history[-1].close_time_ms + 1

    assert client.ticker_price("BTCUSDT") == history[-1].close == ticker.last_price
    assert ticker.open_price == history[0].open
    assert ticker.high_price == max(k.high for k in history)
    assert ticker.low_price == min(k.low for k in history)
    assert ticker.volume == pytest.approx(sum(k.volume for k in history), abs=1e-6)
    assert ticker.price_change_percent == pytest.approx(
        100 * (history[-1].close - history[0].open) / history[0].open, abs=1e-3
    )
    assert (ticker.open_time_ms, ticker.close_time_ms) == (now - 86_400_000, now)
    assert ticker.bid_price < ticker.ask_price
    assert ticker.count == 0


# --- retries, backoff and Retry-After ----------------------------------------------------------


def test_429_with_retry_after_waits_at_least_that_long_then_succeeds(
    client: BinanceRestClient, server: BinanceRestServer, sleeps: list[float]
) -> None:
    server.faults.put(Fault.status(429, retry_after_s=1), Fault.status(418, retry_after_s=2))

    assert client.ticker_price("BTCUSDT") == 61444.94
    assert sleeps == [1.0, 2.0]
    assert server.requests.count("/api/v3/ticker/price") == 3


def test_retry_after_shorter_than_the_backoff_waits_the_backoff(
    client: BinanceRestClient, server: BinanceRestServer, sleeps: list[float]
) -> None:
    server.faults.put(Fault.status(503, retry_after_s=0.1))

    client.server_time_ms()

    assert sleeps == [0.25]


def test_retry_after_beyond_max_backoff_fails_at_once(
    client: BinanceRestClient, server: BinanceRestServer, sleeps: list[float]
) -> None:
    server.faults.put(Fault.status(429, retry_after_s=60))

    with pytest.raises(RateLimitedError) as info:
        client.klines("BTCUSDT", "1m")

    assert info.value.retry_after_s == 60
    assert (info.value.status, info.value.attempts, info.value.retryable) == (429, 1, True)
    assert "-1003" in str(info.value)
    assert sleeps == []
    assert len(server.requests) == 1


def test_server_errors_back_off_exponentially_then_reraise_the_last(
    server: BinanceRestServer, sleeps: list[float]
) -> None:
    client = BinanceRestClient(server.url, max_backoff_s=0.6, sleep=sleeps.append)
    server.faults.put(*[Fault.status(500)] * 3, Fault.status(502))

    with pytest.raises(ServerError) as info:
        client.ticker_24hr("BTCUSDT")

    assert (info.value.status, info.value.attempts) == (502, 4)
    assert sleeps == [0.25, 0.5, 0.6]
    assert len(server.requests) == 4


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.status(451), RestrictedLocationError),
        (Fault.status(400), ClientError),
        (Fault.status(404), ClientError),
        (Fault.malformed(), MalformedResponseError),
    ],
)
def test_permanent_failures_are_not_retried(
    client: BinanceRestClient,
    server: BinanceRestServer,
    sleeps: list[float],
    fault: Fault,
    error: type[BinanceRestError],
) -> None:
    server.faults.put(fault)

    with pytest.raises(error) as info:
        client.klines("BTCUSDT", "5m")

    assert type(info.value) is error
    assert not info.value.retryable
    assert (info.value.attempts, len(server.requests), sleeps) == (1, 1, [])


def test_unknown_symbol_is_a_client_error_carrying_binances_code(
    client: BinanceRestClient, server: BinanceRestServer
) -> None:
    with pytest.raises(ClientError, match=r"Invalid symbol") as info:
        client.ticker_price("ETHUSDT")

    assert (info.value.status, info.value.code, info.value.msg) == (400, -1121, "Invalid symbol.")
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"symbol": "BTCUSDT", "interval": "1m", "limit": 1001}, -1130),
        ({"symbol": "BTCUSDT", "interval": "1m", "limit": 0}, -1130),
        ({"symbol": "BTCUSDT"}, -1102),
        ({"interval": "1m"}, -1102),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": "abc"}, -1100),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": 5, "endTime": 4}, -1023),
        ({"symbol": "BTCUSDT", "interval": "2m"}, -1120),
        ({"symbol": "BTCUSDT", "interval": "1w"}, -1120),
    ],
)
def test_server_rejects_bad_parameters_with_binance_codes(
    client: BinanceRestClient, params: dict[str, str | int], code: int
) -> None:
    with pytest.raises(ClientError) as info:
        client.get(KLINES, params)

    assert (info.value.status, info.value.code) == (400, code)


HIGH_BELOW_LOW = b'[[1723161600000,"1","0.5","2","1","1",1723161659999,"1",1,"0","0","0"]]'


def test_wrong_body_shapes_are_malformed(
    client: BinanceRestClient, server: BinanceRestServer
) -> None:
    server.faults.put(
        Fault.status(200, body=b'{"klines": []}'),
        Fault.status(200, body=b"[[1723161600000, 1, 2]]"),
        Fault.status(200, body=HIGH_BELOW_LOW),
        Fault.status(200, body=b'{"symbol": "BTCUSDT", "lastPrice": "1"}'),
        Fault.status(200, body=b'{"price": "x"}'),
    )  # fmt: skip

    for call in (
        lambda: client.klines("BTCUSDT", "1m"),
        lambda: client.klines("BTCUSDT", "1m"),
        lambda: client.klines("BTCUSDT", "1m"),  # high below low
        lambda: client.ticker_24hr("BTCUSDT"),
        lambda: client.ticker_price("BTCUSDT"),
    ):
        with pytest.raises(MalformedResponseError):
            call()
    assert len(server.requests) == 5


def test_a_slow_answer_times_out_and_is_retried(
    server: BinanceRestServer, sleeps: list[float]
) -> None:
    client = BinanceRestClient(server.url, timeout_s=0.2, sleep=sleeps.append)
    server.faults.put(Fault.delay(1.0))

    assert client.server_time_ms() == MIDNIGHT + 600_000
    assert sleeps == [0.25]
    assert len(server.requests) == 2


def test_timeouts_on_every_attempt_raise_the_timeout(
    server: BinanceRestServer, sleeps: list[float]
) -> None:
    client = BinanceRestClient(server.url, timeout_s=0.2, max_attempts=2, sleep=sleeps.append)
    server.faults.put(Fault.delay(1.0), Fault.delay(1.0))

    with pytest.raises(RestTimeoutError) as info:
        client.ticker_price("BTCUSDT")

    assert (info.value.status, info.value.attempts, info.value.retryable) == (None, 2, True)
    assert sleeps == [0.25]


def test_refused_connections_are_retried_then_raised(sleeps: list[float]) -> None:
    client = BinanceRestClient(f"http://127.0.0.1:{free_port()}", sleep=sleeps.append)

    with pytest.raises(RestConnectionError) as info:
        client.server_time_ms()

    assert info.value.attempts == 4
    assert sleeps == [0.25, 0.5, 1.0]


# --- argument validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.klines("btcusdt", "1m"),
        lambda c: c.klines("", "1m"),
        lambda c: c.klines("BTCUSDT", "2m"),
        lambda c: c.klines("BTCUSDT", "1m", limit=0),
        lambda c: c.klines("BTCUSDT", "1m", limit=1001),
        lambda c: c.klines("BTCUSDT", "1m", limit=True),
        lambda c: c.klines("BTCUSDT", "1m", start_time_ms=-1),
        lambda c: c.klines("BTCUSDT", "1m", start_time_ms=10, end_time_ms=9),
        lambda c: c.recent_klines("BTCUSDT", "1m", 0),
        lambda c: c.recent_klines("BTCUSDT", "1M", 5),
        lambda c: c.ticker_24hr("BTC/USDT"),
        lambda c: c.ticker_price("BTCUSDT " * 3),
    ],
)
def test_bad_arguments_raise_value_error_without_a_request(
    client: BinanceRestClient, server: BinanceRestServer, call: object
) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=r"symbol|interval|limit|time|count|1M"):
        call(client)

    assert len(server.requests) == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout_s": 0}, {"max_attempts": 0}, {"backoff_s": -1}, {"backoff_s": 9.0}],
)
def test_bad_client_settings_raise_value_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need"):
        BinanceRestClient("http://127.0.0.1:1", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="http"):
        BinanceRestClient("ftp://example.com")
