"""Loading the served model from ``MODEL_PATH`` and replacing it when the registry moves on.

``MODEL_PATH`` names one of:

* a registry, ``s3://bucket/prefix`` or a local directory holding ``{name}/current.json``: the
  model named ``MODEL_NAME`` is served at its current version and watched for changes;
* a model's directory in a local registry (``{root}/{name}``, holding ``current.json``): that
  model, watched;
* a model version directory (holding ``metadata.json``): that model, never reloaded.

A new version is adopted only after it loads, matches its recorded sha256, was trained on this
engine's feature spec and gives finite outputs on a probe row; otherwise it is rejected (and
not retried until the pointer changes again) while the old model keeps serving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from btcpred.features import FEATURE_NAMES
from btcpred.model import ModelFormatError, OnnxModel, RegistryError, open_registry
from btcpred.model.metadata import METADATA_FILE
from btcpred.model.registry import CURRENT_FILE, ModelRegistry, S3Client

__all__ = ["ModelSource", "ModelValidationError", "ReloadOutcome", "probe"]

_PROBE: dict[str, float] = {
    "price": 60_000.0,
    "volume": 10.0,
    "vwap": 60_000.0,
    "price_change_1m": 0.0,
    "price_change_5m": 0.0,
    "volume_avg_1m": 10.0,
    "trade_intensity": 5.0,
    "bid_ask_spread": 1e-6,
    "order_book_imbalance": 0.0,
    "rsi_5m": 50.0,
    "macd_signal": 0.0,
    "bollinger_position": 0.5,
}


class ModelValidationError(ModelFormatError):
    """The model loads but its test inference is not finite."""


def probe(model: OnnxModel) -> None:
    """Run one neutral feature window through ``model``; raise if any output is not finite."""
    row = np.array([_PROBE[n] for n in FEATURE_NAMES], dtype=np.float32)
    x = np.tile(row, (1, model.metadata.window, 1))
    try:
        out = model.run(x)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelValidationError(f"{model.version}: test inference failed: {exc}") from None
    values = (out.log_return[0], out.log_abs_error[0], out.linear_log_return[0])
    if not all(math.isfinite(v) for v in values):
        raise ModelValidationError(f"{model.version}: test inference is not finite: {values}")


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """A check of the registry pointer: a new model, a rejection, or nothing new."""

    model: OnnxModel | None = None
    rejected: str | None = None
    """``name/version: reason`` when a new version was refused."""


class ModelSource:
    """Where the model comes from; see the module docstring."""

    def __init__(self, location: str, name: str, s3_client: S3Client | None = None) -> None:
        self.location = location
        self.name = name
        self.registry: ModelRegistry | None = None
        self.directory: Path | None = None
        local = Path(location.removeprefix("file://"))
        if not location.startswith("s3://") and (local / METADATA_FILE).is_file():
            self.directory = local
        elif not location.startswith("s3://") and (local / CURRENT_FILE).is_file():
            self.name = local.name  # a model's directory inside a registry: {root}/{name}
            self.registry = open_registry(str(local.parent))
        else:
            self.registry = open_registry(location, s3_client)
        self._rejected: tuple[str, str] | None = None

    @property
    def watched(self) -> bool:
        """Whether :meth:`check` can ever find a new model."""
        return self.registry is not None

    def load(self) -> OnnxModel:
        """The model to serve at cold start (validated like a reload).

        Raises
        ------
        ModelFormatError, RegistryError
            Nothing servable at ``MODEL_PATH``.
        """
        if self.registry is not None:
            model = self.registry.load(self.name)
        elif self.directory is not None:
            model = OnnxModel.load(self.directory)
        else:  # unreachable: __init__ sets one of the two
            raise RegistryError(f"MODEL_PATH {self.location!r} names no model")
        probe(model)
        return model

    def check(self, current: OnnxModel) -> ReloadOutcome:
        """Look at the pointer once; load and validate a new current version if there is one."""
        if self.registry is None:
            return ReloadOutcome()
        try:
            pointer = self.registry.current(self.name)
        except RegistryError as exc:
            return ReloadOutcome(rejected=f"{self.name}/current.json: {exc}")
        if pointer is None:
            return ReloadOutcome()
        key = (pointer.version, pointer.onnx_sha256)
        served = (current.metadata.version, current.metadata.onnx_sha256)
        if current.metadata.name == self.name and key == served:
            return ReloadOutcome()
        if key == self._rejected:
            return ReloadOutcome()
        try:
            model = self.registry.load(self.name, pointer.version)
            if model.metadata.onnx_sha256 != pointer.onnx_sha256:
                raise ModelFormatError("current.json names another model.onnx than is stored")
            probe(model)
        except (ModelFormatError, RegistryError, OSError) as exc:
            self._rejected = key
            return ReloadOutcome(rejected=f"{self.name}/{pointer.version}: {exc}")
        return ReloadOutcome(model=model)
