"""The invocation's loop: tick on the wall-clock grid until the time is nearly up, then close.

Ticks sit on multiples of the interval since the epoch, so consecutive invocations agree on
tick times. :func:`run_loop` starts with :meth:`InferenceService.begin` (nothing learnt in an
earlier invocation of a warm container is trusted) and always ends with
:meth:`InferenceService.close` (pending handover, lease release, history, broadcast stopped).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from btcpred.inference.service import InferenceService, TickReport

__all__ = ["LoopReport", "run_loop"]


@dataclass(frozen=True, slots=True)
class LoopReport:
    """A loop's ticks by role, and grid points missed because a tick ran late."""

    ticks: int
    active_ticks: int
    missed: int


def run_loop(
    service: InferenceService,
    *,
    clock_ms: Callable[[], int],
    deadline_ms: int,
    sleep: Callable[[float], None] = time.sleep,
    on_tick: Callable[[TickReport], None] | None = None,
) -> LoopReport:
    """Tick on the interval grid until the next tick would pass ``deadline_ms``, then close."""
    interval = service.interval_ms
    service.begin(clock_ms())
    next_ms = math.ceil(clock_ms() / interval) * interval
    ticks = active = missed = 0
    try:
        while next_ms <= deadline_ms:
            now = clock_ms()
            if now < next_ms:
                sleep((next_ms - now) / 1000)
                now = clock_ms()
            if now - next_ms >= interval:  # ran late: skip to the current grid point
                late = (now - next_ms) // interval
                missed += late
                next_ms += late * interval
            report = service.tick(now, deadline_ms, grid_ms=next_ms)
            ticks += 1
            active += report.role != "standby"
            if on_tick is not None:
                on_tick(report)
            service.housekeeping(clock_ms())
            next_ms += interval
    finally:
        service.close(clock_ms())
    return LoopReport(ticks=ticks, active_ticks=active, missed=missed)
