"""Training: time-ordered split, seeded PyTorch fit with early stopping, ONNX export, metadata.

Needs the optional ``train`` extra (``pip install -e '.[train]'``; ``torch==2.13.0``). The
steps, all deterministic for a given seed and dataset:

1. split samples by time into train / validation / test (70 / 15 / 15 by default), dropping an
   embargo of samples between the parts so no label of one part overlaps the features of the
   next;
2. fit the standardisation on the training part only;
3. fit the MLP to the label / its training standard deviation (Huber loss, Adam), stopping when
   the validation MAE has not improved for ``patience`` epochs and keeping the best epoch;
4. fit the linear baseline and the error head by least squares on the training part;
5. calibrate the confidence on the validation part;
6. export one ONNX graph, check it against PyTorch on the test part (1e-5), and score the graph
   on validation and test against the naive and linear baselines.

The test part is only ever scored, never used to choose anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from btcpred.features import FEATURE_NAMES, SCHEMA_VERSION, spec_hash
from btcpred.model.calibration import fit_calibration
from btcpred.model.dataset import Dataset, DatasetError
from btcpred.model.evaluate import evaluate
from btcpred.model.metadata import (
    METADATA_FILE,
    MODEL_FILE,
    Architecture,
    ModelMetadata,
    Preprocessing,
    SplitRange,
    TrainingRun,
)
from btcpred.model.network import CLIP, TRANSFORMS, ExportedModel, Mlp, Preprocess
from btcpred.model.runtime import OnnxModel

__all__ = ["ExportParityError", "TrainConfig", "TrainedModel", "train", "write_model"]

OPSET = 17
PARITY_TOLERANCE = 1e-5
RIDGE = 10.0
"""L2 penalty of the linear heads, in units of squared standardised inputs (see _least_squares)."""
ERROR_FLOOR = 1e-6
"""Added to |error| before the log in the error head's target (0.01 basis points)."""

Progress = Callable[[str], None]


class ExportParityError(RuntimeError):
    """The exported graph's outputs differ from PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run (all recorded in the metadata)."""

    name: str = "btcpred-mlp"
    version: str | None = None
    """Default: the UTC time of the run, ``YYYYMMDDTHHMMSSZ``."""
    hidden: tuple[int, ...] = (64, 32, 16)
    dropout: float = 0.2
    batch_size: int = 512
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    max_epochs: int = 40
    patience: int = 5
    train_fraction: float = 0.70
    validation_fraction: float = 0.15
    seed: int = 20250818


@dataclass
class TrainedModel:
    """The artifact pair and what it scored."""

    onnx: bytes
    metadata: ModelMetadata
    network: ExportedModel
    """The PyTorch module that was exported (eval mode), for parity checks."""
    test_part: Dataset
    history: list[tuple[int, float, float]] = field(default_factory=list)
    """Per epoch: (epoch, training loss, validation MAE of the log return)."""


def _split(data: Dataset, config: TrainConfig) -> tuple[Dataset, Dataset, Dataset, int]:
    n = len(data)
    step = int(np.median(np.diff(data.timestamps))) if n > 1 else data.horizon_ms
    embargo = math.ceil(data.horizon_ms / max(step, 1)) + data.window - 1
    n_train = int(n * config.train_fraction)
    n_val = int(n * config.validation_fraction)
    val_start = n_train + embargo
    test_start = val_start + n_val + embargo
    if n_train < 8 or n_val < 2 or n - test_start < 2:
        raise DatasetError(
            f"{n} samples are too few to split into train/validation/test with an embargo of "
            f"{embargo} samples between parts; give more history"
        )
    parts = (
        data.take(slice(0, n_train)),
        data.take(slice(val_start, val_start + n_val)),
        data.take(slice(test_start, n)),
    )
    return (*parts, embargo)


