"""The monitoring construct: alarm topic and key, alarms and dashboard, synthesized in a small
test stack (tests/infra/monitoring_stack.py), and cdk-nag's AwsSolutions checks on it."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from stacks.alarms import alarm_specs
from stacks.monitoring import MonitoredResources, Monitoring
from tests.infra.monitoring_stack import (
    ACCOUNT,
    CONFIG,
    FUNCTIONS,
    REGION,
    alarm_metrics,
    alarms,
    build,
    dashboard,
    dashboard_metrics,
    one,
    resolve,
)


@pytest.fixture(scope="module")
def built() -> tuple[Template, Monitoring, cdk.Stack]:
    _, stack, monitoring = build()
    return Template.from_stack(stack), monitoring, stack


@pytest.fixture(scope="module")
def template(built: tuple[Template, Monitoring, cdk.Stack]) -> Template:
    return built[0]


# --- alarms -----------------------------------------------------------------------------------


def test_every_alarm_notifies_the_topic_on_alarm_and_on_ok(
    built: tuple[Template, Monitoring, cdk.Stack],
) -> None:
    template, monitoring, stack = built
    topic_id, _ = one(template, "AWS::SNS::Topic")
    found = alarms(template)
    assert set(found) == set(monitoring.alarms)
    assert len(found) == 24 + 2 * len(FUNCTIONS)
    for name, alarm in found.items():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}], name
        assert alarm["OKActions"] == [{"Ref": topic_id}], name
        assert "First:" in alarm["AlarmDescription"]
        assert len(alarm["AlarmDescription"]) <= 1024


def test_missing_data_is_chosen_per_alarm(template: Template) -> None:
    missing = {name: a["TreatMissingData"] for name, a in alarms(template).items()}
    # silence is the failure: no predictions, nothing on the stream
    assert missing["predictor-stalled"] == "breaching"
    assert missing["stream-silent"] == "breaching"
    assert missing["ingestor-no-frames"] == "breaching"
    assert missing["ingestor-no-tasks"] == "breaching"
    assert missing["poller-silent"] == "breaching"
    # nothing to judge by: keep the state (the stall alarm pages for the silence)
    for name in (
        "stale-features",
        "fallback-share-high",
        "model-worse-than-random-walk",
        "inference-latency-p99",
        "aggregator-iterator-age",
        "db-free-storage-low",
        "ingestor-lag",
        "price-divergence",  # only emitted while stream features exist
    ):
        assert missing[name] == "missing", name
    # counts of bad events: no data, nothing bad
    for name in (
        "dlq-not-empty",
        "kinesis-write-throttled",
        "redis-throttled",
        "http-5xx",
        "websocket-execution-errors",
        "lambda-errors-inference",
        "lambda-throttles-aggregator",
        "ingestor-put-failures",
        "ingestor-gaps",
        "poller-errors",
        "loader-rejected",
        "loader-dlq-not-empty",
        "lambda-errors-loader",
        "lambda-errors-poller",
    ):
        assert missing[name] == "notBreaching", name


def test_the_stall_alarm_counts_predictions_of_the_inference_service(template: Template) -> None:
    alarm = alarms(template)["predictor-stalled"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("btcpred", "Predictions")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "inference"}]
    assert (alarm["Statistic"], alarm["Period"]) == ("Sum", 300)
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["Threshold"] == CONFIG.alarms.min_predictions_per_5min * len(CONFIG.symbols)


def test_the_model_alarm_judges_the_hourly_mae_ratio_on_enough_samples(
    template: Template,
) -> None:
    alarm = alarms(template)["model-worse-than-random-walk"]
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    (expression,) = [q for q in queries.values() if "Expression" in q]
    minimum = CONFIG.alarms.min_scored_predictions_per_hour
    assert expression["Expression"] == f"IF(scored >= {minimum}, model / naive, 0)"
    stats = {
        i: (
            q["MetricStat"]["Metric"]["MetricName"],
            q["MetricStat"]["Stat"],
            q["MetricStat"]["Period"],
        )
        for i, q in queries.items()
        if "MetricStat" in q
    }
    assert stats == {
        "model": ("AbsError", "Average", 3600),
        "naive": ("NaiveAbsError", "Average", 3600),
        "scored": ("AbsError", "SampleCount", 3600),
    }
    assert alarm["Threshold"] == CONFIG.alarms.max_error_ratio_vs_random_walk
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_the_fallback_alarm_fills_a_period_without_fallbacks_with_zero(
    template: Template,
) -> None:
    alarm = alarms(template)["fallback-share-high"]
    (expression,) = [q["Expression"] for q in alarm["Metrics"] if "Expression" in q]
    assert expression == "FILL(fallback15, 0) / predictions15"
    names = {
        q["Id"]: q["MetricStat"]["Metric"]["MetricName"]
        for q in alarm["Metrics"]
        if "MetricStat" in q
    }
    assert names == {"fallback15": "PredictionsFromFallback", "predictions15": "Predictions"}
    assert alarm["Threshold"] == CONFIG.alarms.max_fallback_share


@pytest.mark.parametrize(
    ("name", "metric", "threshold", "operator"),
    [
        ("dlq-not-empty", "ApproximateNumberOfMessagesVisible", 1, "GreaterThanOrEqualToThreshold"),
        ("stale-features", "FeatureAge", CONFIG.alarms.max_feature_age_ms, "GreaterThanThreshold"),
        (
            "aggregator-iterator-age",
            "IteratorAge",
            CONFIG.alarms.max_iterator_age_ms,
            "GreaterThanThreshold",
        ),
        (
            "redis-throttled",
            "ThrottledCmds",
            CONFIG.alarms.redis_throttled_cmds,
            "GreaterThanOrEqualToThreshold",
        ),
        (
            "db-free-storage-low",
            "FreeStorageSpace",
            CONFIG.alarms.min_db_free_storage_gb * 2**30,
            "LessThanThreshold",
        ),
        ("http-5xx", "5xx", CONFIG.alarms.http_5xx_count, "GreaterThanOrEqualToThreshold"),
        (
            "lambda-errors-api",
            "Errors",
            CONFIG.alarms.lambda_error_count,
            "GreaterThanOrEqualToThreshold",
        ),
    ],
)
def test_alarm_metric_and_threshold(
    template: Template, name: str, metric: str, threshold: float, operator: str
) -> None:
    alarm = alarms(template)[name]
    ((_, metric_name, _),) = alarm_metrics(alarm)
    assert (metric_name, alarm["Threshold"]) == (metric, threshold)
    assert alarm["ComparisonOperator"] == operator


# --- topic and key ----------------------------------------------------------------------------


def test_the_topic_is_encrypted_with_a_rotated_key_cloudwatch_may_use(template: Template) -> None:
    key_id, key = one(template, "AWS::KMS::Key")
    _, topic = one(template, "AWS::SNS::Topic")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["Properties"]["EnableKeyRotation"] is True
    (grant,) = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert grant["Effect"] == "Allow"
    assert set(grant["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert grant["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    source = resolve(grant["Condition"]["ArnLike"]["aws:SourceArn"])
    assert (
        source == f"arn:{{Ref:AWS::Partition}}:cloudwatch:{REGION}:{ACCOUNT}:alarm:"
        f"{CONFIG.prefix}-*"
    )


def test_the_topic_refuses_plain_http_and_lets_cloudwatch_alarms_publish(
    template: Template,
) -> None:
    topic_id, _ = one(template, "AWS::SNS::Topic")
    _, policy = one(template, "AWS::SNS::TopicPolicy")
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (publish,) = [s for s in statements if s["Effect"] == "Allow"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Action"] == "sns:Publish"
    assert publish["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}


# --- dashboard --------------------------------------------------------------------------------


def test_the_dashboard_starts_with_what_it_shows_and_the_runbook(template: Template) -> None:
    _, resource = one(template, "AWS::CloudWatch::Dashboard")
    assert resource["Properties"]["DashboardName"] == "btcpred-dev-overview"
    first, second = dashboard(template)["widgets"][:2]
    assert first["type"] == "text"
    assert "docs/deploy.md" in first["properties"]["markdown"]
    assert second["type"] == "alarm"
    assert len(second["properties"]["alarms"]) == len(alarms(template))


def test_the_dashboard_shows_the_key_metrics_with_titles_and_units(template: Template) -> None:
    body = dashboard(template)
    graphs = [w["properties"] for w in body["widgets"] if w["type"] == "metric"]
    for graph in graphs:
        assert graph["title"]
        assert graph["yAxis"]["left"]["label"], graph["title"]
    names = {(ns, n) for ns, n, _ in dashboard_metrics(body)}
    for key in (
        "Predictions",
        "InferenceLatency",
        "FeatureAge",
        "PredictionsFromFallback",
        "FallbackRest",
        "FallbackStaleFeatures",
        "FallbackRedisFeatures",
        "RedisUnavailable",
        "AbsError",
        "NaiveAbsError",
        "DirectionHit",
        "Confidence",
    ):
        assert ("btcpred", key) in names, key
    for key in ("FailedGroups", "DecodeFailures", "ImplausibleEvents", "EventToFeatureLag"):
        assert ("btcpred", key) in names, key
    assert ("AWS/Lambda", "IteratorAge") in names
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage") in names
    assert ("AWS/ElastiCache", "ElastiCacheProcessingUnits") in names
    expressions = [
        m[0]["expression"] for g in graphs for m in g["metrics"] if isinstance(m[0], dict)
    ]
    assert "100 * FILL(fallback1, 0) / predictions1" in expressions
    assert "model / naive" in expressions


# --- the poller and the loader (issue 14) -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "metric", "service", "statistic", "period", "periods", "threshold", "operator"),
    [
        (
            "price-divergence",
            "PriceDivergenceBps",
            "poller",
            "Maximum",
            60,
            3,
            50.0,
            "GreaterThanThreshold",
        ),
        (
            "poller-errors",
            "PollerErrors",
            "poller",
            "Sum",
            300,
            1,
            CONFIG.alarms.poller_errors_per_5min,
            "GreaterThanOrEqualToThreshold",
        ),
        ("poller-silent", "PollerPolls", "poller", "Sum", 300, 1, 1, "LessThanThreshold"),
        (
            "loader-rejected",
            "LoaderRejected",
            "loader",
            "Sum",
            300,
            1,
            1,
            "GreaterThanOrEqualToThreshold",
        ),
    ],
)
def test_the_poller_and_loader_alarms_read_their_services_metrics(
    template: Template,
    name: str,
    metric: str,
    service: str,
    statistic: str,
    period: int,
    periods: int,
    threshold: float,
    operator: str,
) -> None:
    alarm = alarms(template)[name]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("btcpred", metric)
    assert alarm["Dimensions"] == [{"Name": "service", "Value": service}]
    assert (alarm["Statistic"], alarm["Period"]) == (statistic, period)
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == periods
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (threshold, operator)


def test_the_loader_dlq_alarm_watches_the_loaders_dead_letter_queue(
    built: tuple[Template, Monitoring, cdk.Stack],
) -> None:
    template, _, stack = built
    alarm = alarms(template)["loader-dlq-not-empty"]
    dlq = stack.resolve(stack.node.find_child("Dlq-loader").node.default_child.logical_id)  # type: ignore[union-attr]
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}
    ]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    errors = alarms(template)["lambda-errors-loader"]
    ((namespace, metric, _),) = alarm_metrics(errors)
    assert (namespace, metric, errors["Threshold"]) == ("AWS/Lambda", "Errors", 1)
    assert errors["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"  # errors > 0


def test_the_dashboard_has_a_poller_row_and_a_loader_row(template: Template) -> None:
    body = dashboard(template)
    titles = [w["properties"].get("markdown", "") for w in body["widgets"] if w["type"] == "text"]
    assert any(t.startswith("### Fallback poller") for t in titles)
    assert any(t.startswith("### History loader") for t in titles)
    shown = {(n, d.get("service")) for ns, n, d in dashboard_metrics(body) if ns == "btcpred"}
    for name in (
        "PollerPolls",
        "PollerErrors",
        "PollerRateLimited",
        "PriceDivergenceBps",
        "StreamFeatureAgeMs",
    ):
        assert (name, "poller") in shown, name
    for name in ("LoaderObjects", "LoaderRows", "LoaderRejected", "LoaderDurationMs"):
        assert (name, "loader") in shown, name
    queues = {
        json.dumps(d)
        for ns, n, d in dashboard_metrics(body)
        if ns == "AWS/SQS" and n == "ApproximateNumberOfMessagesVisible"
    }
    assert len(queues) == 3, "the aggregator's DLQ, the loader's queue and its DLQ"


# --- cdk-nag ----------------------------------------------------------------------------------


def test_cdk_nag_finds_nothing_in_the_monitoring() -> None:
    app, _, _ = build(acknowledge=True)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()  # a finding raises ValidationFailed; only the stand-ins' are acknowledged


def test_cdk_nag_really_runs_on_the_testbuild() -> None:
    app, _, _ = build()
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()


# --- the interface ----------------------------------------------------------------------------


def test_resources_must_name_exactly_the_six_functions(
    built: tuple[Template, Monitoring, cdk.Stack],
) -> None:
    _, _, stack = built
    fn: Any = stack.node.find_child("fn-api")
    with pytest.raises(ValueError, match="functions: expected keys"):
        MonitoredResources(
            functions={"api": fn},
            stream=fn,
            dlq=fn,
            cache_name="c",
            database=fn,
            websocket_api_id="a",
            websocket_stage="s",
            http_api_id="h",
            http_stage="$default",
            ingestor_cluster_name="c",
            ingestor_service_name="s",
            loader_queue=fn,
            loader_dlq=fn,
        )


def test_the_stall_threshold_scales_with_the_symbols() -> None:
    two = replace(CONFIG, symbols=("BTCUSDT", "ETHUSDT"))
    (stall,) = [s for s in alarm_specs() if s.name == "predictor-stalled"]
    assert stall.threshold(two) == 2 * stall.threshold(CONFIG)
    assert stall.threshold(CONFIG) == CONFIG.alarms.min_predictions_per_5min
