"""Backfill against the local Binance REST server over HTTP: paging, resume, every REST error,
request weight, the dump formats, and the CLI."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

from btcpred.aggtrades import AggTrade
from btcpred.cli import main
from btcpred.history.backfill import (
    BackfillError,
    DumpFormatError,
    DumpSource,
    RestSource,
    backfill,
    backfill_dumps,
    read_dump,
)
from btcpred.history.layout import parse_key
from btcpred.history.progress import Progress
from btcpred.history.records import kline_from_record
from btcpred.history.sinks import DirectorySink
from btcpred.klines import Kline, read_klines
from btcpred.sim.binance_rest import BinanceRestServer, Fault
from btcpred.sources.binance_rest import BinanceRestClient

THREE_DAYS = (
    Path(__file__).resolve().parents[2] / "fixtures/binance/btcusdt_1m_2025-05-20_3d.csv.gz"
)
START = 1747699200000  # 2025-05-20 00:00 UTC
DAY, HOUR = 86_400_000, 3_600_000


@pytest.fixture(scope="module")
def klines() -> list[Kline]:
    return list(read_klines(THREE_DAYS))


def trades(hours: int = 2, per_hour: int = 2500) -> list[AggTrade]:
    step = HOUR // per_hour
    return [
        AggTrade(
            i,
            100_000.0 + i % 7,
            0.001 * (1 + i % 5),
            2 * i,
            2 * i + 1,
            START + i * step,
            i % 3 == 0,
        )
        for i in range(hours * per_hour)
    ]


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def rows(path: Path) -> list[dict[str, Any]]:
    return list(fastavro.reader(io.BytesIO(path.read_bytes())))  # type: ignore[arg-type]


def objects(root: Path) -> list[Path]:
    return sorted(root.rglob("*.avro"))


def quiet() -> Progress:
    return Progress(0, out=io.StringIO())


@pytest.fixture
def rest(klines: list[Kline]) -> Iterator[BinanceRestServer]:
    with BinanceRestServer(klines, agg_trades=trades()) as server:
        yield server


def run(
    rest: BinanceRestServer,
    out: Path,
    data_type: str = "kline_1m",
    *,
    start: int = START,
    end: int = START + 3 * DAY,
    client: BinanceRestClient | None = None,
    sleep: Sleeps | None = None,
    faults: tuple[Fault, ...] = (),
    **kw: Any,
) -> Any:
    client = client or BinanceRestClient(rest.url, sleep=lambda _: None)
    now = client.server_time_ms()
    rest.faults.put(*faults)
    source = RestSource(client, sleep=sleep or Sleeps(), **kw)
    report = backfill(
        source,
        DirectorySink(out),
        "BTCUSDT",
        data_type,
        start,
        end,  # type: ignore[arg-type]
        server_time_ms=now,
        progress=quiet(),
    )
    return report, source


def test_klines_page_by_day_and_equal_what_was_served(
    rest: BinanceRestServer, tmp_path: Path, klines: list[Kline]
) -> None:
    report, source = run(rest, tmp_path)
    files = objects(tmp_path)
    assert (report.written, report.rows, len(files)) == (3, 4320, 3)
    assert rest.requests.count("/api/v3/klines") == 6  # 1,000 + 440 bars a day
    back = [kline_from_record(r) for f in files for r in rows(f)]
    assert [(k.open_time_ms, k.open, k.high, k.low, k.close, k.volume) for k in back] == [
        (k.open_time_ms, k.open, k.high, k.low, k.close, k.volume) for k in klines
    ]
    for f in files:
        key = parse_key(f.relative_to(tmp_path).as_posix())
        assert key.first_ms % DAY == 0
        assert key.last_ms == key.first_ms + DAY - 60_000


def test_agg_trades_page_by_hour_then_from_id_each_trade_once(
    rest: BinanceRestServer, tmp_path: Path
) -> None:
    report, _ = run(rest, tmp_path, "agg_trade", end=START + 2 * HOUR)
    files = objects(tmp_path)
    assert (report.written, len(files)) == (2, 2)
    ids = [r["trade_id"] for f in files for r in rows(f)]
    assert ids == [t.agg_id for t in trades()]
    for f in files:
        key = parse_key(f.relative_to(tmp_path).as_posix())
        assert all(key.first_ms // HOUR == r["timestamp"] // HOUR for r in rows(f))
    assert any("fromId" in q for p, q in rest.requests.snapshot() if p == "/api/v3/aggTrades")


def test_an_interrupted_backfill_resumes_with_the_missing_chunks_only(
    rest: BinanceRestServer, tmp_path: Path
) -> None:
    interrupted = tmp_path / "a"
    client = BinanceRestClient(rest.url, max_attempts=1, sleep=lambda _: None)
    rest.faults.clear()
    # the third day's first request fails for good (400): the run stops after two days
    calls = itertools.count()
    original = client.klines

    def klines_then_fail(*args: Any, **kwargs: Any) -> Any:
        if next(calls) == 4:
            rest.faults.put(Fault.status(400))
        return original(*args, **kwargs)

    client.klines = klines_then_fail  # type: ignore[method-assign]
    with pytest.raises(BackfillError, match="ClientError"):
        run(rest, interrupted, client=client)
    assert len(objects(interrupted)) == 2
    before = rest.requests.count("/api/v3/klines")
    report, _ = run(rest, interrupted)
    assert (report.written, report.skipped) == (1, 2)
    assert rest.requests.count("/api/v3/klines") - before == 2  # only the missing day
    whole = tmp_path / "b"
    run(rest, whole)
    assert [f.relative_to(interrupted).as_posix() for f in objects(interrupted)] == [
        f.relative_to(whole).as_posix() for f in objects(whole)
    ]
    assert all(
        rows(a) == rows(b) or [r["price"] for r in rows(a)] == [r["price"] for r in rows(b)]
        for a, b in zip(objects(interrupted), objects(whole), strict=True)
    )


def test_an_unfinished_chunk_is_not_written(klines: list[Kline], tmp_path: Path) -> None:
    now = START + 2 * DAY + 5 * HOUR
    with BinanceRestServer(klines, now_ms=lambda: now) as server:
        report, _ = run(server, tmp_path)
    assert (report.written, report.unfinished) == (2, 1)


def test_429_waits_for_retry_after_then_succeeds(rest: BinanceRestServer, tmp_path: Path) -> None:
    client = BinanceRestClient(rest.url, max_attempts=1, sleep=lambda _: None)
    sleeps = Sleeps()
    report, _ = run(
        rest,
        tmp_path,
        client=client,
        sleep=sleeps,
        end=START + DAY,
        faults=(Fault.status(429, retry_after_s=42),),
    )
    assert report.written == 1
    assert sleeps.calls == [42]


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (Fault.status(418, retry_after_s=120), "banned"),
        (Fault.status(451), "RestrictedLocationError"),
        (Fault.status(400), "ClientError"),
        (Fault.malformed(), "MalformedResponseError"),
        (Fault.status(503), "ServerError"),
    ],
)
def test_rest_errors_stop_with_the_reason(
    rest: BinanceRestServer, tmp_path: Path, fault: Fault, match: str
) -> None:
    client = BinanceRestClient(rest.url, max_attempts=1, sleep=lambda _: None)
    with pytest.raises(BackfillError, match=match):
        run(rest, tmp_path, client=client, end=START + DAY, faults=(fault,))
    assert objects(tmp_path) == []


def test_5xx_is_retried_by_the_client(rest: BinanceRestServer, tmp_path: Path) -> None:
    rest.faults.put(Fault.status(500), Fault.status(502))
    report, _ = run(
        rest, tmp_path, client=BinanceRestClient(rest.url, sleep=lambda _: None), end=START + DAY
    )
    assert report.written == 1


def test_a_timeout_outliving_the_retries_stops(rest: BinanceRestServer, tmp_path: Path) -> None:
    client = BinanceRestClient(rest.url, timeout_s=0.2, max_attempts=2, sleep=lambda _: None)
    with pytest.raises(BackfillError, match="RestTimeoutError"):
        run(
            rest,
            tmp_path,
            client=client,
            end=START + DAY,
            faults=(Fault.delay(1.0), Fault.delay(1.0)),
        )


def test_request_weight_makes_it_wait_for_the_next_minute(
    klines: list[Kline], tmp_path: Path
) -> None:
    wall = [START + 10_000]
    with BinanceRestServer(klines, weight_limit=6000, wall_ms=lambda: wall[0]) as server:
        sleeps = Sleeps()
        report, source = run(server, tmp_path, sleep=sleeps, max_weight=4, clock_ms=lambda: wall[0])
    assert report.written == 3
    assert sleeps.calls
    assert all(49 < s < 51 for s in sleeps.calls)  # to the next minute
    assert source.waited_s == pytest.approx(sum(sleeps.calls))


def test_past_the_weight_limit_the_server_answers_429(klines: list[Kline]) -> None:
    with BinanceRestServer(klines, weight_limit=5, wall_ms=lambda: START) as server:
        client = BinanceRestClient(server.url, max_attempts=1, sleep=lambda _: None)
        client.klines("BTCUSDT", "1m", limit=10)
        client.klines("BTCUSDT", "1m", limit=10)
        assert client.used_weight_1m == 4
        from btcpred.sources.binance_rest import RateLimitedError

        with pytest.raises(RateLimitedError) as caught:
            client.klines("BTCUSDT", "1m", limit=10)
        assert caught.value.retry_after_s == 60


# ---- dumps ---------------------------------------------------------------------------------


def kline_row(k: Kline, micro: bool = False) -> list[str]:
    scale = 1000 if micro else 1
    return [
        str(k.open_time_ms * scale),
        repr(k.open),
        repr(k.high),
        repr(k.low),
        repr(k.close),
        repr(k.volume),
        str(k.close_time_ms * scale),
        repr(k.volume * k.close),
        "10",
        "0",
        "0",
        "0",
    ]


def write(path: Path, lines: list[list[str]], header: list[str] | None = None) -> Path:
    text = io.StringIO()
    writer = csv.writer(text)
    if header:
        writer.writerow(header)
    writer.writerows(lines)
    data = text.getvalue()
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr(path.with_suffix(".csv").name, data)
    elif path.suffix == ".gz":
        path.write_bytes(gzip.compress(data.encode()))
    else:
        path.write_text(data)
    return path


@pytest.mark.parametrize(
    ("suffix", "micro"), [(".csv", False), (".zip", False), (".zip", True), (".csv.gz", True)]
)
def test_kline_dumps_in_every_form(
    klines: list[Kline], tmp_path: Path, suffix: str, micro: bool
) -> None:
    day = klines[:1440]
    path = write(tmp_path / f"BTCUSDT-1m-2025-05-20{suffix}", [kline_row(k, micro) for k in day])
    out = tmp_path / "out"
    report = backfill_dumps(DumpSource([path]), DirectorySink(out), progress=quiet())
    assert (report.written, report.rows) == (1, 1440)
    back = [kline_from_record(r) for r in rows(objects(out)[0])]
    assert [k.open_time_ms for k in back] == [k.open_time_ms for k in day]
    assert all(r["source"] == "dump" for r in rows(objects(out)[0]))
    again = backfill_dumps(DumpSource([path]), DirectorySink(out), progress=quiet())
    assert (again.written, again.skipped) == (0, 1)


def test_the_six_column_fixture_reads_with_its_header(tmp_path: Path) -> None:
    report = backfill_dumps(
        DumpSource([THREE_DAYS], symbol="BTCUSDT", data_type="kline_1m"),
        DirectorySink(tmp_path),
        progress=quiet(),
    )
    assert (report.written, report.rows) == (3, 4320)


@pytest.mark.parametrize("micro", [False, True])
def test_agg_trade_dumps_with_and_without_header(tmp_path: Path, micro: bool) -> None:
    ts = trades(1, 500)
    scale = 1000 if micro else 1
    lines = [
        [
            str(t.agg_id),
            repr(t.price),
            repr(t.quantity),
            str(t.first_trade_id),
            str(t.last_trade_id),
            str(t.time_ms * scale),
            str(t.is_buyer_maker),
            "True",
        ]
        for t in ts
    ]
    header = (
        [
            "agg_trade_id",
            "price",
            "quantity",
            "first_trade_id",
            "last_trade_id",
            "transact_time",
            "is_buyer_maker",
            "is_best_match",
        ]
        if micro
        else None
    )
    path = write(tmp_path / "BTCUSDT-aggTrades-2025-05-20.zip", lines, header)
    assert list(read_dump(path, "agg_trade")) == ts


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("BTCUSDT-1m-2025-05-20.zip", b"PK not a zip", "not a zip"),
        ("BTCUSDT-1m-2025-05-20.csv.gz", b"\x1f\x8b\x08\x00garbage", "cannot read"),
        ("BTCUSDT-1m-2025-05-20.csv", b"1747699200000,1,2,0.5,abc,3\n", ":1:"),
        ("BTCUSDT-1m-2025-05-20.csv", b"", "no rows"),
    ],
)
def test_bad_dumps_are_typed_errors_naming_the_file(
    tmp_path: Path, name: str, content: bytes, match: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DumpFormatError, match=match):
        list(read_dump(path, "kline_1m"))


def test_rows_out_of_order_and_a_zip_without_csv(klines: list[Kline], tmp_path: Path) -> None:
    path = write(
        tmp_path / "BTCUSDT-1m-2025-05-20.csv", [kline_row(klines[1]), kline_row(klines[0])]
    )
    with pytest.raises(DumpFormatError, match=":2: not after"):
        list(read_dump(path, "kline_1m"))
    empty = tmp_path / "BTCUSDT-1m-2025-05-21.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("readme.txt", "x")
    with pytest.raises(DumpFormatError, match="no .csv"):
        list(read_dump(empty, "kline_1m"))
    (tmp_path / "x.csv").write_text("1")
    with pytest.raises(DumpFormatError, match="--symbol"):
        DumpSource([tmp_path / "x.csv"])


# ---- the command ----------------------------------------------------------------------------


def test_a_range_after_the_server_time_is_a_one_line_error(
    rest: BinanceRestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "backfill",
        "--rest-url",
        rest.url,
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-02",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]]
    assert "not before the server's time" in err[0]


def test_the_cli_backfills_and_reruns_to_nothing(
    rest: BinanceRestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "backfill",
        "--rest-url",
        rest.url,
        "--from",
        "2025-05-20",
        "--to",
        "2025-05-22",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    assert "2 objects written (2,880 rows)" in capsys.readouterr().err
    assert main(argv) == 0
    assert "0 objects written" in capsys.readouterr().err
    assert len(objects(tmp_path)) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["backfill", "--from", "2025-05-22", "--to", "2025-05-20", "--out", "X"],
        ["backfill", "--from", "2025-05-22", "--out", "X"],
        ["backfill", "--dump", "/nonexistent/BTCUSDT-1m-2025-05-20.zip", "--out", "X"],
        ["backfill", "--from", "yesterday", "--to", "2025-05-20", "--out", "X"],
    ],
)
def test_cli_mistakes_are_one_line_errors(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tmp_path / "out") if a == "X" else a for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("btcpred: error:")
