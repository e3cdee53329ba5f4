"""The history pipeline closes the loop: REST → backfill → S3 Avro → loader → PostgreSQL →
the dataset and the model, identical to training on the source CSV."""

from __future__ import annotations

import csv
import gzip
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import psycopg2
import pytest
from moto import mock_aws

from btcpred.cli import main
from btcpred.history.aws import S3Sink
from btcpred.history.backfill import DumpSource, RestSource, backfill, backfill_dumps
from btcpred.history.database import read_klines
from btcpred.history.service import LoaderService, ObjectRef
from btcpred.klines import Kline
from btcpred.klines import read_klines as read_csv_klines
from btcpred.model.dataset import dataset_from_klines
from btcpred.sim.binance_rest import BinanceRestServer
from btcpred.sources.binance_rest import BinanceRestClient
from tests.integration.history_helpers import fresh_schema

# the first three days of the training set (fixtures/binance/NOTICE.md)
THREE_DAYS = (
    Path(__file__).resolve().parents[2] / "fixtures" / "binance" / "btcusdt_1m_2025-05-20_3d.csv.gz"
)
BUCKET = "btcpred-test-raw-history"
DAYS = 3
START = 1747699200000  # 2025-05-20 00:00 UTC


@pytest.fixture(scope="module")
def klines() -> list[Kline]:
    return list(itertools.islice(read_csv_klines(THREE_DAYS), DAYS * 1440))


@pytest.fixture
def schema_url(database_url: str) -> Iterator[str]:
    with fresh_schema(database_url) as url:
        yield url


def _write_csv(klines: list[Kline], path: Path) -> Path:
    with gzip.open(path, "wt", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["open_time_ms", "open", "high", "low", "close", "volume"])
        for k in klines:
            writer.writerow(
                [
                    k.open_time_ms,
                    repr(k.open),
                    repr(k.high),
                    repr(k.low),
                    repr(k.close),
                    repr(k.volume),
                ]
            )
    return path


def _load_all(s3: Any, sink: S3Sink, schema_url: str) -> None:
    def fetch(bucket: str, key: str) -> tuple[bytes, str | None]:
        answer = s3.get_object(Bucket=bucket, Key=key)
        return answer["Body"].read(), answer["ETag"].strip('"')

    service = LoaderService(
        lambda: psycopg2.connect(schema_url), fetch, transient=(psycopg2.Error,)
    )
    for key in sorted(sink.keys("market/")):
        assert service.load(ObjectRef(BUCKET, key, None, None, None)).inserted == 1440


def test_rest_backfill_to_the_database_keeps_every_bar(
    klines: list[Kline], schema_url: str, aws_env: pytest.MonkeyPatch
) -> None:
    with mock_aws(), BinanceRestServer(klines) as rest:
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        sink = S3Sink(s3, BUCKET)
        client = BinanceRestClient(rest.url)
        report = backfill(
            RestSource(client),
            sink,
            "BTCUSDT",
            "kline_1m",
            START,
            START + DAYS * 86_400_000,
            server_time_ms=client.server_time_ms(),
        )
        assert (report.written, report.rows) == (DAYS, DAYS * 1440)
        _load_all(s3, sink, schema_url)
    conn: Any = psycopg2.connect(schema_url)
    try:
        from_db = list(read_klines(conn, "BTCUSDT", START, START + DAYS * 86_400_000))
    finally:
        conn.close()
    # REST's 12 columns: the 6 the CSV holds are exact, the rest the simulator's (docs/simulator)
    assert [k[:7] for k in map(_fields, from_db)] == [k[:7] for k in map(_fields, klines)]
    assert all(k.quote_volume is not None and k.trades is not None for k in from_db)


def _fields(k: Kline) -> tuple[object, ...]:
    return (k.open_time_ms, k.close_time_ms, k.open, k.high, k.low, k.close, k.volume)


def test_dump_backfill_avro_loader_database_gives_the_csv_dataset_and_model(
    klines: list[Kline], schema_url: str, aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    csv_path = _write_csv(klines, tmp_path / "BTCUSDT-1m-slice.csv.gz")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        sink = S3Sink(s3, BUCKET)
        source = DumpSource([csv_path], symbol="BTCUSDT", data_type="kline_1m")
        report = backfill_dumps(source, sink)
        assert (report.written, report.rows) == (DAYS, DAYS * 1440)
        _load_all(s3, sink, schema_url)

    conn: Any = psycopg2.connect(schema_url)
    try:
        from_db = list(read_klines(conn, "BTCUSDT", START, START + DAYS * 86_400_000))
    finally:
        conn.close()
    assert from_db == klines

    a = dataset_from_klines(from_db, source="db", symbol="BTCUSDT")
    b = dataset_from_klines(klines, source="csv", symbol="BTCUSDT")
    assert np.array_equal(a.features, b.features, equal_nan=True)
    assert np.array_equal(a.timestamps, b.timestamps)
    assert np.array_equal(a.labels, b.labels)

    common = ["--seed", "11", "--max-epochs", "2", "--version", "t1"]
    database = schema_url
    assert (
        main(
            [
                "train",
                "--database",
                database,
                "--from",
                "2025-05-20",
                "--to",
                "2025-05-23",
                "--out",
                str(tmp_path / "db"),
                *common,
            ]
        )
        == 0
    )
    assert main(["train", "--klines", str(csv_path), "--out", str(tmp_path / "csv"), *common]) == 0
    assert (tmp_path / "db" / "model.onnx").read_bytes() == (
        tmp_path / "csv" / "model.onnx"
    ).read_bytes()


def test_train_from_an_empty_period_is_a_clear_error(
    schema_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    conn = psycopg2.connect(schema_url)
    from btcpred.history.migrations import migrate

    migrate(conn)
    conn.close()
    code = main(
        [
            "train",
            "--database",
            schema_url,
            "--from",
            "2030-01-01",
            "--to",
            "2030-01-02",
            "--out",
            str(tmp_path / "m"),
        ]
    )
    assert code != 0
    assert "no BTCUSDT kline_1m rows" in capsys.readouterr().err
