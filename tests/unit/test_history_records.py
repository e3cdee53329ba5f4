"""History records, keys, the container check, the sinks and the progress line."""

from __future__ import annotations

import io
from pathlib import Path

import boto3
import fastavro
import pytest
from moto import mock_aws

from btcpred.aggtrades import AggTrade, agg_trade_from_json, agg_trade_from_row
from btcpred.history.avro import ObjectFormatError, encode, scan
from btcpred.history.aws import S3Sink
from btcpred.history.layout import chunks, object_key, parse_key
from btcpred.history.progress import Progress
from btcpred.history.records import agg_trade_record, kline_from_record, kline_record
from btcpred.history.sinks import DirectorySink
from btcpred.klines import Kline

K12 = Kline(
    1747699200000,
    1747699259999,
    105573.73,
    105597.1,
    105554.31,
    105554.32,
    10.82647,
    1142780.6788504,
    1234,
)
K6 = Kline(1747699260000, 1747699319999, 0.1, 0.30000000000000004, 0.1, 0.2, 5e-324)
T = AggTrade(26129, 0.01633102, 4.70443515, 27781, 27781, 1498793709153, True)


def test_records_round_trip_through_avro_bit_exact() -> None:
    rows = [kline_record("BTCUSDT", K12, "rest", 5, 12.5), kline_record("BTCUSDT", K6, "dump", 6)]
    back = list(fastavro.reader(io.BytesIO(encode(rows))))
    assert back == rows
    assert [kline_from_record(r) for r in back] == [K12, K6]  # type: ignore[arg-type]
    trade = agg_trade_record("BTCUSDT", T, "rest", 7, 1.0)
    assert list(fastavro.reader(io.BytesIO(encode([trade])))) == [trade]
    with pytest.raises(ValueError, match="not a kline"):
        kline_from_record(trade)


def test_agg_trades_parse_rest_and_dump_forms() -> None:
    body = {
        "a": 26129,
        "p": "0.01633102",
        "q": "4.70443515",
        "f": 27781,
        "l": 27781,
        "T": 1498793709153,
        "m": True,
        "M": True,
    }
    assert agg_trade_from_json(body) == T
    row = [
        "26129",
        "0.01633102",
        "4.70443515",
        "27781",
        "27781",
        "1498793709153000",
        "true",
        "true",
    ]
    assert agg_trade_from_row(row) == T  # µs → ms
    for bad in (row[:5], [*row[:1], "-1", *row[2:]], [*row[:6], "maybe", "true"]):
        with pytest.raises(ValueError, match="columns|price|boolean"):
            agg_trade_from_row(bad)
    with pytest.raises(ValueError, match="lacks field"):
        agg_trade_from_json({"a": 1})


def test_chunks_widen_to_whole_days_and_hours() -> None:
    day = chunks("BTCUSDT", "kline_1m", 1747699200000 + 5, 1747699200000 + 86_400_001)
    assert [(c.start_ms, c.end_ms - c.start_ms) for c in day] == [
        (1747699200000, 86_400_000),
        (1747785600000, 86_400_000),
    ]
    assert len(chunks("BTCUSDT", "agg_trade", 0, 3 * 3_600_000)) == 3
    with pytest.raises(ValueError, match="empty"):
        chunks("BTCUSDT", "kline_1m", 10, 10)


def test_keys_name_their_rows_and_parse_back() -> None:
    key = object_key("BTCUSDT", "kline_1m", 1747699200000, 1747785540000)
    assert key == (
        "market/symbol=BTCUSDT/data_type=kline_1m/date=2025-05-20/"
        "BTCUSDT-kline_1m-1747699200000-1747785540000.avro"
    )
    parsed = parse_key(key)
    assert (parsed.prefix, parsed.symbol, parsed.data_type, parsed.first_ms) == (
        "market",
        "BTCUSDT",
        "kline_1m",
        1747699200000,
    )
    with pytest.raises(ValueError, match="one kline_1m chunk"):
        object_key("BTCUSDT", "kline_1m", 1747699200000, 1747785600000)
    for bad in (
        "x.avro",
        key.replace("BTCUSDT-kline", "ETHUSDT-kline"),
        key.replace(".avro", ".csv"),
    ):
        with pytest.raises(ValueError, match="layout"):
            parse_key(bad)


def test_scan_counts_rows_and_finds_every_cut() -> None:
    rows = [kline_record("BTCUSDT", K12, "rest", i) for i in range(3000)]
    data = encode(rows)
    found = scan(data)
    assert (found.rows, found.codec) == (3000, "deflate")
    assert found.blocks >= 1
    for cut in range(5, len(data), max(1, len(data) // 97)):
        with pytest.raises(ObjectFormatError):
            scan(data[:cut])
    with pytest.raises(ObjectFormatError, match="magic"):
        scan(b"PAR1" + data[4:])
    corrupt = bytearray(data)
    corrupt[-3] ^= 0xFF  # inside the last sync marker
    with pytest.raises(ObjectFormatError, match="sync"):
        scan(bytes(corrupt))
    snappy = data.replace(b"deflate", b"snappyx", 1)
    with pytest.raises(ObjectFormatError):
        scan(snappy)


def test_a_directory_sink_never_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    key = "market/symbol=BTCUSDT/data_type=kline_1m/date=2025-05-20/a.avro"
    assert sink.put(key, b"first")
    assert not sink.put(key, b"second")
    assert (tmp_path / key).read_bytes() == b"first"
    assert sink.keys("market/symbol=BTCUSDT/") == {key}
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["a.avro"]
    with pytest.raises(ValueError, match="leaves"):
        sink.put("../outside.avro", b"x")


def test_an_s3_sink_creates_only_if_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="history-bucket")
        sink = S3Sink(client, "history-bucket")
        assert sink.put("market/a.avro", b"first")
        assert not sink.put("market/a.avro", b"second")
        assert (
            client.get_object(Bucket="history-bucket", Key="market/a.avro")["Body"].read()
            == b"first"
        )
        assert sink.keys("market/") == {"market/a.avro"}
        assert sink.describe("market/a.avro") == "s3://history-bucket/market/a.avro"


def test_progress_of_an_unknown_total_keeps_to_its_cadence() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = Progress(0, out=out, clock=lambda: now[0], log_every_s=5)
    for _ in range(50):  # dump chunks as they come: one line, not fifty
        bar.advance(1440)
    assert out.getvalue().splitlines() == ["1 chunks, 1,440 rows, 0 already there, elapsed 0s"]
    now[0] = 6.0
    bar.advance(1440)
    assert out.getvalue().splitlines()[-1] == "51 chunks, 73,440 rows, 0 already there, elapsed 6s"


def test_progress_eta_from_the_chunks_fetched() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = Progress(10, out=out, clock=lambda: now[0], log_every_s=5)
    bar.advance(skipped=True)  # already there: costs nothing
    assert bar.eta_s() is None
    now[0] = 4.0
    bar.advance(100)
    bar.advance(100)  # 2 fetched in 4 s, 7 left
    assert bar.eta_s() == pytest.approx(14.0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1  # the first line; the next one only 5 s later
    assert "1/10 chunks" in lines[0]
    now[0] = 10.0
    bar.advance(50)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "4/10 chunks (40%), 250 rows, 1 already there" in lines[-1]
