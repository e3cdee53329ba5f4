"""A small test stack holding the monitoring construct, and readers of what it synthesizes.

The stand-in resources are real constructs: functions with inline code, a Kinesis stream, an
SQS queues and a PostgreSQL instance in a small VPC. Their own cdk-nag findings (not the
monitoring's) can be acknowledged on them, and only on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Template

from stacks.config import ENVIRONMENTS
from stacks.monitoring import MonitoredResources, Monitoring

CONFIG = ENVIRONMENTS["dev"]
ACCOUNT, REGION = "123456789012", "ap-northeast-1"
CACHE = "btcpred-dev-cache"
FUNCTIONS = ("aggregator", "inference", "api", "websocket", "poller", "loader")
WEBSOCKET = {"ApiId": "wsapi123", "Stage": "live"}
HTTP = {"ApiId": "httpapi123", "Stage": "$default"}
INGESTOR = {"ClusterName": "btcpred-dev", "ServiceName": "btcpred-dev-ingestor"}
# The stand-ins' findings by construct id prefix; the monitoring has none to acknowledge.
STAND_IN_FINDINGS = {
    "fn": (
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AWSLambdaBasicExecutionRole]",
        "AwsSolutions-L1",
    ),
    "Vpc": ("AwsSolutions-VPC7",),
    "Db": ("AwsSolutions-SMG4", "AwsSolutions-RDS3", "AwsSolutions-RDS10", "AwsSolutions-RDS11"),
    "Dlq": ("AwsSolutions-SQS3",),
}

Metric = tuple[str, str, dict[str, str]]  # namespace, name, dimensions


def build(*, acknowledge: bool = False) -> tuple[cdk.App, cdk.Stack, Monitoring]:
    """The app, its one stack and the monitoring in it (stand-in findings acknowledged)."""
    app = cdk.App()
    stack = cdk.Stack(app, "Test", env=cdk.Environment(account=ACCOUNT, region=REGION))
    code = lambda_.Code.from_inline("def handler(event, context):\n    return event\n")
    functions = {
        key: lambda_.Function(
            stack,
            f"fn-{key}",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler="index.handler",
            code=code,
        )
        for key in FUNCTIONS
    }
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    database = rds.DatabaseInstance(
        stack,
        "Db",
        engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_16),
        instance_type=ec2.InstanceType("t4g.micro"),
        vpc=vpc,
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
        storage_encrypted=True,
    )
    loader_dlq = sqs.Queue(stack, "Dlq-loader", enforce_ssl=True)
    resources = MonitoredResources(
        functions=functions,
        stream=kinesis.Stream(stack, "Stream", encryption=kinesis.StreamEncryption.MANAGED),
        dlq=sqs.Queue(stack, "Dlq", enforce_ssl=True),
        cache_name=CACHE,
        database=database,
        websocket_api_id=WEBSOCKET["ApiId"],
        websocket_stage=WEBSOCKET["Stage"],
        http_api_id=HTTP["ApiId"],
        http_stage=HTTP["Stage"],
        ingestor_cluster_name=INGESTOR["ClusterName"],
        ingestor_service_name=INGESTOR["ServiceName"],
        loader_queue=sqs.Queue(
            stack,
            "LoaderQueue",
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=5, queue=loader_dlq),
        ),
        loader_dlq=loader_dlq,
    )
    monitoring = Monitoring(stack, "Monitoring", config=CONFIG, resources=resources)
    if acknowledge:
        _acknowledge_stand_ins(stack)
    return app, stack, monitoring


def _acknowledge_stand_ins(stack: cdk.Stack) -> None:
    for construct in stack.node.children:
        for rule in STAND_IN_FINDINGS.get(construct.node.id.split("-")[0], ()):
            cdk.Validations.of(construct).acknowledge(
                cdk.Acknowledgment(id=f"AwsSolutions::{rule}", reason="test stand-in")
            )


def logical_id(stack: cdk.Stack, child_id: str) -> str:
    """The logical id of the stack's child ``child_id`` (its default CloudFormation resource)."""
    child = stack.node.find_child(child_id)
    return str(stack.resolve(child.node.default_child.logical_id))  # type: ignore[union-attr]


def one(template: Template, kind: str) -> tuple[str, dict[str, Any]]:
    """The only resource of type ``kind``: its logical id and definition."""
    found = template.find_resources(kind)
    assert len(found) == 1, f"{kind}: {list(found)}"
    return next(iter(found.items()))


def alarms(template: Template) -> dict[str, dict[str, Any]]:
    """Alarm properties by short name (the alarm name without ``btcpred-dev-``)."""
    return {
        a["Properties"]["AlarmName"].removeprefix(f"{CONFIG.prefix}-"): a["Properties"]
        for a in template.find_resources("AWS::CloudWatch::Alarm").values()
    }


def resolve(value: Any) -> str:
    """A string or ``Fn::Join``, references written ``{Ref:Id}`` and ``{Att:Id.Attr}``."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(resolve(p) for p in parts)
    if "Ref" in value:
        return f"{{Ref:{value['Ref']}}}"
    if "Fn::GetAtt" in value:
        return "{Att:" + ".".join(value["Fn::GetAtt"]) + "}"
    raise AssertionError(f"unexpected token {value}")


def dashboard(template: Template) -> dict[str, Any]:
    """The dashboard body, parsed (references resolved as by :func:`resolve`)."""
    _, resource = one(template, "AWS::CloudWatch::Dashboard")
    body: dict[str, Any] = json.loads(resolve(resource["Properties"]["DashboardBody"]))
    return body


def dashboard_metrics(body: dict[str, Any]) -> Iterator[Metric]:
    """Every metric the dashboard's graphs read (expressions' inputs included)."""
    for widget in body["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], str):  # [namespace, name, dim, value, …, {options}]
                dims = [x for x in row[2:] if isinstance(x, str)]
                yield row[0], row[1], dict(zip(dims[::2], dims[1::2], strict=True))


def alarm_metrics(alarm: dict[str, Any]) -> Iterator[Metric]:
    """Every metric an alarm reads: its metric, or its math expression's inputs."""

    def dims(raw: list[dict[str, Any]]) -> dict[str, str]:
        return {d["Name"]: resolve(d["Value"]) for d in raw}

    if "MetricName" in alarm:
        yield alarm["Namespace"], alarm["MetricName"], dims(alarm.get("Dimensions", []))
    for query in alarm.get("Metrics", []):
        if "MetricStat" in query:
            m = query["MetricStat"]["Metric"]
            yield m["Namespace"], m["MetricName"], dims(m.get("Dimensions", []))


def all_metrics(template: Template) -> list[Metric]:
    """The dashboard's and the alarms' metrics."""
    found = list(dashboard_metrics(dashboard(template)))
    for alarm in alarms(template).values():
        found.extend(alarm_metrics(alarm))
    return found
