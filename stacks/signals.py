"""Every metric the dashboard and the alarms read, named once.

Application metrics are CloudWatch EMF output: namespace ``btcpred`` and exactly one dimension,
``service`` (``inference``, ``aggregator``, ``poller`` or ``loader``, the functions' Powertools
``Metrics``, or ``ingestor``, the Fargate task's stdout every 10 s); no metric carries a
``symbol`` dimension, so every application series sums or aggregates over the symbols. The names
are those ``btcpred.inference.tickmetrics``, ``btcpred.inference.service`` and
``lambdas/aggregator/handler.py`` emit (docs/inference.md, docs/aggregator.md), and the
tables of the ingestor (:data:`INGESTOR_METRICS`), the poller (:data:`POLLER_METRICS`) and the
loader (:data:`LOADER_METRICS`), which their code emits from.

AWS metrics use each service's own dimensions: ``FunctionName`` (Lambda), ``StreamName``
(Kinesis), ``QueueName`` (SQS), ``DBInstanceIdentifier`` (RDS), ``clusterId`` (ElastiCache
Serverless: lower-case ``c``, the cache's name; ``CacheClusterId`` is the node-based caches'
dimension and finds nothing for a serverless cache) and ``ApiId`` + ``Stage`` (API Gateway, both
the WebSocket and the HTTP API), and ``ClusterName`` + ``ServiceName`` (Container Insights'
``ECS/ContainerInsights`` service metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sqs as sqs

from btcpred.history.metrics import SERVICE as LOADER_SERVICE
from btcpred.history.metrics import UNITS as LOADER_UNITS
from btcpred.ingest.metrics import UNITS as INGESTOR_UNITS
from btcpred.poller.metrics import SERVICE as POLLER_SERVICE
from btcpred.poller.metrics import UNITS as POLLER_UNITS

__all__ = [
    "AGGREGATOR",
    "FUNCTION_KEYS",
    "INFERENCE",
    "INGESTOR",
    "INGESTOR_METRICS",
    "LOADER",
    "LOADER_METRICS",
    "MINUTE",
    "NAMESPACE",
    "POLLER",
    "POLLER_METRICS",
    "MonitoredResources",
    "Signals",
]

NAMESPACE: Final = "btcpred"
"""The EMF namespace of both instrumented functions (``Metrics(namespace="btcpred")``)."""
INFERENCE: Final = "inference"
"""The ``service`` dimension of the inference function's metrics."""
AGGREGATOR: Final = "aggregator"
"""The ``service`` dimension of the aggregator's metrics."""
INGESTOR: Final = "ingestor"
"""The ``service`` dimension of the ingestor's metrics."""
INGESTOR_METRICS: Final[Mapping[str, str]] = INGESTOR_UNITS
"""What ``btcpred ingest`` emits (name: unit), from the ingestor's own table
(:data:`btcpred.ingest.metrics.UNITS`): ``PutFailedEntries`` are entries Kinesis rejected and the
ingestor resent, ``PutErrors`` whole calls that raised, ``GapEvents`` the ids inside gap ranges,
``BufferFillPercent`` the fill when the interval's line is written, ``ExchangeLagMs`` the
interval's worst exchange event time → put acknowledgement."""
POLLER: Final = POLLER_SERVICE
"""The ``service`` dimension of the poller's metrics."""
POLLER_METRICS: Final[Mapping[str, str]] = POLLER_UNITS
"""What the poller emits (name: unit), its own table (:data:`btcpred.poller.metrics.UNITS`):
``PriceDivergenceBps`` only while stream features exist, ``PollerRateLimited`` for a poll refused
or held back by Binance's ``Retry-After``."""
LOADER: Final = LOADER_SERVICE
"""The ``service`` dimension of the loader's metrics."""
LOADER_METRICS: Final[Mapping[str, str]] = LOADER_UNITS
"""What the loader emits (name: unit), its own table (:data:`btcpred.history.metrics.UNITS`):
``LoaderSkipped`` objects already loaded (a redelivery), ``LoaderRejected`` malformed ones."""
FUNCTION_KEYS: Final = ("aggregator", "inference", "api", "websocket", "poller", "loader")
"""The functions the monitoring expects, by the keys of :attr:`MonitoredResources.functions`."""
MINUTE: Final = Duration.minutes(1)


