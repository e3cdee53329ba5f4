"""The loader function's metrics (namespace ``btcpred``, dimension ``service=loader``), named
once for the handler, the stack's alarms and its dashboard."""

from __future__ import annotations

from typing import Final

__all__ = ["SERVICE", "UNITS"]

SERVICE: Final = "loader"

UNITS: Final = {
    "LoaderObjects": "Count",
    "LoaderRows": "Count",
    "LoaderSkipped": "Count",
    "LoaderRejected": "Count",
    "LoaderDurationMs": "Milliseconds",
}
"""Objects loaded, rows written, objects already loaded (a redelivery: nothing written),
objects rejected as malformed (nothing written), and the time per object."""
