"""Serving a model: one warm onnxruntime session and the metadata that explains it.

:class:`OnnxModel` is what evaluation, the benchmark, the local replay and (issue 5) the
inference Lambda use. The session runs one intra-op thread, sequentially: a single-row MLP is
faster without thread hand-offs, and a Lambda has few vCPUs to share.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from btcpred.features import FEATURE_NAMES, spec_hash
from btcpred.model.metadata import MODEL_FILE, ModelFormatError, ModelMetadata, read_metadata

__all__ = ["MissingFeatureError", "ModelOutputs", "OnnxModel", "Prediction"]


class MissingFeatureError(ValueError):
    """A feature the model uses has no value (masked features may be missing)."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """One prediction from one feature point (or window)."""

    log_return: float
    predicted_price: float
    estimated_log_abs_error: float
    confidence: float
    """Calibrated 0..1, before serving penalties."""


@dataclass(frozen=True, slots=True)
class ModelOutputs:
    """The graph's three outputs for ``n`` samples (1-D arrays)."""

    log_return: npt.NDArray[np.float64]
    log_abs_error: npt.NDArray[np.float64]
    linear_log_return: npt.NDArray[np.float64]


class OnnxModel:
    """A loaded model: session + metadata. Build with :meth:`load` or :meth:`from_bytes`."""

    def __init__(
        self, session: ort.InferenceSession, metadata: ModelMetadata, raw_onnx: bytes
    ) -> None:
        self.session = session
        self.raw_onnx = raw_onnx
        self.metadata = metadata
        self._input = metadata.input_name
        self._masked = frozenset(metadata.masked_features)
        self._row = np.zeros((1, metadata.window, len(FEATURE_NAMES)), dtype=np.float32)

    @classmethod
    def from_bytes(
        cls, onnx: bytes, metadata: ModelMetadata, *, check_spec: bool = True
    ) -> OnnxModel:
        """Open a session on ``onnx`` after checking it against ``metadata``.

        Raises
        ------
        ModelFormatError
            The bytes are not the metadata's model, the feature spec differs from this
            engine's, or onnxruntime cannot load the graph.
        """
        digest = "sha256:" + hashlib.sha256(onnx).hexdigest()
        if digest != metadata.onnx_sha256:
            raise ModelFormatError(f"model.onnx is not the one metadata.json describes ({digest})")
        if tuple(metadata.feature_order) != FEATURE_NAMES:
            raise ModelFormatError("model feature order differs from this feature engine's")
        if check_spec and metadata.feature_spec_hash != spec_hash():
            raise ModelFormatError(
                f"model was trained on feature spec {metadata.feature_spec_hash}, "
                f"this engine computes {spec_hash()}"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(
                onnx, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelFormatError(f"onnxruntime cannot load model.onnx: {exc}") from None
        return cls(session, metadata, onnx)

    @classmethod
    def load(cls, directory: Path, *, check_spec: bool = True) -> OnnxModel:
        """Load ``model.onnx`` and ``metadata.json`` from a model version directory."""
        metadata = read_metadata(directory)
        try:
            onnx = (directory / MODEL_FILE).read_bytes()
        except OSError as exc:
            raise ModelFormatError(f"cannot read {directory / MODEL_FILE}: {exc}") from None
        return cls.from_bytes(onnx, metadata, check_spec=check_spec)

    @property
    def version(self) -> str:
        """``name/version``."""
        return f"{self.metadata.name}/{self.metadata.version}"

    def run(self, features: npt.NDArray[np.floating]) -> ModelOutputs:
        """All three outputs for ``[n, window, 12]`` raw features."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        ret, err, lin = self.session.run(None, {self._input: x})
        return ModelOutputs(
            log_return=ret[:, 0].astype(np.float64),
            log_abs_error=err[:, 0].astype(np.float64),
            linear_log_return=lin[:, 0].astype(np.float64),
        )

    def predict(self, points: Sequence[Sequence[float | None]]) -> Prediction:
        """Predict from the newest ``window`` feature points (oldest first, 12 values each).

        Raises
        ------
        MissingFeatureError
            A feature the model uses is None or not finite.
        """
        window = self.metadata.window
        if len(points) != window:
            raise ValueError(f"model needs {window} feature points, got {len(points)}")
        row = self._row
        for k, values in enumerate(points):
            for j, (name, value) in enumerate(zip(FEATURE_NAMES, values, strict=True)):
                if value is None or not math.isfinite(value):
                    if name not in self._masked:
                        raise MissingFeatureError(f"feature {name} has no value")
                    row[0, k, j] = math.nan
                else:
                    row[0, k, j] = value
        ret, err, _ = self.session.run(None, {self._input: row})
        log_return = float(ret[0, 0])
        log_err = float(err[0, 0])
        price = points[-1][0]
        if price is None:  # unreachable (price is never masked); keeps the type exact
            raise MissingFeatureError("feature price has no value")
        return Prediction(
            log_return=log_return,
            predicted_price=price * math.exp(log_return),
            estimated_log_abs_error=log_err,
            confidence=self.metadata.calibration(log_err),
        )
