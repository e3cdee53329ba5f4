"""Every metric the alarms and the dashboard read exists under exactly those names and dimensions.

Application metrics are checked against what the code really emits, not against the
monitoring's own strings: the aggregator's names from running its handler's ``_emit``, the
inference function's from the ``metrics.add("Name", "Unit", value)`` calls in
``btcpred.inference`` (parsed), and the dimensions of both from real EMF flushes through the
handlers' Powertools ``Metrics`` objects. The ingestor's names come from one real EMF line of
``btcpred.ingest.service.Ingestor`` (its metrics emitter run in the test). AWS metrics are
checked against the names and dimensions the AWS documentation gives for each service.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from btcpred.aggregator import BatchResult
from btcpred.inference.accuracy import confidence_band
from btcpred.inference.aws import EmfMetrics
from stacks.signals import INGESTOR_METRICS, LOADER_METRICS, POLLER_METRICS
from tests.infra.monitoring_stack import (
    CACHE,
    FUNCTIONS,
    HTTP,
    INGESTOR,
    WEBSOCKET,
    build,
    logical_id,
)
from tests.infra.monitoring_stack import all_metrics as metrics_of

INFERENCE_SOURCES = Path(__file__).resolve().parents[2] / "src/btcpred/inference"
UNITS = {"Count", "Milliseconds", "None"}


def _ingestor_emits() -> dict[str, str]:
    """The names and units of one real EMF line of the ingestor (all of them: a primary
    connection is present so that ConnectionAgeS is written too)."""
    import io

    from btcpred.ingest.service import Ingestor
    from btcpred.settings.ingest import IngestSettings

    out = io.BytesIO()
    ingestor = Ingestor(IngestSettings(stream_name="s", api_key="k"), None, metrics_out=out)  # type: ignore[arg-type]

    class _Primary:
        age_s = 12.0
        end_reason = ""

    ingestor.primary = _Primary()  # type: ignore[assignment]
    ingestor._emit_metrics()
    doc = json.loads(out.getvalue())
    (block,) = doc["_aws"]["CloudWatchMetrics"]
    assert block["Namespace"] == "btcpred"
    assert block["Dimensions"] == [["service"]]
    assert doc["service"] == "ingestor"
    return {m["Name"]: m["Unit"] for m in block["Metrics"]}


# What `btcpred ingest` emits every 10 s (namespace btcpred, dimension service=ingestor), read
# from the code by running its metrics emitter.
INGESTOR_CONTRACT = _ingestor_emits()


# The issue-14 contract (the lead's CONTRACT14.md, written before either handler): what the
# poller and the loader emit (namespace btcpred, dimension service=poller / service=loader).
POLLER_CONTRACT = {
    "PollerPolls": "Count",
    "PollerErrors": "Count",
    "PollerRateLimited": "Count",
    "PollerFallbackWrites": "Count",
    "PriceDivergenceBps": "None",
    "StreamFeatureAgeMs": "Milliseconds",
    "PollerRestLatencyMs": "Milliseconds",
}
LOADER_CONTRACT = {
    "LoaderObjects": "Count",
    "LoaderRows": "Count",
    "LoaderSkipped": "Count",
    "LoaderRejected": "Count",
    "LoaderDurationMs": "Milliseconds",
}


def inference_names() -> tuple[set[str], list[re.Pattern[str]]]:
    """Names of the ``m.add("Name", "Unit", value)`` calls in ``btcpred.inference``; an
    f-string name becomes a pattern whose groups are its substitutions."""
    names: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for path in sorted(INFERENCE_SOURCES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add"
                and len(node.args) == 3
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in UNITS
            ):
                continue
            name = node.args[0]
            if isinstance(name, ast.Constant):
                names.add(name.value)
            elif isinstance(name, ast.IfExp):  # "A" if … else "B"
                names.update(
                    b.value for b in (name.body, name.orelse) if isinstance(b, ast.Constant)
                )
            elif isinstance(name, ast.JoinedStr):
                parts = [
                    re.escape(v.value) if isinstance(v, ast.Constant) else r"(\w+)"
                    for v in name.values
                ]
                patterns.append(re.compile("".join(parts)))
    return names, patterns


def aggregator_names() -> set[str]:
    """What the aggregator handler's ``_emit`` records for a batch (every name it has)."""
    handler = importlib.import_module("lambdas.aggregator.handler")
    handler.metrics.clear_metrics()
    handler._emit(BatchResult(newest_event_us=1), 0, 0.01)
    names = set(handler.metrics.metric_set)
    handler.metrics.clear_metrics()
    return names


