"""The `btcpred` command as a person runs it (a real subprocess)."""

from __future__ import annotations

import gzip
import itertools
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

CAPTURE = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "binance").glob("*.gz"))[0]


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
