"""``btcpred bench ... --redis-url`` against the harness's real Redis: a database holding keys
is refused (the benches flush the database they are given), an empty one is used."""

from __future__ import annotations

import gzip
import itertools
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import redis

CAPTURE = Path(__file__).resolve().parents[2] / "fixtures/binance/btcusdt_ws_capture_2024-08-08.gz"


def _btcpred(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "btcpred.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("bench", ["aggregator", "inference"])
def test_bench_refuses_a_redis_database_holding_keys(
    bench: str, redis_client: redis.Redis, redis_url: str
) -> None:
    redis_client.set("someone:else", b"data")
    try:
        done = _btcpred("bench", bench, "--redis-url", redis_url)

        assert done.returncode != 0
        assert "Traceback" not in done.stderr
        assert done.stderr.splitlines() == [
            f"btcpred: error: --redis-url {redis_url}: the database is not empty (DBSIZE 1); "
            "the bench flushes it, give an empty one"
        ]
        assert redis_client.get("someone:else") == b"data"
    finally:
        redis_client.flushdb()


def test_bench_aggregator_uses_a_given_empty_redis(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    small = tmp_path / "small.gz"
    with gzip.open(CAPTURE, "rb") as src, gzip.open(small, "wb") as dst:
        dst.writelines(itertools.islice(src, 300))

    done = _btcpred(
        "bench",
        "aggregator",
        "--json",
        "--rounds",
        "1",
        "--capture",
        str(small),
        "--redis-url",
        redis_url,
    )

    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["events"] == 299
    assert redis_client.dbsize() > 0  # the handler's feature state is in the given database