@dataclass(frozen=True)
class MonitoredResources:
    """What the monitoring watches (the stack builds these and hands them over).

    Attributes
    ----------
    functions
        The six functions, keyed as :data:`FUNCTION_KEYS`.
    stream
        The Kinesis stream the ingestor writes and the aggregator reads.
    dlq
        The aggregator's on-failure destination (records it gave up on).
    cache_name
        The ElastiCache Serverless cache's name (its metrics' ``clusterId``).
    database
        The RDS PostgreSQL instance.
    websocket_api_id, websocket_stage
        The WebSocket API and its stage.
    http_api_id, http_stage
        The HTTP API and its stage (``$default``).
    ingestor_cluster_name, ingestor_service_name
        The ingestor's ECS cluster and service (Container Insights' dimensions).
    loader_queue, loader_dlq
        The queue the raw-history bucket notifies and the loader reads, and its dead-letter
        queue.
    """

    functions: Mapping[str, lambda_.IFunction]
    stream: kinesis.IStream
    dlq: sqs.IQueue
    cache_name: str
    database: rds.IDatabaseInstance
    websocket_api_id: str
    websocket_stage: str
    http_api_id: str
    http_stage: str
    ingestor_cluster_name: str
    ingestor_service_name: str
    loader_queue: sqs.IQueue
    loader_dlq: sqs.IQueue

    def __post_init__(self) -> None:
        if set(self.functions) != set(FUNCTION_KEYS):
            raise ValueError(
                f"functions: expected keys {', '.join(FUNCTION_KEYS)}, got {sorted(self.functions)}"
            )


