"""The batch driver: history through the same :class:`FeatureEngine` the aggregator streams.

Two sources: finished 1-minute klines (one snapshot per bar close) and recorded trades (and
quotes), snapshotted at every UTC minute close they pass. Both yield
:class:`~btcpred.features.snapshot.FeatureSnapshot` values; :func:`write_csv` writes them in the
``btcpred features`` CSV form: ``timestamp`` (ms, the bar's close time) and the twelve features,
empty where a feature has no value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TextIO

from btcpred.events import BestBidAsk, Event, Trade
from btcpred.features.engine import FeatureEngine
from btcpred.features.snapshot import FeatureSnapshot
from btcpred.features.spec import FEATURE_NAMES
from btcpred.klines import Kline

__all__ = ["CSV_HEADER", "snapshots_from_events", "snapshots_from_klines", "write_csv"]

CSV_HEADER = ("timestamp", *FEATURE_NAMES)


def snapshots_from_klines(
    klines: Iterable[Kline], engine: FeatureEngine
) -> Iterator[FeatureSnapshot]:
    """Feed finished 1-minute bars; yield the snapshot at each bar's close.

    A bar that is not newer than the engine's time is skipped (no snapshot).
    """
    for kline in klines:
        if engine.add_kline(kline):
            yield engine.snapshot()


def snapshots_from_events(
    events: Iterable[Event], engine: FeatureEngine, bar_ms: int = 60_000
) -> Iterator[FeatureSnapshot]:
    """Stream trades and quotes; yield a snapshot at the close of every bar the stream passes.

    The snapshot for a bar is taken at its last microsecond, before the first event of a later
    bar is applied, so it sees exactly the events up to that close. The bar still forming when
    the events end yields nothing. Depth events do not enter the features and are ignored.
    """
    bar_us = bar_ms * 1000
    next_close_us: int | None = None
    for event in events:
        if isinstance(event, Trade):
            time_us = event.transact_time_us
        elif isinstance(event, BestBidAsk):
            time_us = event.event_time_us
        else:
            continue
        if next_close_us is None:
            next_close_us = (time_us // bar_us + 1) * bar_us - 1
        while time_us > next_close_us:
            yield engine.snapshot(next_close_us)
            next_close_us += bar_us
        if isinstance(event, Trade):
            engine.on_trade(event)
        else:
            engine.on_quote(event)


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


def write_csv(snapshots: Iterable[FeatureSnapshot], out: TextIO) -> Iterator[int]:
    """Write the header and one row per snapshot; yield the running row count per row."""
    out.write(",".join(CSV_HEADER) + "\n")
    for rows, snap in enumerate(snapshots, 1):
        out.write(f"{snap.timestamp}," + ",".join(_cell(v) for v in snap.values()) + "\n")
        yield rows