def flush(metrics: Any, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The one EMF document ``metrics.flush()`` prints."""
    capsys.readouterr()
    metrics.flush()
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    blob: dict[str, Any] = json.loads(line)
    return blob


@pytest.fixture(scope="module")
def built() -> tuple[Template, Any]:
    _, stack, _ = build()
    return Template.from_stack(stack), stack


def test_the_name_sources_hold_the_names_the_docs_list() -> None:
    names, patterns = inference_names()
    assert {"Predictions", "InferenceLatency", "FeatureAge", "AbsError"} <= names  # tickmetrics
    assert {"PredictionsFromRedis", "PredictionsFromFallback"} <= names  # one conditional add
    assert {"FallbackRest", "RedisUnavailable", "SkippedPredictions", "TickDuration"} <= names
    assert [p.pattern for p in patterns] == [r"AbsError(\w+)Confidence"]
    assert {"FailedGroups", "DecodeFailures", "ImplausibleEvents", "EventToFeatureLag"} <= (
        aggregator_names()
    )


def test_emf_metrics_carry_exactly_the_dimension_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    aggregator = importlib.import_module("lambdas.aggregator.handler")
    inference = importlib.import_module("lambdas.inference.handler")
    aggregator.metrics.clear_metrics()
    aggregator._emit(BatchResult(newest_event_us=1), 0, 0.01)
    documents = {"aggregator": flush(EmfMetrics(aggregator.metrics), capsys)}
    emf = EmfMetrics(inference.metrics)  # what the inference handler hands the service
    emf.property("ModelVersion", "v1")
    emf.add("Predictions", "Count", 1)
    emf.add("PredictionsFromFallback", "Count", 1)
    documents["inference"] = flush(emf, capsys)
    for service, blob in documents.items():
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "btcpred"
        assert directive["Dimensions"] == [["service"]]
        assert blob["service"] == service
        assert "symbol" not in blob
    assert documents["inference"]["ModelVersion"] == "v1"  # metadata, not a dimension


def test_application_metrics_are_emitted_under_their_service(built: tuple[Template, Any]) -> None:
    template, _ = built
    emitted = {
        "inference": inference_names()[0],
        "aggregator": aggregator_names(),
        "ingestor": set(INGESTOR_CONTRACT),
        "poller": set(POLLER_CONTRACT),
        "loader": set(LOADER_CONTRACT),
    }
    (pattern,) = inference_names()[1]
    bands = {confidence_band(c).capitalize() for c in (0.1, 0.5, 0.9)}
    application = [(n, d) for ns, n, d in metrics_of(template) if ns == "btcpred"]
    assert len(application) > 50
    for name, dims in application:
        assert set(dims) == {"service"}, (name, dims)
        service = dims["service"]
        banded = pattern.fullmatch(name) if service == "inference" else None
        assert name in emitted[service] or (banded and banded.group(1) in bands), (
            f"{name} is not emitted by {service}"
        )
    assert {d["service"] for _, d in application} == set(emitted)
    for service in ("ingestor", "poller", "loader"):
        shown = {n for n, d in application if d["service"] == service}
        assert shown == emitted[service], f"every {service} metric is graphed or alarmed on"


def test_the_monitorings_ingestor_table_is_the_contract() -> None:
    assert dict(INGESTOR_METRICS) == INGESTOR_CONTRACT


def test_the_poller_and_loader_tables_are_the_issue_14_contract() -> None:
    assert dict(POLLER_METRICS) == POLLER_CONTRACT
    assert dict(LOADER_METRICS) == LOADER_CONTRACT


# Names from the AWS documentation for each service's CloudWatch metrics (ElastiCache: the
# Valkey/Redis OSS serverless cache metrics, dimension clusterId; ECS: Container Insights'
# service-level metrics, dimensions ClusterName and ServiceName).
DOCUMENTED = {
    "AWS/Lambda": {"Errors", "Throttles", "Duration", "ConcurrentExecutions", "IteratorAge"},
    "AWS/ElastiCache": {
        "ElastiCacheProcessingUnits",
        "BytesUsedForCache",
        "ThrottledCmds",
        "SuccessfulReadRequestLatency",
        "SuccessfulWriteRequestLatency",
        "CurrConnections",
    },
    "AWS/ApiGateway": {
        "ConnectCount",
        "MessageCount",
        "ClientError",
        "ExecutionError",
        "IntegrationError",
        "IntegrationLatency",
        "Count",
        "4xx",
        "5xx",
        "Latency",
    },
    "AWS/Kinesis": {
        "IncomingRecords",
        "IncomingBytes",
        "WriteProvisionedThroughputExceeded",
        "GetRecords.IteratorAgeMilliseconds",
    },
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
    "AWS/RDS": {"CPUUtilization", "FreeStorageSpace", "DatabaseConnections", "FreeableMemory"},
    "ECS/ContainerInsights": {"RunningTaskCount"},
}


def test_aws_metrics_use_each_services_names_and_dimensions(built: tuple[Template, Any]) -> None:
    template, stack = built
    dimensions = {
        "AWS/Lambda": [
            {"FunctionName": f"{{Ref:{logical_id(stack, f'fn-{k}')}}}"} for k in FUNCTIONS
        ],
        "AWS/ElastiCache": [{"clusterId": CACHE}],
        "AWS/ApiGateway": [WEBSOCKET, HTTP],
        "AWS/Kinesis": [{"StreamName": f"{{Ref:{logical_id(stack, 'Stream')}}}"}],
        "AWS/SQS": [
            {"QueueName": f"{{Att:{logical_id(stack, q)}.QueueName}}"}
            for q in ("Dlq", "LoaderQueue", "Dlq-loader")
        ],
        "AWS/RDS": [{"DBInstanceIdentifier": f"{{Ref:{logical_id(stack, 'Db')}}}"}],
        "ECS/ContainerInsights": [INGESTOR],
    }
    seen: dict[str, set[str]] = {}
    for namespace, name, dims in metrics_of(template):
        if namespace == "btcpred":
            continue
        assert name in DOCUMENTED[namespace], (namespace, name)
        assert dims in dimensions[namespace], (namespace, name, dims)
        seen.setdefault(namespace, set()).add(name)
    assert seen == DOCUMENTED  # and every one of them is shown or alarmed on


def test_the_websocket_and_http_metrics_are_split_by_api(built: tuple[Template, Any]) -> None:
    template, _ = built
    api = {(n, d["ApiId"]) for ns, n, d in metrics_of(template) if ns == "AWS/ApiGateway"}
    assert {("ConnectCount", WEBSOCKET["ApiId"]), ("ExecutionError", WEBSOCKET["ApiId"])} <= api
    assert {("5xx", HTTP["ApiId"]), ("4xx", HTTP["ApiId"]), ("Latency", HTTP["ApiId"])} <= api
    assert ("5xx", WEBSOCKET["ApiId"]) not in api  # WebSocket APIs have no 4xx/5xx metrics