class Signals:
    """Metric factories over :class:`MonitoredResources`.

    Every factory takes the metric's name, the statistic and the period; ``label`` names the
    line on a graph (default: the metric's name).

    Parameters
    ----------
    resources
        What is watched.
    """

    def __init__(self, resources: MonitoredResources) -> None:
        self.resources = resources

    def inference(
        self, name: str, statistic: str = "Sum", period: Duration = MINUTE, label: str | None = None
    ) -> cw.Metric:
        """A metric the inference function emits (EMF, ``service=inference``)."""
        return _emf(INFERENCE, name, statistic, period, label)

    def aggregator(
        self, name: str, statistic: str = "Sum", period: Duration = MINUTE, label: str | None = None
    ) -> cw.Metric:
        """A metric the aggregator emits (EMF, ``service=aggregator``)."""
        return _emf(AGGREGATOR, name, statistic, period, label)

    def ingestor(
        self, name: str, statistic: str = "Sum", period: Duration = MINUTE, label: str | None = None
    ) -> cw.Metric:
        """A metric the ingestor emits (EMF, ``service=ingestor``; one of
        :data:`INGESTOR_METRICS`)."""
        if name not in INGESTOR_METRICS:
            raise ValueError(f"{name}: the ingestor emits no such metric")
        return _emf(INGESTOR, name, statistic, period, label)

    def poller(
        self, name: str, statistic: str = "Sum", period: Duration = MINUTE, label: str | None = None
    ) -> cw.Metric:
        """A metric the poller emits (EMF, ``service=poller``; one of :data:`POLLER_METRICS`)."""
        if name not in POLLER_METRICS:
            raise ValueError(f"{name}: the poller emits no such metric")
        return _emf(POLLER, name, statistic, period, label)

    def loader(
        self, name: str, statistic: str = "Sum", period: Duration = MINUTE, label: str | None = None
    ) -> cw.Metric:
        """A metric the loader emits (EMF, ``service=loader``; one of :data:`LOADER_METRICS`)."""
        if name not in LOADER_METRICS:
            raise ValueError(f"{name}: the loader emits no such metric")
        return _emf(LOADER, name, statistic, period, label)

    def loader_queue(
        self,
        name: str,
        statistic: str = "Maximum",
        period: Duration = MINUTE,
        label: str | None = None,
        *,
        dead_letters: bool = False,
    ) -> cw.Metric:
        """An ``AWS/SQS`` metric of the loader's queue, or with ``dead_letters`` of its DLQ."""
        r = self.resources
        queue = r.loader_dlq if dead_letters else r.loader_queue
        return queue.metric(name, statistic=statistic, period=period, label=label)

    def ingestor_tasks(
        self,
        name: str = "RunningTaskCount",
        statistic: str = "Maximum",
        period: Duration = MINUTE,
        label: str | None = None,
    ) -> cw.Metric:
        """An ``ECS/ContainerInsights`` metric of the ingestor's service (``ClusterName``,
        ``ServiceName``)."""
        r = self.resources
        return cw.Metric(
            namespace="ECS/ContainerInsights",
            metric_name=name,
            dimensions_map={
                "ClusterName": r.ingestor_cluster_name,
                "ServiceName": r.ingestor_service_name,
            },
            statistic=statistic,
            period=period,
            label=label,
        )

    def ingest_put_failures(self, period: Duration) -> cw.MathExpression:
        """``PutErrors + PutFailedEntries``: failed calls and rejected entries (both resent).

        A period without a value of one of them counts it as 0."""
        return cw.MathExpression(
            expression="FILL(errors, 0) + FILL(rejected, 0)",
            using_metrics={
                "errors": self.ingestor("PutErrors", "Sum", period),
                "rejected": self.ingestor("PutFailedEntries", "Sum", period),
            },
            label="failed puts and rejected entries",
            period=period,
        )

    def function(
        self,
        key: str,
        name: str,
        statistic: str = "Sum",
        period: Duration = MINUTE,
        label: str | None = None,
    ) -> cw.Metric:
        """An ``AWS/Lambda`` metric of one function (``FunctionName``)."""
        fn = self.resources.functions[key]
        return fn.metric(name, statistic=statistic, period=period, label=label or key)

    def stream(
        self, name: str, statistic: str = "Sum", period: Duration = MINUTE, label: str | None = None
    ) -> cw.Metric:
        """An ``AWS/Kinesis`` stream-level metric (``StreamName``)."""
        return self.resources.stream.metric(name, statistic=statistic, period=period, label=label)

    def dlq(
        self,
        name: str,
        statistic: str = "Maximum",
        period: Duration = MINUTE,
        label: str | None = None,
    ) -> cw.Metric:
        """An ``AWS/SQS`` metric of the aggregator's dead-letter queue (``QueueName``)."""
        return self.resources.dlq.metric(name, statistic=statistic, period=period, label=label)

    def cache(
        self, name: str, statistic: str = "Sum", period: Duration = MINUTE, label: str | None = None
    ) -> cw.Metric:
        """An ``AWS/ElastiCache`` metric of the serverless cache (``clusterId``)."""
        return cw.Metric(
            namespace="AWS/ElastiCache",
            metric_name=name,
            dimensions_map={"clusterId": self.resources.cache_name},
            statistic=statistic,
            period=period,
            label=label,
        )

    def database(
        self,
        name: str,
        statistic: str = "Average",
        period: Duration = MINUTE,
        label: str | None = None,
    ) -> cw.Metric:
        """An ``AWS/RDS`` metric of the instance (``DBInstanceIdentifier``)."""
        return self.resources.database.metric(name, statistic=statistic, period=period, label=label)

    def websocket(
        self, name: str, statistic: str = "Sum", period: Duration = MINUTE, label: str | None = None
    ) -> cw.Metric:
        """An ``AWS/ApiGateway`` metric of the WebSocket API's stage (``ApiId``, ``Stage``)."""
        r = self.resources
        return _api(r.websocket_api_id, r.websocket_stage, name, statistic, period, label)

    def http(
        self, name: str, statistic: str = "Sum", period: Duration = MINUTE, label: str | None = None
    ) -> cw.Metric:
        """An ``AWS/ApiGateway`` metric of the HTTP API's stage (``ApiId``, ``Stage``)."""
        r = self.resources
        return _api(r.http_api_id, r.http_stage, name, statistic, period, label)

    def fallback_share(self, period: Duration, scale: float = 1.0) -> cw.MathExpression:
        """``PredictionsFromFallback / Predictions`` times ``scale`` (100 for a percentage).

        A period without any fallback has no ``PredictionsFromFallback`` data point (the
        metric is only emitted for a fallback prediction), so it is filled with 0; a period
        without predictions has no value at all. The expression's ids end in the period's
        minutes, so one graph can show two periods.
        """
        m = f"{period.to_minutes():g}"
        share = f"FILL(fallback{m}, 0) / predictions{m}"
        return cw.MathExpression(
            expression=share if scale == 1 else f"{scale:g} * {share}",
            using_metrics={
                f"fallback{m}": self.inference("PredictionsFromFallback", "Sum", period),
                f"predictions{m}": self.inference("Predictions", "Sum", period),
            },
            label=f"fallback share over {m} min" + (" (%)" if scale == 100 else ""),
            period=period,
        )

    def error_ratio(self, period: Duration, min_samples: int = 0) -> cw.MathExpression:
        """Mean ``AbsError`` over mean ``NaiveAbsError`` (above 1: worse than the random walk).

        With ``min_samples`` the ratio is 0 (judged fine) while fewer predictions than that
        were scored in the period: a handful of scores says nothing about the model.
        """
        ratio = "model / naive"
        expression = f"IF(scored >= {min_samples}, {ratio}, 0)" if min_samples else ratio
        using = {
            "model": self.inference("AbsError", "Average", period),
            "naive": self.inference("NaiveAbsError", "Average", period),
        }
        if min_samples:
            using["scored"] = self.inference("AbsError", "SampleCount", period)
        return cw.MathExpression(
            expression=expression,
            using_metrics=using,
            label="model MAE / random-walk MAE",
            period=period,
        )

    def ecpu_per_second(self, period: Duration = MINUTE) -> cw.MathExpression:
        """ElastiCache processing units consumed per second (the cache's limit is per second)."""
        return cw.MathExpression(
            expression="ecpu / PERIOD(ecpu)",
            using_metrics={"ecpu": self.cache("ElastiCacheProcessingUnits", "Sum", period)},
            label="ECPU per second",
            period=period,
        )


def _emf(service: str, name: str, statistic: str, period: Duration, label: str | None) -> cw.Metric:
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service},
        statistic=statistic,
        period=period,
        label=label,
    )


def _api(
    api_id: str, stage: str, name: str, statistic: str, period: Duration, label: str | None
) -> cw.Metric:
    return cw.Metric(
        namespace="AWS/ApiGateway",
        metric_name=name,
        dimensions_map={"ApiId": api_id, "Stage": stage},
        statistic=statistic,
        period=period,
        label=label,
    )
