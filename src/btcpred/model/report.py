"""``btcpred evaluate --report DIR``: three PNG plots and a short Markdown summary.

Needs matplotlib (in the ``train`` extra). Plots: predicted vs actual price over time, mean
absolute error by confidence decile (with the random walk's for the same samples), and the
histogram of residuals next to the random walk's.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from btcpred.model.evaluate import Scored
from btcpred.model.metadata import ModelMetadata

__all__ = ["write_report"]


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _decile_rows(scored: Scored) -> list[tuple[int, float, float, float]]:
    """Per confidence decile: (decile, mean confidence, model MAE, naive MAE)."""
    order = np.argsort(scored.confidence, kind="stable")
    rows = []
    for i, part in enumerate(np.array_split(order, 10), 1):
        if len(part) == 0:
            continue
        rows.append(
            (
                i,
                float(scored.confidence[part].mean()),
                float(np.abs(scored.predicted[part] - scored.actual[part]).mean()),
                float(np.abs(scored.prices[part] - scored.actual[part]).mean()),
            )
        )
    return rows


def write_report(scored: Scored, metadata: ModelMetadata, out: Path, source: str) -> list[Path]:
    """Write the plots and ``summary.md`` into ``out``; return the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    times = scored.timestamps.astype("datetime64[ms]")
    written: list[Path] = []

    fig, ax = plt.subplots(figsize=(11, 4))
    tail = slice(max(0, len(times) - 720), None)  # the last 12 hours at 1-minute samples
    ax.plot(times[tail], scored.actual[tail], label="actual price at t + 60 s", lw=1)
    ax.plot(times[tail], scored.predicted[tail], label="predicted", lw=1, alpha=0.8)
    ax.set_title("Predicted vs actual (last 720 samples)")
    ax.set_ylabel("USDT")
    ax.legend()
    fig.autofmt_xdate()
    written.append(out / "predicted_vs_actual.png")
    fig.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    rows = _decile_rows(scored)
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [str(r[0]) for r in rows]
    pos = np.arange(len(rows))
    ax.bar(pos - 0.2, [r[2] for r in rows], width=0.4, label="model MAE")
    ax.bar(pos + 0.2, [r[3] for r in rows], width=0.4, label="random walk MAE")
    ax.set_xticks(pos, labels)
    ax.set_xlabel("confidence decile (1 = lowest)")
    ax.set_ylabel("mean absolute error, USDT")
    ax.legend()
    written.append(out / "error_by_confidence.png")
    fig.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    resid = scored.actual - scored.predicted
    naive = scored.actual - scored.prices
    limit = float(np.quantile(np.abs(naive), 0.99)) or 1.0
    bins = np.linspace(-limit, limit, 81).tolist()
    ax.hist(naive, bins=bins, alpha=0.5, label="random walk")
    ax.hist(resid, bins=bins, alpha=0.5, label="model")
    ax.set_xlabel("actual − predicted, USDT (central 98 %)")
    ax.legend()
    written.append(out / "residuals.png")
    fig.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    ev = scored.evaluation
    lines = [
        f"# Evaluation of {metadata.name}/{metadata.version}",
        "",
        f"Data: {source}, {ev.n:,} samples from {_when(int(scored.timestamps[0]))} "
        f"to {_when(int(scored.timestamps[-1]))}.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| model MAE | {ev.model_mae:.3f} USDT |",
        f"| random walk MAE | {ev.naive_mae:.3f} USDT |",
        f"| MAE ratio (model / random walk) | {ev.mae_ratio:.5f} |",
        f"| linear baseline MAE | {ev.linear_mae:.3f} USDT |",
        f"| direction accuracy | {ev.direction_accuracy:.4f} |",
        f"| Spearman(confidence, abs error) | {ev.calibration_spearman:+.4f} |",
        "",
        f"On these samples the model {scored.verdict()}; MAE ratio {ev.mae_ratio:.5f}.",
        "",
        "| confidence decile | mean confidence | model MAE | random walk MAE |",
        "|---|---|---|---|",
        *(f"| {d} | {c:.3f} | {m:.3f} | {n:.3f} |" for d, c, m, n in rows),
        "",
        "Plots: predicted_vs_actual.png, error_by_confidence.png, residuals.png.",
    ]
    written.append(out / "summary.md")
    written[-1].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return written
