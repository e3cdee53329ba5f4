"""The overview dashboard: rows an operator reads top-down, from "are predictions going out"
to the services under them.

Each row is a section title and its graphs; every graph has a plain title and its unit on the
axis. Application series come from the functions' and the ingestor's EMF metrics (per minute
unless said), summed over the symbols (they carry no symbol dimension).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from stacks.alarms import RUNBOOK
from stacks.config import INFERENCE_MAX_FEATURE_AGE_MS, AlarmThresholds, EnvConfig
from stacks.dashboard_fallback import loader_row, poller_row
from stacks.dashboard_services import (
    apis_row,
    database_row,
    functions_row,
    graph,
    redis_row,
    stream_row,
)
from stacks.signals import Signals

__all__ = ["build_dashboard"]

_WIDTH: Final = 24  # a dashboard row's width in grid units
_FALLBACK_REASONS: Final = (
    "FallbackStaleFeatures",
    "FallbackRedisFeatures",
    "FallbackRest",
    "FallbackMissingFeatures",
    "FallbackLinearTrend",
    "SkippedPredictions",
)
_REDIS_AND_REST: Final = (
    "RedisUnavailable",
    "DirectRestMode",
    "RedisErrors",
    "RestErrors",
    "BadFeatureDocuments",
    "FutureFeatures",
)
_BATCH_PROBLEMS: Final = (
    "FailedGroups",
    "DecodeFailures",
    "MisroutedRecords",
    "ImplausibleEvents",
    "UnknownSymbolRecords",
    "TradeIdResets",
    "WarmupFailures",
    "WarmupSkipped",
)
_INGEST_TROUBLE: Final = (
    "Gaps",
    "GapEvents",
    "Reconnects",
    "ShedEvents",
    "MalformedFrames",
    "DepthResyncs",
)
_UPKEEP: Final = (
    "ModelReloads",
    "ModelReloadFailures",
    "HistoryWriteFailures",
    "UnscorablePredictions",
)


def build_dashboard(
    scope: Construct, *, config: EnvConfig, signals: Signals, alarms: Mapping[str, cw.IAlarm]
) -> cw.Dashboard:
    """The ``{prefix}-overview`` dashboard: what it shows, the alarms' states, then the rows."""
    dashboard = cw.Dashboard(
        scope,
        "Dashboard",
        dashboard_name=f"{config.prefix}-overview",
        default_interval=Duration.hours(3),
    )
    dashboard.add_widgets(_header(config))
    dashboard.add_widgets(
        cw.AlarmStatusWidget(
            title="Alarms (each one's description says what to do first)",
            alarms=list(alarms.values()),
            width=_WIDTH,
            height=6,
            sort_by=cw.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
        )
    )
    t = config.alarms
    for title, row in (
        ("Predictions going out", _predictions(signals, config)),
        ("Fallbacks: why a prediction did not use the stream's features", _fallbacks(signals, t)),
        ("Accuracy, scored 60 s after each prediction", _accuracy(signals, t)),
        ("Ticks, model and history", _upkeep(signals)),
        ("Ingestor: Binance to the stream (Fargate)", _ingestor(signals, t)),
        ("Aggregator: stream to features", _aggregator(signals, t)),
        ("Fallback poller: Binance REST to Redis, every minute", poller_row(signals, t)),
        ("History loader: S3 Avro to PostgreSQL (via SQS)", loader_row(signals)),
        ("Lambda functions", functions_row(signals)),
        ("Kinesis stream", stream_row(signals)),
        ("Redis (ElastiCache Serverless)", redis_row(signals, config)),
        ("Database (RDS PostgreSQL)", database_row(signals, t)),
        ("Clients: WebSocket and HTTP APIs", apis_row(signals)),
    ):
        dashboard.add_widgets(cw.TextWidget(markdown=f"### {title}", width=_WIDTH, height=1))
        dashboard.add_widgets(*row)
    return dashboard


def _header(config: EnvConfig) -> cw.TextWidget:
    symbols = ", ".join(config.symbols)
    markdown = (
        f"## btcpred {config.name}: is the predictor publishing, and is it any good?\n"
        f"A prediction for {symbols} every {config.prediction_interval_s:g} s. Read top-down: "
        "predictions going out and their latency, fallbacks, online accuracy against the "
        "random walk, then the pipeline under them (ingestor, aggregator, fallback poller, "
        "history loader, stream, Redis, database, functions) and the client APIs. Application "
        "series are the EMF metrics (namespace `btcpred`, dimension `service`), summed over "
        "symbols.\n\n"
        f"Every alarm pages the `{config.prefix}-alarms` topic; what each one means and what to "
        f"do first: **{RUNBOOK}** (in the repository)."
    )
    return cw.TextWidget(markdown=markdown, width=_WIDTH, height=4)


def _predictions(s: Signals, c: EnvConfig) -> list[cw.IWidget]:
    expected = 60 / c.prediction_interval_s * len(c.symbols)
    floor = c.alarms.min_predictions_per_5min * len(c.symbols) / 5
    age = c.alarms.max_feature_age_ms
    return [
        graph(
            "Predictions per minute",
            "predictions / min",
            [s.inference("Predictions", label="predictions")],
            lines=[(expected, "expected"), (floor, "stall alarm (per-minute average)")],
        ),
        graph(
            "Inference latency",
            "ms",
            [s.inference("InferenceLatency", p, label=p) for p in ("p50", "p95", "p99")],
            lines=[(c.alarms.max_inference_latency_p99_ms, "p99 alarm")],
        ),
        graph(
            "Feature age when predicted",
            "ms",
            [s.inference("FeatureAge", st, label=st) for st in ("p50", "p95", "Maximum")],
            lines=[(age, "p95 alarm"), (INFERENCE_MAX_FEATURE_AGE_MS, "fallback beyond")],
        ),
    ]


