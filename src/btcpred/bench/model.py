"""``btcpred bench model``: single-row onnxruntime inference latency of a model.

``p50_us`` / ``p99_us`` time ``session.run`` on one prepared ``[1, window, 12]`` row (one
intra-op thread, after a warm-up), which is the cost the inference Lambda pays per prediction.
``predict_p99_us`` also includes :meth:`OnnxModel.predict`'s work around it (checking and copying
the twelve values, the calibration lookup). ``session_load_ms`` is the median time to open a
session from the artifact bytes, the cold-start cost.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from btcpred.model.metadata import ModelMetadata
from btcpred.model.runtime import OnnxModel

__all__ = ["ModelBenchResult", "run_model_bench"]


@dataclass(frozen=True)
class ModelBenchResult:
    """Latencies in microseconds (``session_load_ms`` in milliseconds)."""

    p50_us: float
    p99_us: float
    session_load_ms: float
    predict_p50_us: float
    predict_p99_us: float
    runs: int
    model_version: str

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return asdict(self)


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    data = np.array(samples_ns, dtype=np.float64) / 1000.0
    return round(float(np.percentile(data, 50)), 2), round(float(np.percentile(data, 99)), 2)


def run_model_bench(
    onnx: bytes,
    metadata: ModelMetadata,
    point: list[float | None],
    runs: int = 20_000,
    warmup: int = 2_000,
) -> ModelBenchResult:
    """Time ``runs`` single-row inferences of the model on one real feature point."""
    loads = []
    for _ in range(5):
        start = time.perf_counter_ns()
        model = OnnxModel.from_bytes(onnx, metadata)
        loads.append(time.perf_counter_ns() - start)
    points = [point] * metadata.window
    model.predict(points)
    row = np.array([[[np.nan if v is None else v for v in point]] * metadata.window], np.float32)
    feed = {metadata.input_name: row}
    run = model.session.run
    for _ in range(warmup):
        run(None, feed)
    clock = time.perf_counter_ns
    raw: list[int] = []
    for _ in range(runs):
        start = clock()
        run(None, feed)
        raw.append(clock() - start)
    full: list[int] = []
    for _ in range(runs):
        start = clock()
        model.predict(points)
        full.append(clock() - start)
    p50, p99 = _percentiles(raw)
    f50, f99 = _percentiles(full)
    return ModelBenchResult(
        p50_us=p50,
        p99_us=p99,
        session_load_ms=round(statistics.median(loads) / 1e6, 3),
        predict_p50_us=f50,
        predict_p99_us=f99,
        runs=runs,
        model_version=model.version,
    )
