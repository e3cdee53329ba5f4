"""``metadata.json``: everything needed to serve, audit and compare a model.

It travels with ``model.onnx`` in the registry (``models/{name}/{version}/``). The serving side
checks ``feature_spec_hash`` against the feature engine's before it accepts a model, feeds the
graph the twelve raw features in ``feature_order`` (``masked_features`` are ignored by the graph
and may be NaN) and turns ``log_abs_error`` into a confidence with ``calibration``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import msgspec

from btcpred.model.calibration import Calibration

__all__ = [
    "FORMAT_VERSION",
    "Architecture",
    "Evaluation",
    "ModelFormatError",
    "ModelMetadata",
    "Preprocessing",
    "SplitRange",
    "TrainingRun",
    "read_metadata",
]

FORMAT_VERSION: Final = 1
METADATA_FILE: Final = "metadata.json"
MODEL_FILE: Final = "model.onnx"


class ModelFormatError(ValueError):
    """A model artifact or its metadata is missing, unreadable or inconsistent."""


class Architecture(msgspec.Struct, frozen=True, kw_only=True):
    """The network: ``inputs`` → ``hidden`` → 1, batch norm, ReLU, dropout."""

    kind: str
    """``mlp`` (one feature point) or ``mlp_sequence`` (``window`` points)."""
    inputs: int
    hidden: list[int]
    dropout: float
    batch_norm: bool = True
    activation: str = "relu"


class Preprocessing(msgspec.Struct, frozen=True, kw_only=True):
    """What the graph does to raw features before the network (all of it is inside the graph)."""

    transforms: dict[str, str]
    mean: list[float]
    std: list[float]
    clip: float
    active: list[bool]
    """Per input column (window · 12): False for masked and dropped features (set to 0)."""
    target: str
    target_scale: float


class Evaluation(msgspec.Struct, frozen=True, kw_only=True):
    """Errors on one set of samples; MAEs in price units (USDT)."""

    n: int
    model_mae: float
    naive_mae: float
    mae_ratio: float
    linear_mae: float
    direction_accuracy: float
    calibration_spearman: float


class SplitRange(msgspec.Struct, frozen=True, kw_only=True):
    """One time-ordered split: sample count and first/last sample time (ms, UTC)."""

    n: int
    first_ms: int
    last_ms: int


class TrainingRun(msgspec.Struct, frozen=True, kw_only=True):
    """Where the data came from and how the network was fitted."""

    source: str
    symbol: str
    samples: int
    dropped: dict[str, int]
    train: SplitRange
    validation: SplitRange
    test: SplitRange
    embargo_samples: int
    seed: int
    loss: str
    optimizer: str
    batch_size: int
    epochs_run: int
    best_epoch: int
    torch_version: str


class ModelMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """The contents of ``metadata.json``."""

    format_version: int = FORMAT_VERSION
    name: str
    version: str
    created_at: str
    architecture: Architecture
    feature_order: list[str]
    feature_spec_hash: str
    feature_schema_version: int
    window: int
    window_step_ms: int
    horizon_ms: int
    input_name: str
    output_names: list[str]
    preprocessing: Preprocessing
    masked_features: list[str]
    training: TrainingRun
    metrics: dict[str, Evaluation]
    """``validation`` and ``test`` (the held-back tail), computed with the exported graph."""
    calibration: Calibration
    onnx_sha256: str
    onnx_opset: int

    def to_json(self) -> bytes:
        """Pretty JSON for the file (humans read it)."""
        return msgspec.json.format(msgspec.json.encode(self), indent=2) + b"\n"


def parse_metadata(data: bytes, where: str = "metadata.json") -> ModelMetadata:
    """Decode and check a metadata document.

    Raises
    ------
    ModelFormatError
        Not JSON, wrong shape, a newer format, or inconsistent sizes.
    """
    try:
        meta = msgspec.json.decode(data, type=ModelMetadata)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ModelFormatError(f"{where}: {exc}") from None
    if meta.format_version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{where}: format_version {meta.format_version} is newer than this btcpred "
            f"reads ({FORMAT_VERSION})"
        )
    width = meta.window * len(meta.feature_order)
    pre = meta.preprocessing
    if not len(pre.mean) == len(pre.std) == len(pre.active) == width:
        raise ModelFormatError(f"{where}: preprocessing sizes do not match window × features")
    return meta


def read_metadata(directory: Path) -> ModelMetadata:
    """Read ``metadata.json`` from a model directory."""
    path = directory / METADATA_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_metadata(data, str(path))
