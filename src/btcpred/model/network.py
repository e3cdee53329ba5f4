"""The PyTorch side of the model: preprocessing as a module, the seed's MLP, the exported graph.

Only training imports this module (``torch`` is the optional ``train`` extra); serving runs the
exported ONNX graph, which contains all of it, so the two cannot drift apart.

The graph takes the twelve raw features in :data:`~btcpred.features.FEATURE_NAMES` order, shaped
``[n, window, 12]`` (float32; masked features may be NaN) and returns three columns of
``[n, 1]``:

``log_return``
    the MLP's 60-second log return (predicted price = price · exp(log_return));
``log_abs_error``
    a linear model's estimate of log |realized − predicted log return|, the input of the
    confidence calibration;
``linear_log_return``
    the linear baseline (least squares on the same inputs), kept for evaluation.
"""

from __future__ import annotations

from typing import Final

import torch
from torch import nn

from btcpred.features import FEATURE_NAMES

__all__ = ["TRANSFORMS", "ExportedModel", "Mlp", "Preprocess"]

N_FEATURES: Final = len(FEATURE_NAMES)
CLIP: Final = 10.0
BOLLINGER_RANGE: Final = (-1.0, 2.0)

TRANSFORMS: Final[dict[str, str]] = {
    "price": "dropped: a price level is not scale-free (it is the base of vwap and macd_signal)",
    "volume": "log(1 + volume)",
    "vwap": "vwap / price - 1",
    "price_change_1m": "identity",
    "price_change_5m": "identity",
    "volume_avg_1m": "log(1 + volume_avg_1m)",
    "trade_intensity": "log(1 + trade_intensity)",
    "bid_ask_spread": "identity",
    "order_book_imbalance": "identity",
    "rsi_5m": "rsi_5m / 100",
    "macd_signal": "macd_signal / price",
    "bollinger_position": "clip(bollinger_position, -1, 2)",
}
"""Scale-free transform of each raw feature, before standardisation (written into metadata)."""


def transform(raw: torch.Tensor) -> torch.Tensor:
    """``[..., 12]`` raw features → ``[..., 12]`` scale-free values (see :data:`TRANSFORMS`)."""
    price = raw[..., 0]
    cols = [
        torch.zeros_like(price),
        torch.log(raw[..., 1] + 1.0),
        raw[..., 2] / price - 1.0,
        raw[..., 3],
        raw[..., 4],
        torch.log(raw[..., 5] + 1.0),
        torch.log(raw[..., 6] + 1.0),
        raw[..., 7],
        raw[..., 8],
        raw[..., 9] / 100.0,
        raw[..., 10] / price,
        torch.clamp(raw[..., 11], *BOLLINGER_RANGE),
    ]
    return torch.stack(cols, dim=-1)


class Preprocess(nn.Module):
    """Raw ``[n, window, 12]`` → standardised, clipped, masked ``[n, window·12]``."""

    mean: torch.Tensor
    std: torch.Tensor
    active: torch.Tensor

    def __init__(self, window: int, active: list[bool]) -> None:
        super().__init__()
        width = window * N_FEATURES
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.register_buffer("active", torch.tensor(active * window, dtype=torch.bool))

    def transformed(self, raw: torch.Tensor) -> torch.Tensor:
        """The scale-free values, flattened (before standardisation)."""
        return transform(raw).flatten(1)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        z = (self.transformed(raw) - self.mean) / self.std
        z = torch.clamp(z, -CLIP, CLIP)
        return torch.where(self.active, z, torch.zeros_like(z))


class Mlp(nn.Module):
    """The seed's network: inputs → 64 → 32 → 16 → 1, batch norm, ReLU, dropout 0.2."""

    def __init__(
        self, inputs: int, hidden: tuple[int, ...] = (64, 32, 16), dropout: float = 0.2
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = inputs
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(z)
        return out


class ExportedModel(nn.Module):
    """Preprocessing, MLP and the two linear heads: what ``model.onnx`` contains."""

    target_scale: torch.Tensor

    def __init__(self, preprocess: Preprocess, mlp: Mlp, target_scale: float) -> None:
        super().__init__()
        width = int(preprocess.mean.shape[0])
        self.preprocess = preprocess
        self.mlp = mlp
        self.register_buffer("target_scale", torch.tensor(target_scale))
        self.error_head = nn.Linear(width, 1)
        self.linear_head = nn.Linear(width, 1)

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.preprocess(raw)
        return self.mlp(z) * self.target_scale, self.error_head(z), self.linear_head(z)