def _tensor(a: npt.NDArray[np.floating]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _fit_scaler(pre: Preprocess, x: torch.Tensor) -> None:
    with torch.no_grad():
        t = pre.transformed(x).double()
        active = pre.active
        finite = torch.where(active, t, torch.zeros_like(t))
        mean = finite.mean(0)
        std = finite.std(0)
        std = torch.where(active & (std > 0), std, torch.ones_like(std))
        pre.mean.copy_(torch.where(active, mean, torch.zeros_like(mean)).float())
        pre.std.copy_(std.float())


def _fit_mlp(
    model: ExportedModel,
    train_xy: tuple[torch.Tensor, torch.Tensor],
    val_xy: tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig,
    progress: Progress,
) -> tuple[list[tuple[int, float, float]], int]:
    x, y = train_xy
    z = model.preprocess(x).detach()
    zv = model.preprocess(val_xy[0]).detach()
    scale = float(model.target_scale)
    target = y / scale
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(
        model.mlp.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loss_fn = nn.L1Loss()
    best = (math.inf, 0, {k: v.clone() for k, v in model.mlp.state_dict().items()})
    history: list[tuple[int, float, float]] = []
    for epoch in range(1, config.max_epochs + 1):
        model.mlp.train()
        order = torch.randperm(len(z), generator=generator)
        total = 0.0
        for start in range(0, len(z), config.batch_size):
            idx = order[start : start + config.batch_size]
            if len(idx) < 2:  # batch norm needs two rows
                continue
            optimizer.zero_grad()
            loss = loss_fn(model.mlp(z[idx])[:, 0], target[idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        model.mlp.eval()
        with torch.no_grad():
            val_mae = float((model.mlp(zv)[:, 0] * scale - val_xy[1]).abs().mean())
        history.append((epoch, total / len(z), val_mae))
        progress(f"epoch {epoch:3d}  train loss {total / len(z):.5f}  val MAE {val_mae:.3e}")
        if val_mae < best[0]:
            best = (val_mae, epoch, {k: v.clone() for k, v in model.mlp.state_dict().items()})
        elif epoch - best[1] >= config.patience:
            progress(f"early stop: no improvement since epoch {best[1]}")
            break
    model.mlp.load_state_dict(best[2])
    model.mlp.eval()
    return history, best[1]


def _least_squares(head: nn.Linear, z: torch.Tensor, target: torch.Tensor) -> None:
    """Fit ``head`` by ridge-regularised least squares (float64, unpenalised intercept).

    ``RIDGE`` per standardised input is negligible on months of data but keeps weights small
    on short histories and 60-input sequence models, where plain least squares overfits into
    large, cancelling weights that float32 inference cannot reproduce to 1e-5.
    """
    a = z.double().numpy()
    y = target.double().numpy()
    a_mean, y_mean = a.mean(0), float(y.mean())
    ac = a - a_mean
    gram = ac.T @ ac + RIDGE * np.eye(a.shape[1])
    coef = np.linalg.solve(gram, ac.T @ (y - y_mean))
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(coef[None, :]).float())
        head.bias.copy_(torch.tensor([y_mean - float(a_mean @ coef)], dtype=torch.float32))


def _export(model: ExportedModel, window: int) -> bytes:
    example = torch.zeros(1, window, len(FEATURE_NAMES))
    with tempfile.TemporaryDirectory(prefix="btcpred-export-") as tmp:
        path = Path(tmp) / MODEL_FILE
        _export_to(model, example, path)
        return path.read_bytes()


def _export_to(model: ExportedModel, example: torch.Tensor, path: Path) -> None:
    names = ("features", "log_return", "log_abs_error", "linear_log_return")
    with warnings.catch_warnings():
        # dynamo=False is the TorchScript exporter: it needs no onnxscript, and torch 2.13
        # warns on every call that it is deprecated, which is noise in a training log.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            path,
            input_names=[names[0]],
            output_names=list(names[1:]),
            dynamic_axes={name: {0: "n"} for name in names},
            opset_version=OPSET,
            dynamo=False,
        )


def _check_parity(model: ExportedModel, onnx_model: OnnxModel, x: torch.Tensor) -> float:
    with torch.no_grad():
        ref = [t[:, 0].double().numpy() for t in model(x)]
    got = onnx_model.run(x.numpy())
    scale = float(model.target_scale)
    diffs = [
        float(np.abs(got.log_return - ref[0]).max()) / scale,  # in the network's own units
        float(np.abs(got.log_abs_error - ref[1]).max()),
        float(np.abs(got.linear_log_return - ref[2]).max()),
    ]
    worst = max(diffs)
    if not worst <= PARITY_TOLERANCE:
        raise ExportParityError(f"ONNX differs from PyTorch by {worst:.2e} (> 1e-5)")
    return worst


def _range(part: Dataset) -> SplitRange:
    return SplitRange(
        n=len(part), first_ms=int(part.timestamps[0]), last_ms=int(part.timestamps[-1])
    )


def train(data: Dataset, config: TrainConfig, progress: Progress = lambda _: None) -> TrainedModel:
    """Train, export and score a model on ``data`` (see the module docstring)."""
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-for-bit reproducible; the network is tiny anyway
    try:
        return _train(data, config, progress)
    finally:
        torch.set_num_threads(threads)


def _train(data: Dataset, config: TrainConfig, progress: Progress) -> TrainedModel:
    train_part, val_part, test_part, embargo = _split(data, config)
    progress(
        f"samples: train {len(train_part):,}, validation {len(val_part):,}, "
        f"test {len(test_part):,} (embargo {embargo}); masked: {', '.join(data.masked) or 'none'}"
    )
    active = [name != "price" and name not in data.masked for name in FEATURE_NAMES]
    x, xv, xt = (_tensor(p.features) for p in (train_part, val_part, test_part))
    y, yv = _tensor(train_part.labels), _tensor(val_part.labels)
    pre = Preprocess(data.window, active)
    _fit_scaler(pre, x)
    width = data.window * len(FEATURE_NAMES)
    mlp = Mlp(width, config.hidden, config.dropout)
    model = ExportedModel(pre, mlp, target_scale=float(y.double().std()))
    history, best_epoch = _fit_mlp(model, (x, y), (xv, yv), config, progress)
    model.eval()
    with torch.no_grad():
        z = model.preprocess(x)
        residual = y - model.mlp(z)[:, 0] * model.target_scale
        _least_squares(model.linear_head, z, y)
        _least_squares(model.error_head, z, torch.log(residual.abs() + ERROR_FLOOR))
        zv = model.preprocess(xv)
        val_err = (yv - model.mlp(zv)[:, 0] * model.target_scale).abs().double().numpy()
        val_est = model.error_head(zv)[:, 0].double().numpy()
    calibration = fit_calibration(val_est, val_err)
    onnx = _export(model, data.window)
    version = config.version or dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    metadata = ModelMetadata(
        name=config.name,
        version=version,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        architecture=Architecture(
            kind="mlp" if data.window == 1 else "mlp_sequence",
            inputs=width,
            hidden=list(config.hidden),
            dropout=config.dropout,
        ),
        feature_order=list(FEATURE_NAMES),
        feature_spec_hash=spec_hash(),
        feature_schema_version=SCHEMA_VERSION,
        window=data.window,
        window_step_ms=data.window_step_ms,
        horizon_ms=data.horizon_ms,
        input_name="features",
        output_names=["log_return", "log_abs_error", "linear_log_return"],
        preprocessing=Preprocessing(
            transforms=dict(TRANSFORMS),
            mean=[float(v) for v in pre.mean],
            std=[float(v) for v in pre.std],
            clip=CLIP,
            active=[bool(v) for v in pre.active],
            target="log(price[t + horizon] / price[t])",
            target_scale=float(model.target_scale),
        ),
        masked_features=list(data.masked),
        training=TrainingRun(
            source=data.source,
            symbol=data.symbol,
            samples=len(data),
            dropped={
                "not_warm": data.drops.not_warm,
                "no_label": data.drops.no_label,
                "incomplete_window": data.drops.incomplete_window,
            },
            train=_range(train_part),
            validation=_range(val_part),
            test=_range(test_part),
            embargo_samples=embargo,
            seed=config.seed,
            loss="Huber(delta=1) on log return / its training std",
            optimizer=f"Adam(lr={config.learning_rate}, weight_decay={config.weight_decay})",
            batch_size=config.batch_size,
            epochs_run=len(history),
            best_epoch=best_epoch,
            torch_version=str(torch.__version__),
        ),
        metrics={},
        calibration=calibration,
        onnx_sha256="sha256:" + hashlib.sha256(onnx).hexdigest(),
        onnx_opset=OPSET,
    )
    served = OnnxModel.from_bytes(onnx, metadata)
    worst = _check_parity(model, served, xt)
    progress(f"export parity: max difference {worst:.1e} on {len(test_part):,} test samples")
    metrics = {
        "validation": evaluate(served, val_part).evaluation,
        "test": evaluate(served, test_part).evaluation,
    }
    metadata = msgspec.structs.replace(metadata, metrics=metrics)
    return TrainedModel(
        onnx=onnx, metadata=metadata, network=model, test_part=test_part, history=history
    )


def write_model(trained: TrainedModel, out: Path) -> Path:
    """Write ``model.onnx`` and ``metadata.json`` into ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_bytes(trained.onnx)
    (out / METADATA_FILE).write_bytes(trained.metadata.to_json())
    return out
