"""The `btcpred` command as a person runs it (a real subprocess)."""

from __future__ import annotations

import gzip
import itertools
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

CAPTURE = sorted(
    (Path(__file__).resolve().parents[2] / "fixtures" / "binance").glob("btcusdt_ws_capture_*.gz")
)[0]


def _btcpred(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "btcpred.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def small_capture(tmp_path: Path) -> Path:
    path = tmp_path / "small.gz"
    with gzip.open(CAPTURE, "rb") as src, gzip.open(path, "wb") as dst:
        dst.writelines(itertools.islice(src, 300))
    return path


def test_bench_sbe_json_prints_one_object(small_capture: Path) -> None:
    done = _btcpred("bench", "sbe", "--json", "--rounds", "1", "--capture", str(small_capture))

    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert result["frames"] == 300
    assert result["sbe_frames_per_s"] > 0
    assert result["json_frames_per_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["sbe_frames_per_s"] / result["json_frames_per_s"], rel=1e-2
    )


def test_replay_prints_events_and_a_summary(small_capture: Path) -> None:
    done = _btcpred("replay", "--speed", "0", "--capture", str(small_capture))

    assert done.returncode == 0, done.stderr
    assert "round trip       0 events differ" in done.stdout
    assert " trade  BTCUSDT" in done.stdout


def test_missing_capture_file_is_a_clear_error(tmp_path: Path) -> None:
    done = _btcpred("replay", "--capture", str(tmp_path / "nope.gz"))

    assert done.returncode != 0
    assert "capture file not found" in done.stderr


def test_negative_speed_is_rejected() -> None:
    done = _btcpred("replay", "--speed", "-1")

    assert done.returncode != 0
    assert "--speed" in done.stderr


def test_zero_bench_rounds_are_rejected() -> None:
    done = _btcpred("bench", "sbe", "--rounds", "0")

    assert done.returncode == 2
    assert "--rounds: must be >= 1" in done.stderr


def test_a_file_without_market_messages_is_a_clear_error() -> None:
    klines = CAPTURE.parent / "btcusdt_1m_2024-08-08T18_2024-08-09T0010.csv.gz"

    done = _btcpred("bench", "sbe", "--json", "--rounds", "1", "--capture", str(klines))

    assert done.returncode != 0
    assert "no market messages" in done.stderr


def test_features_writes_one_row_per_kline(tmp_path: Path) -> None:
    klines = CAPTURE.parent / "btcusdt_1m_2024-08-08T18_2024-08-09T0010.csv.gz"
    out = tmp_path / "features.csv"

    done = _btcpred("features", "--klines", str(klines), "--output", str(out))

    assert done.returncode == 0, done.stderr
    rows = out.read_text().splitlines()
    assert rows[0].split(",")[:3] == ["timestamp", "price", "volume"]
    assert len(rows) == 1 + 370
    last = rows[-1].split(",")
    assert last[0] == "1723162199999"  # close of the 00:09 UTC bar
    assert last[1] == "61444.94"
    assert last[8] == ""  # bid_ask_spread: klines carry no quotes


def test_features_reports_a_malformed_klines_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("open_time_ms,open,high,low,close,volume\n1723161600000,1,2,0.5,x,3\n")

    done = _btcpred("features", "--klines", str(bad))

    assert done.returncode != 0
    assert "bad.csv:2" in done.stderr


def test_bench_aggregator_json_runs_the_handler_and_the_reference(small_capture: Path) -> None:
    done = _btcpred(
        "bench", "aggregator", "--json", "--rounds", "1", "--capture", str(small_capture)
    )

    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert set(result) >= {"events_per_s", "reference_events_per_s", "ratio", "peak_rss_mb"}
    assert result["events"] == 299  # the REST depth snapshot is not a stream event
    assert result["peak_rss_mb"] > 0


def test_replay_warms_up_from_the_given_klines_file(small_capture: Path) -> None:
    klines = CAPTURE.parent / "btcusdt_1m_2024-08-08T18_2024-08-09T0010.csv.gz"

    done = _btcpred(
        "replay",
        "--speed",
        "0",
        "--quiet",
        "--no-model",
        "--capture",
        str(small_capture),
        "--klines",
        str(klines),
    )

    assert done.returncode == 0, done.stderr
    assert "warm-up from local Binance REST http://" in done.stdout


def test_evaluate_writes_its_report_into_an_existing_directory(tmp_path: Path) -> None:
    klines = CAPTURE.parent / "btcusdt_1m_2024-08-08T18_2024-08-09T0010.csv.gz"
    model = CAPTURE.parents[2] / "models" / "btcpred-mlp" / "1.0.0"
    (tmp_path / "notes.txt").write_text("kept\n")

    done = _btcpred(
        "evaluate", "--klines", str(klines), "--model", str(model), "--report", str(tmp_path)
    )

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "summary.md").is_file()
    assert (tmp_path / "notes.txt").read_text() == "kept\n"
