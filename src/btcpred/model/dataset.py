"""Training samples from history, through the feature engine's batch driver.

A sample is the feature point at time ``t`` (or, for sequence models, the ``window`` points at
``t − (window − 1)·step, …, t``) and its label: the log return from the price at ``t`` to the
price of the feature point at ``t + horizon``. Nothing here computes a feature; every value comes
from :class:`~btcpred.features.FeatureEngine` snapshots, so training sees exactly what serving
sees.

Sources:

* 1-minute klines (:func:`dataset_from_klines`): one point per bar close; the label of a bar is
  the next bar's close (``horizon`` = 60 s).
* recorded trades and quotes (:func:`dataset_from_events`): one point per ``step_ms`` of market
  time (default every second), labelled with the point 60 s later.
* any other iterable of snapshots (:func:`build_dataset`), e.g. PostgreSQL ``market_data`` once
  it exists.

A feature the source never provides (vwap and trade intensity from 6-column klines, spread and
imbalance from any klines) is *masked*: recorded in the model metadata and ignored in training
and in serving alike. A sample missing any other feature (still warming up, or after a gap) is
dropped and counted, never filled in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from btcpred.events import Event
from btcpred.features import FEATURE_NAMES, FeatureEngine, FeatureSnapshot
from btcpred.features.batch import snapshots_from_events, snapshots_from_klines
from btcpred.klines import Kline

__all__ = [
    "DEFAULT_HORIZON_MS",
    "Dataset",
    "DatasetError",
    "DropCounts",
    "build_dataset",
    "dataset_from_events",
    "dataset_from_klines",
]

DEFAULT_HORIZON_MS = 60_000
"""The seed's prediction horizon: 60 seconds."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class DatasetError(ValueError):
    """History that cannot make a dataset (empty, too short, unusable settings)."""


@dataclass(frozen=True)
class DropCounts:
    """Feature points that did not become samples, by reason."""

    not_warm: int = 0
    """A feature that is not masked had no value (warm-up, or indicators reset after a gap)."""
    no_label: int = 0
    """No feature point exactly ``horizon`` later (the end of the data, or a gap)."""
    incomplete_window: int = 0
    """A sequence model's earlier points are missing (the start of the data, or a gap)."""


@dataclass(frozen=True)
class Dataset:
    """Samples in time order.

    ``features[i, k, j]`` is feature ``FEATURE_NAMES[j]`` of the ``k``-th point of sample ``i``
    (the last point is the sample's own time); masked features are NaN.
    """

    symbol: str
    timestamps: IntArray
    """Sample time ``t``, ms since the epoch (the newest feature point's timestamp)."""
    features: FloatArray
    prices: FloatArray
    """Price at ``t``."""
    future_prices: FloatArray
    """Price at ``t + horizon_ms``."""
    horizon_ms: int
    window: int
    window_step_ms: int
    masked: tuple[str, ...]
    source: str
    drops: DropCounts = field(default_factory=DropCounts)

    @property
    def labels(self) -> FloatArray:
        """The target: ``log(future_price / price)``."""
        return np.log(self.future_prices / self.prices)

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    def take(self, index: slice | npt.NDArray[np.intp]) -> Dataset:
        """The samples at ``index`` (a slice or an index array), same settings."""
        return Dataset(
            symbol=self.symbol,
            timestamps=self.timestamps[index],
            features=self.features[index],
            prices=self.prices[index],
            future_prices=self.future_prices[index],
            horizon_ms=self.horizon_ms,
            window=self.window,
            window_step_ms=self.window_step_ms,
            masked=self.masked,
            source=self.source,
            drops=self.drops,
        )


def _point(snap: FeatureSnapshot) -> FloatArray:
    return np.array([math.nan if v is None else v for v in snap.values()], dtype=np.float64)


def _detect_masked(points: Sequence[FloatArray]) -> tuple[str, ...]:
    if not points:
        return ()
    seen = np.zeros(len(FEATURE_NAMES), dtype=bool)
    for values in points:
        seen |= ~np.isnan(values)
    return tuple(name for name, ok in zip(FEATURE_NAMES, seen, strict=True) if not ok)


