"""Each Lambda function's import graph holds only what it uses (issue 11, item 8).

Every handler is imported by file in a fresh interpreter, the way a cold start does, and the
modules it loaded are checked: the client-facing functions (HTTP, WebSocket) and the aggregator
and the fallback poller must not load numpy, onnxruntime or fastavro (the inference function's
layer), nor psycopg2 (the loader's), so their packages stay small and their cold starts short.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from btcpred.bench.imports import handler_imports, run_imports_bench

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
SERVING_ONLY = {"numpy", "onnxruntime", "fastavro"}
HISTORY_ONLY = {"psycopg2", "fastavro"}


@pytest.mark.parametrize("function", ["api", "websocket", "aggregator", "poller"])
def test_a_light_function_never_imports_the_serving_stack(function: str) -> None:
    modules, _ = handler_imports(LAMBDAS / function / "handler.py")

    loaded = {m.split(".")[0] for m in modules}
    assert "btcpred" in loaded  # the probe really imported the handler and its core
    assert loaded & (SERVING_ONLY | HISTORY_ONLY) == set()
    assert "torch" not in loaded


def test_the_poller_imports_its_core_and_no_aws_sdk_without_a_secret() -> None:
    modules, _ = handler_imports(LAMBDAS / "poller" / "handler.py")

    assert {"btcpred.poller.loop", "btcpred.inference.fallback"} <= set(modules)
    assert "boto3" not in {m.split(".")[0] for m in modules}


def test_the_inference_function_does_load_the_serving_stack() -> None:
    # the counter-check: the probe sees heavy imports when a handler has them
    modules, _ = handler_imports(LAMBDAS / "inference" / "handler.py")

    assert {m.split(".")[0] for m in modules} >= SERVING_ONLY


def test_the_imports_bench_reports_every_function_with_its_heavy_packages() -> None:
    figures = {f.function: f for f in run_imports_bench(LAMBDAS, rounds=1)}

    assert set(figures) == {"aggregator", "api", "inference", "websocket", "poller", "loader"}
    assert figures["api"].heavy == []
    assert figures["poller"].heavy == []
    assert figures["websocket"].heavy == ["boto3"]  # it reads the token secret and replies
    assert set(figures["inference"].heavy) >= SERVING_ONLY
    assert all(f.import_ms_p50 > 0 and f.modules > 100 for f in figures.values())
    assert figures["api"].modules < figures["inference"].modules


def test_bench_imports_prints_one_json_object_per_function(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from btcpred.cli import main

    code = main(["bench", "imports", "--json", "--rounds", "1"])

    out = capsys.readouterr().out
    data = json.loads(out)
    assert code == 0
    assert set(data) == {"aggregator", "api", "inference", "websocket", "poller", "loader"}
    assert data["api"]["heavy"] == []
    assert data["inference"]["import_ms_p50"] > 0