def _fallbacks(s: Signals, t: AlarmThresholds) -> list[cw.IWidget]:
    fifteen = Duration.minutes(15)
    return [
        graph(
            "Share of predictions from fallback features",
            "%",
            [
                s.fallback_share(Duration.minutes(1), scale=100),
                s.fallback_share(fifteen, scale=100),
            ],
            lines=[(t.max_fallback_share * 100, "alarm (15 min)")],
        ),
        graph(
            "Fallback reasons",
            "count / min",
            [s.inference(name, label=name) for name in _FALLBACK_REASONS],
        ),
        graph(
            "Redis and REST trouble seen by the predictor",
            "count / min",
            [s.inference(name, label=name) for name in _REDIS_AND_REST],
        ),
    ]


def _accuracy(s: Signals, t: AlarmThresholds) -> list[cw.IWidget]:
    hour = Duration.hours(1)
    bands = ("Low", "Mid", "High")
    return [
        graph(
            "Model error against the random walk (hourly)",
            "mean absolute error (USD)",
            [
                s.inference("AbsError", "Average", hour, label="model MAE"),
                s.inference("NaiveAbsError", "Average", hour, label="random-walk MAE"),
            ],
            right=[s.error_ratio(hour)],
            right_unit="ratio (above 1: worse)",
            right_lines=[(t.max_error_ratio_vs_random_walk, "alarm")],
            width=6,
        ),
        _hit_rate(s, hour),
        graph(
            "Confidence",
            "confidence (0-1)",
            [s.inference("Confidence", st, label=st) for st in ("Average", "p10", "p90")],
            width=6,
        ),
        graph(
            "Error by confidence band (hourly)",
            "mean absolute error (USD)",
            [s.inference(f"AbsError{b}Confidence", "Average", hour, label=b) for b in bands],
            width=6,
        ),
    ]


def _hit_rate(s: Signals, period: Duration) -> cw.GraphWidget:
    hit = cw.MathExpression(
        expression="100 * hit",
        using_metrics={"hit": s.inference("DirectionHit", "Average", period)},
        label="predicted move had the realized sign",
        period=period,
    )
    return graph("Direction hit rate (hourly)", "%", [hit], lines=[(50, "coin flip")], width=6)


def _upkeep(s: Signals) -> list[cw.IWidget]:
    return [
        graph(
            "Tick duration",
            "ms",
            [s.inference("TickDuration", p, label=p) for p in ("p50", "p99", "Maximum")],
            width=12,
        ),
        graph(
            "Model reloads, history writes, unscorable predictions",
            "count / min",
            [s.inference(name, label=name) for name in _UPKEEP],
            width=12,
        ),
    ]


def _ingestor(s: Signals, t: AlarmThresholds) -> list[cw.IWidget]:
    return [
        graph(
            "Frames, events and records",
            "count / min",
            [s.ingestor(n, label=n) for n in ("Frames", "Events", "Records")],
            right=[s.ingestor_tasks(label="running tasks")],
            right_unit="tasks",
            width=5,
        ),
        graph(
            "Exchange to Kinesis lag",
            "ms",
            [s.ingestor("ExchangeLagMs", st, label=st) for st in ("p50", "p99", "Maximum")],
            lines=[(t.max_ingest_lag_p99_ms, "p99 alarm")],
            width=5,
        ),
        graph(
            "Gaps, reconnects, shedding",
            "count / min",
            [s.ingestor(name, label=name) for name in _INGEST_TROUBLE],
            width=5,
        ),
        graph(
            "Puts to Kinesis",
            "count / min",
            [s.ingestor(n, label=n) for n in ("PutCalls", "PutFailedEntries", "PutErrors")],
            right=[s.ingestor("RecordBytes", label="record bytes")],
            right_unit="bytes / min",
            width=5,
        ),
        graph(
            "Buffer fill and connection age",
            "%",
            [s.ingestor("BufferFillPercent", "Maximum", label="buffer fill (max)")],
            right=[s.ingestor("ConnectionAgeS", "Maximum", label="connection age")],
            right_unit="s",
            width=4,
        ),
    ]


def _aggregator(s: Signals, t: AlarmThresholds) -> list[cw.IWidget]:
    return [
        graph(
            "Aggregator iterator age",
            "ms",
            [s.function("aggregator", "IteratorAge", "Maximum", label="maximum")],
            lines=[(t.max_iterator_age_ms, "alarm")],
            width=6,
        ),
        graph(
            "Batch problems",
            "count / min",
            [s.aggregator(name, label=name) for name in _BATCH_PROBLEMS],
            width=6,
        ),
        graph(
            "Event to feature lag and batch duration",
            "ms",
            [s.aggregator("EventToFeatureLag", st, label=f"lag {st}") for st in ("p50", "p95")]
            + [s.aggregator("BatchDuration", "p95", label="batch p95")],
            width=6,
        ),
        graph(
            "Aggregator dead-letter queue",
            "messages",
            [s.dlq("ApproximateNumberOfMessagesVisible", label="messages visible")],
            right=[s.dlq("ApproximateAgeOfOldestMessage", label="oldest message age")],
            right_unit="s",
            width=6,
        ),
    ]
