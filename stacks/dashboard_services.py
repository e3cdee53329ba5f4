"""The dashboard rows of the services under the application: Lambda, Kinesis, ElastiCache
Serverless, RDS and the two API Gateway APIs, and the :func:`graph` every row is made of."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aws_cdk import aws_cloudwatch as cw

from stacks.config import AlarmThresholds, EnvConfig
from stacks.signals import FUNCTION_KEYS, Signals

__all__ = ["apis_row", "database_row", "functions_row", "graph", "redis_row", "stream_row"]

_BROADCAST: Final = (
    "BroadcastSent",
    "BroadcastGone",
    "BroadcastFailed",
    "BroadcastTimedOut",
    "BroadcastSuperseded",
    "BroadcastAbandoned",
)


def graph(
    title: str,
    unit: str,
    left: Sequence[cw.IMetric],
    *,
    width: int = 8,
    right: Sequence[cw.IMetric] = (),
    right_unit: str = "",
    lines: Sequence[tuple[float, str]] = (),
    right_lines: Sequence[tuple[float, str]] = (),
) -> cw.GraphWidget:
    """A graph of ``left`` (and ``right``) metrics, 6 units high.

    Parameters
    ----------
    title
        What the graph shows, in plain words.
    unit
        The left axis' label (the metrics' unit as read, e.g. ``ms``, ``count / min``).
    left, right
        The metrics on each axis; ``right_unit`` labels the right one.
    width
        Grid units out of the row's 24.
    lines, right_lines
        Horizontal markers on the left (right) axis, ``(value, label)``: thresholds, limits.
    """
    return cw.GraphWidget(
        title=title,
        left=list(left),
        right=list(right),
        left_y_axis=cw.YAxisProps(label=unit, show_units=False, min=0),
        right_y_axis=cw.YAxisProps(label=right_unit, show_units=False, min=0) if right else None,
        left_annotations=[cw.HorizontalAnnotation(value=v, label=label) for v, label in lines],
        right_annotations=[
            cw.HorizontalAnnotation(value=v, label=label) for v, label in right_lines
        ],
        width=width,
        height=6,
    )


def functions_row(s: Signals) -> list[cw.IWidget]:
    """Errors, throttles, duration p95 and concurrent executions of each function."""

    def per_function(name: str, statistic: str) -> list[cw.IMetric]:
        return [s.function(key, name, statistic) for key in FUNCTION_KEYS]

    return [
        graph("Function errors", "errors / min", per_function("Errors", "Sum"), width=6),
        graph("Function throttles", "throttles / min", per_function("Throttles", "Sum"), width=6),
        graph("Function duration p95", "ms", per_function("Duration", "p95"), width=6),
        graph(
            "Concurrent executions",
            "executions",
            per_function("ConcurrentExecutions", "Maximum"),
            width=6,
        ),
    ]


def stream_row(s: Signals) -> list[cw.IWidget]:
    """The stream: records and bytes written, throttled writes, the read iterator age."""
    return [
        graph(
            "Records and bytes written",
            "records / min",
            [s.stream("IncomingRecords", label="records")],
            right=[s.stream("IncomingBytes", label="bytes")],
            right_unit="bytes / min",
        ),
        graph(
            "Writes refused for throughput",
            "count / min",
            [s.stream("WriteProvisionedThroughputExceeded", label="throttled writes")],
        ),
        graph(
            "Read iterator age",
            "ms",
            [s.stream("GetRecords.IteratorAgeMilliseconds", "Maximum", label="maximum")],
        ),
    ]


def redis_row(s: Signals, c: EnvConfig) -> list[cw.IWidget]:
    """The serverless cache: ECPU per second and data stored against the configured limits,
    request latency, throttled commands and connections."""
    latencies = [
        s.cache(f"Successful{kind}RequestLatency", st, label=f"{kind.lower()} {st}")
        for kind in ("Read", "Write")
        for st in ("Average", "Maximum")
    ]
    return [
        graph(
            "Processing units",
            "ECPU / s",
            [s.ecpu_per_second()],
            lines=[(c.cache_max_ecpu_per_second, "limit")],
            width=5,
        ),
        graph(
            "Data stored",
            "bytes",
            [s.cache("BytesUsedForCache", "Maximum", label="bytes used")],
            lines=[(c.cache_max_data_gb * 10**9, "limit")],
            width=5,
        ),
        graph("Request latency", "µs", latencies, width=5),
        graph(
            "Throttled commands and connections",
            "commands / min",
            [s.cache("ThrottledCmds", label="throttled")],
            right=[s.cache("CurrConnections", "Maximum", label="connections")],
            right_unit="connections",
            width=9,
        ),
    ]


def database_row(s: Signals, t: AlarmThresholds) -> list[cw.IWidget]:
    """The database: CPU, free storage, connections and freeable memory."""
    return [
        graph(
            "Database CPU",
            "%",
            [s.database("CPUUtilization", label="CPU")],
            lines=[(t.max_db_cpu_percent, "alarm (15 min)")],
            width=6,
        ),
        graph(
            "Database free storage",
            "bytes",
            [s.database("FreeStorageSpace", "Minimum", label="free")],
            lines=[(t.min_db_free_storage_gb * 1024**3, "alarm")],
            width=6,
        ),
        graph(
            "Database connections",
            "connections",
            [s.database("DatabaseConnections", "Maximum", label="connections")],
            width=6,
        ),
        graph(
            "Database freeable memory",
            "bytes",
            [s.database("FreeableMemory", "Minimum", label="freeable")],
            width=6,
        ),
    ]


def apis_row(s: Signals) -> list[cw.IWidget]:
    """The client side: WebSocket traffic and errors, the predictor's broadcasts, the HTTP
    API's requests, errors and latency."""
    return _websocket_graphs(s) + _http_graphs(s)


def _websocket_graphs(s: Signals) -> list[cw.IWidget]:
    return [
        graph(
            "WebSocket connects and messages",
            "count / min",
            [
                s.websocket("ConnectCount", label="connects"),
                s.websocket("MessageCount", label="messages"),
            ],
            width=5,
        ),
        graph(
            "WebSocket errors and integration latency",
            "count / min",
            [
                s.websocket(n, label=n)
                for n in ("ClientError", "ExecutionError", "IntegrationError")
            ],
            right=[s.websocket("IntegrationLatency", "p99", label="integration p99")],
            right_unit="ms",
            width=5,
        ),
        graph(
            "Predictions pushed to WebSocket clients",
            "deliveries / min",
            [s.inference(name, label=name) for name in _BROADCAST],
            right=[s.inference("BroadcastDuration", "p99", label="broadcast p99")],
            right_unit="ms",
            width=5,
        ),
    ]


def _http_graphs(s: Signals) -> list[cw.IWidget]:
    return [
        graph(
            "HTTP API requests and errors",
            "requests / min",
            [s.http(n, label=n) for n in ("Count", "4xx", "5xx")],
            width=4,
        ),
        graph(
            "HTTP API latency",
            "ms",
            [s.http("Latency", p, label=f"latency {p}") for p in ("p50", "p99")]
            + [s.http("IntegrationLatency", "p99", label="integration p99")],
            width=5,
        ),
    ]
