"""Benchmarks, run as ``btcpred bench <name> [--json]``; results go to ``docs/benchmarks.md``."""

from __future__ import annotations

import os

__all__ = ["pin_to_one_cpu"]


def pin_to_one_cpu() -> int | None:
    """Pin this process to one CPU (the benchmarks' targets are per core); return it."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu
