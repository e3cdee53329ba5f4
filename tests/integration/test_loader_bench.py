"""``btcpred bench loader`` runs end to end on small inputs and counts what it loads."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import psycopg2
import pytest

from btcpred.bench.loader import agg_trades_from_trades, run_loader_bench, tile_agg_trades
from btcpred.events import Trade
from btcpred.klines import Kline
from btcpred.sources.capture import Capture
from tests.integration.history_helpers import fresh_schema


@pytest.fixture
def schema_url(database_url: str) -> Iterator[str]:
    with fresh_schema(database_url) as url:
        yield url


def test_tiling_keeps_ids_and_times_increasing(capture: Capture) -> None:
    base = agg_trades_from_trades([e for e in capture.events if isinstance(e, Trade)])
    tiled = tile_agg_trades(base, 3 * len(base) + 7)
    assert len(tiled) == 3 * len(base) + 7
    assert all(a.agg_id < b.agg_id for a, b in zip(tiled, tiled[1:], strict=False))
    assert all(a.time_ms <= b.time_ms for a, b in zip(tiled, tiled[1:], strict=False))
    assert all(a.last_trade_id < b.first_trade_id for a, b in zip(tiled, tiled[1:], strict=False))
    # aggregation never loses a trade
    assert sum(t.last_trade_id - t.first_trade_id + 1 for t in base) == sum(
        1 for e in capture.events if isinstance(e, Trade)
    )


def test_the_bench_loads_every_row_and_reports_both_ways(
    schema_url: str, warmup_klines: list[Kline], capture: Capture
) -> None:
    trades = tile_agg_trades(
        agg_trades_from_trades([e for e in capture.events if isinstance(e, Trade)]), 30_000
    )
    result = run_loader_bench(
        lambda: psycopg2.connect(schema_url), warmup_klines, trades, naive_rows=300
    )
    assert (result.rows, result.kline_rows, result.agg_trade_rows) == (30_370, 370, 30_000)
    hours = len({t.time_ms // 3_600_000 for t in trades})
    assert (result.kline_objects, result.agg_trade_objects) == (2, hours)
    assert result.naive_rows == 600
    assert result.rows_per_s > 0
    assert result.naive_rows_per_s > 0
    assert result.ratio_to_naive == pytest.approx(
        result.rows_per_s / result.naive_rows_per_s, rel=0.01
    )


def test_the_command_prints_one_json_object(schema_url: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "btcpred.cli",
            "bench",
            "loader",
            "--json",
            "--agg-trades",
            "2000",
            "--naive-rows",
            "100",
            "--database",
            schema_url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    data = json.loads(out)
    assert data["agg_trade_rows"] == 2000
    assert data["naive_rows"] == 200
    assert data["rows"] == data["kline_rows"] + 2000
