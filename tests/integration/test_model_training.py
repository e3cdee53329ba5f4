"""Training on a tiny real dataset: export parity, reproducibility, metadata, masks, CLI flow.

Each training run takes about a second (the fixture's 370 one-minute klines, three epochs).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch

from btcpred.cli import main
from btcpred.features import FEATURE_NAMES, spec_hash
from btcpred.klines import Kline
from btcpred.model import ModelFormatError, OnnxModel
from btcpred.model.dataset import Dataset, DatasetError, dataset_from_klines
from btcpred.model.train import TrainConfig, TrainedModel, train, write_model

FIXTURE = Path(__file__).parents[2] / "fixtures" / "binance"
KLINES = FIXTURE / "btcusdt_1m_2024-08-08T18_2024-08-09T0010.csv.gz"
CONFIG = TrainConfig(version="test", max_epochs=3, seed=11)


@pytest.fixture(scope="module")
def data(warmup_klines: list[Kline]) -> Dataset:
    return dataset_from_klines(warmup_klines, source="fixture")


@pytest.fixture(scope="module")
def trained(data: Dataset) -> TrainedModel:
    return train(data, CONFIG)


def test_onnx_equals_pytorch_within_1e_5_on_the_test_split(trained: TrainedModel) -> None:
    model = OnnxModel.from_bytes(trained.onnx, trained.metadata)
    x = torch.from_numpy(trained.test_part.features.astype(np.float32))

    with torch.no_grad():
        ref = [t[:, 0].double().numpy() for t in trained.network(x)]
    got = model.run(trained.test_part.features)

    scale = trained.metadata.preprocessing.target_scale
    assert np.abs(got.log_return - ref[0]).max() / scale <= 1e-5
    assert np.abs(got.log_abs_error - ref[1]).max() <= 1e-5
    assert np.abs(got.linear_log_return - ref[2]).max() <= 1e-5


def test_training_is_reproducible_bit_for_bit(data: Dataset, trained: TrainedModel) -> None:
    again = train(data, CONFIG)

    assert again.onnx == trained.onnx
    assert again.history == trained.history


def test_another_seed_gives_another_model(data: Dataset, trained: TrainedModel) -> None:
    other = train(data, TrainConfig(version="test", max_epochs=3, seed=12))

    assert other.onnx != trained.onnx


def test_metadata_records_what_serving_and_audits_need(
    data: Dataset, trained: TrainedModel
) -> None:
    meta = trained.metadata
    run = meta.training

    assert meta.feature_spec_hash == spec_hash()
    assert meta.feature_order == list(FEATURE_NAMES)
    assert meta.masked_features == [
        "vwap",
        "trade_intensity",
        "bid_ask_spread",
        "order_book_imbalance",
    ]
    assert meta.horizon_ms == 60_000
    assert meta.window == 1
    assert meta.architecture.inputs == 12
    assert meta.architecture.hidden == [64, 32, 16]
    # time-ordered, embargoed, and the test part is the tail of the data
    assert run.train.last_ms < run.validation.first_ms < run.validation.last_ms < run.test.first_ms
    assert run.test.last_ms == int(data.timestamps[-1])
    assert run.train.n + run.validation.n + run.test.n + 2 * run.embargo_samples == len(data)
    assert set(meta.metrics) == {"validation", "test"}
    assert meta.metrics["test"].n == run.test.n
    assert 1 <= run.best_epoch <= run.epochs_run <= 3


def test_masked_features_do_not_reach_the_network(trained: TrainedModel) -> None:
    model = OnnxModel.from_bytes(trained.onnx, trained.metadata)
    x = trained.test_part.features.copy()
    masked = [FEATURE_NAMES.index(n) for n in trained.metadata.masked_features]
    garbage = x.copy()
    garbage[:, :, masked] = 1e6

    a, b = model.run(x), model.run(garbage)

    np.testing.assert_array_equal(a.log_return, b.log_return)
    np.testing.assert_array_equal(a.log_abs_error, b.log_abs_error)


def test_predict_from_one_point_matches_the_batch_path(trained: TrainedModel) -> None:
    model = OnnxModel.from_bytes(trained.onnx, trained.metadata)
    point = trained.test_part.features[0, 0]
    values = [None if math.isnan(v) else float(v) for v in point]

    single = model.predict([values])
    batch = model.run(trained.test_part.features[:1])

    assert single.log_return == pytest.approx(batch.log_return[0], abs=1e-12)
    assert single.predicted_price == pytest.approx(values[0] * math.exp(single.log_return))
    assert 0.0 <= single.confidence <= 1.0


def test_sequence_variant_takes_five_points(warmup_klines: list[Kline]) -> None:
    data = dataset_from_klines(warmup_klines, source="fixture", window=5)

    seq = train(data, CONFIG)

    model = OnnxModel.from_bytes(seq.onnx, seq.metadata)
    assert seq.metadata.architecture.kind == "mlp_sequence"
    assert seq.metadata.architecture.inputs == 60
    assert model.run(data.features[:3]).log_return.shape == (3,)


def test_a_tampered_artifact_is_refused(trained: TrainedModel) -> None:
    with pytest.raises(ModelFormatError, match="not the one metadata.json describes"):
        OnnxModel.from_bytes(trained.onnx + b"\0", trained.metadata)


def test_too_little_history_is_a_typed_error(warmup_klines: list[Kline]) -> None:
    data = dataset_from_klines(warmup_klines[:80], source="fixture")  # 9 samples

    with pytest.raises(DatasetError, match="too few"):
        train(data, CONFIG)


def test_train_evaluate_publish_list_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, registry, report = tmp_path / "model", tmp_path / "registry", tmp_path / "report"
    common = ["--klines", str(KLINES)]

    assert main(["train", *common, "--out", str(out), "--version", "0.1", "--max-epochs", "2"]) == 0
    assert main(["evaluate", *common, "--model", str(out), "--json", "--report", str(report)]) == 0
    result = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["model", "publish", str(out), "--registry", str(registry)]) == 0
    assert main(["model", "list", "--registry", str(registry), "--json"]) == 0
    listed = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert set(result) == {
        "n",
        "model_mae",
        "naive_mae",
        "mae_ratio",
        "linear_mae",
        "direction_accuracy",
        "calibration_spearman",
    }
    assert result["mae_ratio"] == pytest.approx(result["model_mae"] / result["naive_mae"])
    for name in ("predicted_vs_actual.png", "error_by_confidence.png", "residuals.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        "does NOT beat" in (report / "summary.md").read_text()
        or "beats" in (report / "summary.md").read_text()
    )
    assert listed == [
        {
            "name": "btcpred-mlp",
            "version": "0.1",
            "current": True,
            "created_at": listed[0]["created_at"],
            "kind": "mlp",
            "test_mae_ratio": listed[0]["test_mae_ratio"],
        }
    ]
    assert (registry / "btcpred-mlp" / "0.1" / "model.onnx").read_bytes() == (
        out / "model.onnx"
    ).read_bytes()


def test_write_model_writes_both_files(trained: TrainedModel, tmp_path: Path) -> None:
    path = write_model(trained, tmp_path / "m")

    loaded = OnnxModel.load(path)

    assert loaded.metadata == trained.metadata
