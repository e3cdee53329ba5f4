"""Facts about the running process that health documents report (light: stdlib only)."""

from __future__ import annotations

import os
import resource

__all__ = ["rss_mb"]


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
