"""The dashboard rows of the issue-14 functions: the fallback poller (Binance REST to Redis) and
the history loader (S3 to PostgreSQL). Metric names come from their tables
(:data:`stacks.signals.POLLER_METRICS`, :data:`stacks.signals.LOADER_METRICS`)."""

from __future__ import annotations

from typing import Final

from aws_cdk import aws_cloudwatch as cw

from stacks.config import AlarmThresholds
from stacks.dashboard_services import graph
from stacks.signals import Signals

__all__ = ["loader_row", "poller_row"]

_POLLS: Final = ("PollerPolls", "PollerErrors", "PollerRateLimited", "PollerFallbackWrites")
_OBJECTS: Final = ("LoaderObjects", "LoaderSkipped", "LoaderRejected")


def poller_row(s: Signals, t: AlarmThresholds) -> list[cw.IWidget]:
    """Polls and their outcomes, the REST/stream price divergence, the stream features' age and
    the REST round trip."""
    return [
        graph("Polls, errors, rate limits", "count / min", [s.poller(n, label=n) for n in _POLLS]),
        graph(
            "Stream price vs REST price",
            "basis points",
            [s.poller("PriceDivergenceBps", st, label=st) for st in ("Average", "Maximum")],
            lines=[(t.max_price_divergence_bps, "alarm (max, 3 min)")],
        ),
        graph(
            "Stream feature age and REST latency",
            "ms",
            [
                s.poller("StreamFeatureAgeMs", st, label=f"feature age {st}")
                for st in ("p50", "Maximum")
            ]
            + [s.poller("PollerRestLatencyMs", "p99", label="REST p99")],
        ),
    ]


def loader_row(s: Signals) -> list[cw.IWidget]:
    """Objects and rows loaded, the time per object, the queue's backlog and the dead letters."""
    return [
        graph(
            "Objects loaded, skipped, rejected",
            "objects / min",
            [s.loader(n, label=n) for n in _OBJECTS],
            right=[s.loader("LoaderRows", label="rows")],
            right_unit="rows / min",
            width=6,
        ),
        graph(
            "Load duration per object",
            "ms",
            [s.loader("LoaderDurationMs", st, label=st) for st in ("p50", "p99", "Maximum")],
            width=6,
        ),
        graph(
            "Loader queue",
            "messages",
            [s.loader_queue("ApproximateNumberOfMessagesVisible", label="waiting")],
            right=[s.loader_queue("ApproximateAgeOfOldestMessage", label="oldest message age")],
            right_unit="s",
            width=6,
        ),
        graph(
            "Loader dead-letter queue",
            "messages",
            [
                s.loader_queue(
                    "ApproximateNumberOfMessagesVisible", label="messages", dead_letters=True
                )
            ],
            lines=[(1, "alarm")],
            width=6,
        ),
    ]
