"""The model registry on a local directory and on S3 (moto): layout, pointer, immutability."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import msgspec
import pytest
from moto import mock_aws

from btcpred.cli import main
from btcpred.klines import Kline
from btcpred.model import ModelFormatError, ModelRegistry, RegistryError, open_registry
from btcpred.model.dataset import dataset_from_klines
from btcpred.model.metadata import read_metadata
from btcpred.model.train import TrainConfig, train, write_model

BUCKET = "btcpred-models-test"


@pytest.fixture(scope="module")
def model_dirs(warmup_klines: list[Kline], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two trained versions of the same model (tiny, two epochs each)."""
    data = dataset_from_klines(warmup_klines, source="fixture")
    root = tmp_path_factory.mktemp("models")
    return [
        write_model(train(data, TrainConfig(version=v, max_epochs=2, seed=s)), root / v)
        for v, s in (("1", 1), ("2", 2))
    ]


@pytest.fixture(params=["local", "s3"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelRegistry]:
    if request.param == "local":
        yield open_registry(str(tmp_path / "models"))
        return
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        yield open_registry(f"s3://{BUCKET}/models", client)


def test_publish_writes_the_design_layout_and_points_current(
    registry: ModelRegistry, model_dirs: list[Path]
) -> None:
    pointer = registry.publish(model_dirs[0])

    keys = registry.store.list("")
    assert keys == [
        "btcpred-mlp/1/metadata.json",
        "btcpred-mlp/1/model.onnx",
        "btcpred-mlp/current.json",
    ]
    assert registry.current("btcpred-mlp") == pointer
    assert pointer.version == "1"
    onnx, meta = registry.fetch("btcpred-mlp")
    assert onnx == (model_dirs[0] / "model.onnx").read_bytes()
    assert meta == read_metadata(model_dirs[0])


def test_a_newer_version_moves_the_pointer_and_both_are_listed(
    registry: ModelRegistry, model_dirs: list[Path]
) -> None:
    registry.publish(model_dirs[0])
    registry.publish(model_dirs[1])

    listed = [(m.version, m.current) for m in registry.models()]

    assert listed == [("1", False), ("2", True)]
    assert registry.load("btcpred-mlp").metadata.version == "2"
    assert registry.load("btcpred-mlp", "1").metadata.version == "1"


def test_no_current_keeps_the_served_version(
    registry: ModelRegistry, model_dirs: list[Path]
) -> None:
    registry.publish(model_dirs[0])
    registry.publish(model_dirs[1], make_current=False)

    current = registry.current("btcpred-mlp")
    assert current is not None
    assert current.version == "1"


def test_versions_are_immutable_but_republishing_the_same_bytes_is_fine(
    registry: ModelRegistry, model_dirs: list[Path], tmp_path: Path
) -> None:
    registry.publish(model_dirs[0])
    registry.publish(model_dirs[0])  # idempotent
    impostor = tmp_path / "impostor"
    impostor.mkdir()
    meta = read_metadata(model_dirs[1])
    (impostor / "model.onnx").write_bytes((model_dirs[1] / "model.onnx").read_bytes())
    (impostor / "metadata.json").write_bytes(msgspec.structs.replace(meta, version="1").to_json())

    with pytest.raises(RegistryError, match="immutable"):
        registry.publish(impostor)


def test_a_broken_artifact_is_refused_and_nothing_is_written(
    registry: ModelRegistry, model_dirs: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_bytes((model_dirs[0] / "metadata.json").read_bytes())
    (broken / "model.onnx").write_bytes(b"not a model")

    with pytest.raises(ModelFormatError):
        registry.publish(broken)
    assert registry.store.list("") == []


def test_a_model_of_another_feature_spec_is_refused(
    registry: ModelRegistry, model_dirs: list[Path], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    meta = read_metadata(model_dirs[0])
    (other / "model.onnx").write_bytes((model_dirs[0] / "model.onnx").read_bytes())
    (other / "metadata.json").write_bytes(
        msgspec.structs.replace(meta, feature_spec_hash="sha256:" + "0" * 64).to_json()
    )

    with pytest.raises(ModelFormatError, match="feature spec"):
        registry.publish(other)


def test_missing_models_are_typed_errors(registry: ModelRegistry) -> None:
    assert registry.current("nothing") is None
    with pytest.raises(RegistryError, match="no current.json"):
        registry.fetch("nothing")
    with pytest.raises(RegistryError, match="is not in"):
        registry.fetch("nothing", "9")


def test_bad_registry_uris_are_typed_errors() -> None:
    with pytest.raises(RegistryError, match="no bucket"):
        open_registry("s3:///models", object())  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="needs an S3 client"):
        open_registry("s3://bucket/models")
    with pytest.raises(RegistryError, match="use s3://"):
        open_registry("gs://bucket/models")


def test_cli_publishes_to_s3(model_dirs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)

        assert main(["model", "publish", str(model_dirs[0]), "--registry", f"s3://{BUCKET}/m"]) == 0
        assert main(["model", "list", "--registry", f"s3://{BUCKET}/m"]) == 0

        keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sorted(keys) == [
        "m/btcpred-mlp/1/metadata.json",
        "m/btcpred-mlp/1/model.onnx",
        "m/btcpred-mlp/current.json",
    ]
    assert "* btcpred-mlp/1" in capsys.readouterr().out


def test_cli_reports_a_missing_model_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["model", "publish", str(tmp_path), "--registry", str(tmp_path / "r")])

    (line,) = capsys.readouterr().err.splitlines()
    assert code == 1
    assert line.startswith("btcpred: error: not a model directory")


def test_cli_list_reports_a_corrupt_metadata_file(
    model_dirs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "r"
    assert main(["model", "publish", str(model_dirs[0]), "--registry", str(registry)]) == 0
    (registry / "btcpred-mlp" / "1" / "metadata.json").write_text("{not json")
    capsys.readouterr()

    code = main(["model", "list", "--registry", str(registry)])

    (line,) = capsys.readouterr().err.splitlines()
    assert code == 1
    assert line.startswith("btcpred: error: ")
    assert "metadata.json" in line


def test_an_s3_failure_other_than_a_missing_key_is_a_registry_error() -> None:
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        registry = open_registry("s3://no-such-bucket/models", client)
        with pytest.raises(RegistryError) as caught:
            registry.current("btcpred-mlp")
        cause = caught.value.__cause__
        assert isinstance(cause, client.exceptions.NoSuchBucket)


def test_an_unreachable_s3_endpoint_is_a_registry_error_and_the_served_model_stays() -> None:
    from botocore.config import Config

    from btcpred.inference.reload import ModelSource
    from btcpred.model.runtime import OnnxModel

    shipped = Path(__file__).resolve().parents[2] / "models" / "btcpred-mlp" / "1.0.0"
    served = OnnxModel.load(shipped)
    client = boto3.client(
        "s3",
        region_name="eu-west-1",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - a dummy credential for a dead endpoint
        config=Config(connect_timeout=0.5, retries={"max_attempts": 1}),
    )
    source = ModelSource("s3://models/models", "btcpred-mlp", client)
    outcome = source.check(served)
    assert outcome.model is None
    assert outcome.rejected is not None, "refused and reported, the invocation goes on"
