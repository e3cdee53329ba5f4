"""A progress line for long work: done/total, rate and ETA, on a terminal or in a log."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts units of work (chunks) and rows; redraws one line on a terminal, or prints a
    line every ``log_every_s`` seconds otherwise (a CI log, a file)."""

    def __init__(
        self,
        total: int,
        *,
        label: str = "",
        unit: str = "chunks",
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_every_s: float = 5.0,
    ) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.done = self.rows = self.skipped = 0
        self._out = out if out is not None else sys.stderr
        self._clock = clock
        self._started = clock()
        self._last_line = -log_every_s
        self._every = log_every_s
        self._tty = bool(getattr(self._out, "isatty", lambda: False)())

    def eta_s(self) -> float | None:
        """Seconds left at the rate of the chunks fetched so far (skipped ones cost nothing)."""
        worked = self.done - self.skipped
        left = self.total - self.done
        if left == 0:
            return 0.0
        if worked <= 0:
            return None
        return (self._clock() - self._started) / worked * left

    def line(self) -> str:
        """The current progress line (``total == 0``: not known in advance, as for dump files
        read as they come: no bar, no ETA)."""
        if self.total == 0:
            return (
                f"{self.label}{self.done} {self.unit}, {self.rows:,} rows, "
                f"{self.skipped} already there, "
                f"elapsed {format_duration(self._clock() - self._started)}"
            )
        pct = 100.0 * self.done / self.total if self.total else 100.0
        width = 24
        filled = int(width * pct / 100)
        eta = self.eta_s()
        return (
            f"{self.label}[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"{self.unit} ({pct:.0f}%), {self.rows:,} rows, {self.skipped} already there, "
            f"elapsed {format_duration(self._clock() - self._started)}, "
            f"ETA {'?' if eta is None else format_duration(eta)}"
        )

    def advance(self, rows: int = 0, *, skipped: bool = False) -> None:
        """One more chunk done (``skipped``: it was already there)."""
        self.done += 1
        self.rows += rows
        self.skipped += skipped
        self.show()

    def show(self, force: bool = False) -> None:
        """Draw the line (on a terminal always; elsewhere at most every ``log_every_s``)."""
        now = self._clock()
        finished = 0 < self.total == self.done
        if self._tty:
            end = "\n" if finished else ""
            print(f"\r{self.line()}", end=end, file=self._out, flush=True)
        elif force or finished or now - self._last_line >= self._every:
            self._last_line = now
            print(self.line(), file=self._out, flush=True)

    def note(self, message: str) -> None:
        """A message on its own line (keeps the progress line intact on a terminal)."""
        prefix = "\n" if self._tty and 0 < self.done < self.total else ""
        print(f"{prefix}{message}", file=self._out, flush=True)
