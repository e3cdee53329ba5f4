"""The committed model: loadable, on this feature spec, and its card tells its recorded figures."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest

from btcpred.cli import main
from btcpred.features import FeatureEngine, spec_hash
from btcpred.features.batch import snapshots_from_klines
from btcpred.klines import Kline
from btcpred.model import OnnxModel, open_registry

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def shipped() -> OnnxModel:
    return open_registry(str(ROOT / "models")).load("btcpred-mlp")


def test_the_shipped_model_is_current_small_and_on_this_feature_spec(shipped: OnnxModel) -> None:
    meta = shipped.metadata

    assert meta.feature_spec_hash == spec_hash()
    assert len(shipped.raw_onnx) < 100_000
    assert meta.training.samples > 100_000  # trained on the 91-day set, not a fixture
    assert meta.masked_features == [
        "vwap",
        "trade_intensity",
        "bid_ask_spread",
        "order_book_imbalance",
    ]


def test_the_model_card_reports_the_recorded_test_figures(shipped: OnnxModel) -> None:
    card = (ROOT / "docs" / "model-card.md").read_text()
    test = shipped.metadata.metrics["test"]

    assert shipped.version in card
    for figure in (
        f"{test.model_mae:.3f}",
        f"{test.naive_mae:.3f}",
        f"{test.mae_ratio:.5f}",
        f"{test.linear_mae:.3f}",
        f"{test.direction_accuracy:.4f}",
        f"{test.calibration_spearman:+.4f}",
    ):
        assert figure in card


def test_predicts_from_real_features(shipped: OnnxModel, warmup_klines: list[Kline]) -> None:
    *_, snap = snapshots_from_klines(warmup_klines, FeatureEngine("BTCUSDT"))

    pred = shipped.predict([snap.values()])

    assert snap.price is not None
    assert abs(pred.predicted_price / snap.price - 1) < 0.01
    assert 0 < pred.confidence < 1
    assert math.isfinite(pred.estimated_log_abs_error)


def test_bench_model_reports_the_issue_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "model", "--json", "--model", str(ROOT / "models")]) == 0

    data = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert {"p50_us", "p99_us", "session_load_ms"} <= set(data)
    assert 0 < data["p50_us"] <= data["p99_us"]
    assert data["session_load_ms"] > 0
    assert data["model_version"] == "btcpred-mlp/1.0.0"