def build_dataset(
    snapshots: Iterable[FeatureSnapshot],
    *,
    source: str,
    horizon_ms: int = DEFAULT_HORIZON_MS,
    window: int = 1,
    window_step_ms: int = 60_000,
    masked: Sequence[str] | None = None,
) -> Dataset:
    """Label feature points with the price ``horizon_ms`` later.

    Parameters
    ----------
    snapshots
        Feature points in time order (any spacing; labels and windows are looked up by exact
        timestamp, so gaps drop samples instead of mislabelling them).
    source
        What the history is, for the model metadata (file names, period).
    window, window_step_ms
        Points per sample and their spacing: 1 for the plain MLP, 5 (60 s apart) for the
        sequence variant.
    masked
        Features to ignore. ``None`` detects them: every feature the source never provides.
        Evaluation passes the model's own list so samples are chosen as in training.
    """
    if horizon_ms <= 0 or window < 1 or window_step_ms <= 0:
        raise DatasetError("horizon_ms, window and window_step_ms must be positive")
    times: list[int] = []
    points: list[FloatArray] = []
    symbol = ""
    for snap in snapshots:
        if times and snap.timestamp <= times[-1]:
            raise DatasetError(f"snapshots out of order at {snap.timestamp} ms")
        symbol = snap.symbol
        times.append(snap.timestamp)
        points.append(_point(snap))
    if not times:
        raise DatasetError(f"no feature points in {source}")
    unknown = set(masked or ()) - set(FEATURE_NAMES)
    if unknown:
        raise DatasetError(f"unknown masked features: {sorted(unknown)}")
    mask = tuple(masked) if masked is not None else _detect_masked(points)
    required = np.array([name not in mask for name in FEATURE_NAMES])
    if not required[0]:
        raise DatasetError("price cannot be masked: it is the base of the label")
    selected = _select(times, points, required, horizon_ms, window, window_step_ms)
    keep_t, keep_x, keep_p, keep_f, drops = selected
    return Dataset(
        symbol=symbol,
        timestamps=np.array(keep_t, dtype=np.int64),
        features=(np.stack(keep_x) if keep_x else np.empty((0, window, len(FEATURE_NAMES)))),
        prices=np.array(keep_p, dtype=np.float64),
        future_prices=np.array(keep_f, dtype=np.float64),
        horizon_ms=horizon_ms,
        window=window,
        window_step_ms=window_step_ms,
        masked=mask,
        source=source,
        drops=drops,
    )


def _select(
    times: list[int],
    points: list[FloatArray],
    required: npt.NDArray[np.bool_],
    horizon_ms: int,
    window: int,
    window_step_ms: int,
) -> tuple[list[int], list[FloatArray], list[float], list[float], DropCounts]:
    """The points that make complete samples, with their windows, prices and labels."""
    index = {t: i for i, t in enumerate(times)}
    keep_t: list[int] = []
    keep_x: list[FloatArray] = []
    keep_p: list[float] = []
    keep_f: list[float] = []
    not_warm = no_label = incomplete = 0
    for i, t in enumerate(times):
        rows = [index.get(t - k * window_step_ms) for k in range(window - 1, -1, -1)]
        ahead = index.get(t + horizon_ms)
        if np.isnan(points[i][required]).any():
            not_warm += 1
        elif ahead is None:
            no_label += 1
        elif any(r is None or np.isnan(points[r][required]).any() for r in rows):
            incomplete += 1
        else:
            sample = np.stack([points[r] for r in rows if r is not None])
            sample[:, ~required] = math.nan
            keep_t.append(t)
            keep_x.append(sample)
            keep_p.append(float(points[i][0]))
            keep_f.append(float(points[ahead][0]))
    drops = DropCounts(not_warm=not_warm, no_label=no_label, incomplete_window=incomplete)
    return keep_t, keep_x, keep_p, keep_f, drops


def dataset_from_klines(
    klines: Iterable[Kline],
    *,
    source: str,
    symbol: str = "BTCUSDT",
    window: int = 1,
    masked: Sequence[str] | None = None,
) -> Dataset:
    """Samples at every 1-minute bar close, labelled with the next bar's close."""
    snaps = snapshots_from_klines(klines, FeatureEngine(symbol))
    return build_dataset(snaps, source=source, window=window, window_step_ms=60_000, masked=masked)


def dataset_from_events(
    events: Iterable[Event],
    *,
    source: str,
    symbol: str = "BTCUSDT",
    step_ms: int = 1_000,
    window: int = 1,
    window_step_ms: int = 60_000,
    masked: Sequence[str] | None = None,
) -> Dataset:
    """Samples every ``step_ms`` of market time from recorded trades and quotes.

    The engine starts cold, so the indicators warm up inside the recording: an 11-minute capture
    yields no sample with every feature warm unless ``masked`` names the cold indicators.
    """
    if window_step_ms % step_ms:
        raise DatasetError("window_step_ms must be a multiple of step_ms")
    snaps = snapshots_from_events(events, FeatureEngine(symbol), bar_ms=step_ms)
    return build_dataset(
        snaps, source=source, window=window, window_step_ms=window_step_ms, masked=masked
    )
