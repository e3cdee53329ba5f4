"""``btcpred bench inference``: the figures come from real ticks and a real broadcast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import redis

from btcpred.bench.inference import run_inference_bench
from btcpred.features import FeatureSnapshot
from btcpred.keys import RedisKeys

ROOT = Path(__file__).parents[2]


def _point(timestamp_ms: int) -> FeatureSnapshot:
    return FeatureSnapshot.build(
        "BTCUSDT",
        timestamp_ms,
        {
            "price": 61_824.0,
            "volume": 30.0,
            "vwap": 61_784.5,
            "price_change_1m": 0.0018,
            "price_change_5m": 0.0008,
            "volume_avg_1m": 28.0,
            "trade_intensity": 1.1,
            "bid_ask_spread": 1.6e-7,
            "order_book_imbalance": -0.9,
            "rsi_5m": 60.6,
            "macd_signal": -64.8,
            "bollinger_position": 0.45,
        },
    )


def test_bench_ticks_write_predictions_and_report_every_figure(redis_url: str) -> None:
    result = run_inference_bench(
        str(ROOT / "models"),
        "btcpred-mlp",
        _point(1_723_161_256_000),
        redis_url,
        ticks=300,
        broadcasts=10,
    )

    assert result.ticks == 300
    assert 0 < result.tick_p50_ms <= result.tick_p99_ms
    assert 0 < result.model_p99_us < result.tick_p99_ms * 1000
    assert 30 < result.rss_mb < 1000  # a fresh process holding onnxruntime and the model
    assert result.broadcast_100_p99_ms is not None
    assert result.broadcast_100_p99_ms > 0
    assert result.broadcast_100_p50_ms is not None
    assert 0 < result.broadcast_100_p50_ms <= result.broadcast_100_p99_ms
    assert result.broadcast_ms_per_connection == round(result.broadcast_100_p50_ms / 100, 3)
    assert result.post_cpu_us is not None
    assert 0 < result.post_cpu_us < result.broadcast_100_p99_ms * 1000
    with redis.Redis.from_url(redis_url) as client:
        latest = orjson.loads(client.get(RedisKeys().predictions("BTCUSDT").latest) or b"null")
    assert latest["current_price"] == 61_824.0
    assert latest["model_version"] == "btcpred-mlp/1.0.0"


def test_bench_inference_command_prints_one_json_object(
    redis_client: redis.Redis,  # empties the database: the command refuses one holding keys
    redis_url: str,
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "btcpred.cli",
            "bench",
            "inference",
            "--json",
            "--redis-url",
            redis_url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    data = orjson.loads(done.stdout)
    assert set(data) >= {
        "tick_p50_ms",
        "tick_p99_ms",
        "model_p99_us",
        "rss_mb",
        "broadcast_100_p99_ms",
        "broadcast_ms_per_connection",
        "post_cpu_us",
    }
    assert data["ticks"] == 5000
