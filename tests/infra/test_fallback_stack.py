"""The issue-14 functions as every environment synthesizes them: the poller's schedule, timeout,
concurrency and environment; the loader's network, queue, notification, event source and IAM."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.config import ENVIRONMENTS
from tests.infra.conftest import Synthesized
from tests.infra.test_stack import as_list, function, statements

# CONTRACT14.md: the poller's environment (besides the REDIS_* every feature-store function gets)
POLLER_VARIABLES = {
    "SYMBOLS",
    "BINANCE_REST_URL",
    "POLLER_INTERVAL_SECONDS",
    "FALLBACK_TTL_SECONDS",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_LOG_LEVEL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_TLS",
    "REDIS_CLUSTER",
    "REDIS_AUTH_SECRET_ARN",
}


@pytest.fixture(params=list(ENVIRONMENTS))
def each(request: pytest.FixtureRequest, synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized[request.param]


def _one(items: list[Any], what: str) -> Any:
    assert len(items) == 1, f"{what}: {len(items)} found"
    return items[0]


def _loader_queues(s: Synthesized) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """The loader's queue and its dead-letter queue: logical ids and properties."""
    queues = s.resources("AWS::SQS::Queue")
    qid = _one([k for k, q in queues.items() if "RedrivePolicy" in q["Properties"]], "queue")
    dlq = queues[qid]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    return qid, queues[qid]["Properties"], dlq, queues[dlq]["Properties"]


def _role_statements(s: Synthesized, name: str) -> list[dict[str, Any]]:
    _, fn = function(s, name)
    return statements(s, fn["Properties"]["Role"]["Fn::GetAtt"][0])


def _raw_history_bucket(s: Synthesized) -> str:
    bucket = s.stack.buckets.raw_history.node.default_child
    return str(s.stack.resolve(bucket.logical_id))


# --- the poller -------------------------------------------------------------------------------


def test_the_poller_starts_every_minute_without_retries(each: Synthesized) -> None:
    poller_id, _ = function(each, "poller")
    rule = _one(
        [
            r["Properties"]
            for r in each.resources("AWS::Events::Rule").values()
            if any(
                t["Arn"] == {"Fn::GetAtt": [poller_id, "Arn"]} for t in r["Properties"]["Targets"]
            )
        ],
        "poller rule",
    )
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    assert rule.get("State", "ENABLED") == "ENABLED"
    target = _one(rule["Targets"], "target")
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
    invoke = _one(
        [
            c["Properties"]
            for c in each.resources("AWS::Lambda::EventInvokeConfig").values()
            if c["Properties"]["FunctionName"] == {"Ref": poller_id}
        ],
        "poller invoke config",
    )
    assert (invoke["MaximumRetryAttempts"], invoke["MaximumEventAgeInSeconds"]) == (0, 60)


def test_the_poller_runs_a_minute_at_most_two_at_once_with_the_contract_environment(
    each: Synthesized,
) -> None:
    config = ENVIRONMENTS[each.env]
    _, fn = function(each, "poller")
    p = fn["Properties"]
    assert p["Timeout"] == 60
    assert p["ReservedConcurrentExecutions"] == 2, "one running, one starting"
    assert p["MemorySize"] == config.poller_memory_mb
    assert (p["Architectures"], p["Runtime"]) == (["arm64"], "python3.12")
    variables = p["Environment"]["Variables"]
    assert set(variables) == POLLER_VARIABLES
    assert variables["SYMBOLS"] == ",".join(config.symbols)
    _, ingestor = _one(list(each.resources("AWS::ECS::TaskDefinition").items()), "task")
    (container,) = ingestor["Properties"]["ContainerDefinitions"]
    ingest_env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert variables["BINANCE_REST_URL"] == ingest_env["BINANCE_REST_URL"]
    assert variables["BINANCE_REST_URL"].startswith("https://")
    assert variables["POLLER_INTERVAL_SECONDS"] == f"{config.poller_interval_s:g}"
    assert int(variables["FALLBACK_TTL_SECONDS"]) > config.poller_interval_s
    assert (variables["POWERTOOLS_METRICS_NAMESPACE"], variables["POWERTOOLS_SERVICE_NAME"]) == (
        "btcpred",
        "poller",
    )
    assert variables["REDIS_TLS"] == variables["REDIS_CLUSTER"] == "true"


def test_the_poller_is_light_and_shares_the_feature_store_group(each: Synthesized) -> None:
    _, poller = function(each, "poller")
    _, api = function(each, "api")
    assert poller["Properties"]["Layers"] == api["Properties"]["Layers"], "core and btcpred"
    groups = poller["Properties"]["VpcConfig"]["SecurityGroupIds"]
    assert groups == api["Properties"]["VpcConfig"]["SecurityGroupIds"]
    actions = {a for st in _role_statements(each, "poller") for a in as_list(st["Action"])}
    assert "secretsmanager:GetSecretValue" in actions, "the cache's credentials"
    assert not any(a.startswith(("s3:", "sqs:", "execute-api:")) for a in actions), actions


# --- the loader -------------------------------------------------------------------------------


def test_the_loader_runs_in_the_app_subnets_with_its_own_group(each: Synthesized) -> None:
    config = ENVIRONMENTS[each.env]
    _, fn = function(each, "loader")
    p = fn["Properties"]
    assert (p["Timeout"], p["MemorySize"]) == (300, config.loader_memory_mb)
    assert (p["Architectures"], p["Runtime"]) == (["arm64"], "python3.12")
    for subnet in p["VpcConfig"]["SubnetIds"]:
        tags = each.template["Resources"][subnet["Ref"]]["Properties"]["Tags"]
        assert {t["Key"]: t["Value"] for t in tags}["aws-cdk:subnet-name"] == "app"
    (group,) = p["VpcConfig"]["SecurityGroupIds"]
    _, api = function(each, "api")
    assert [group] != api["Properties"]["VpcConfig"]["SecurityGroupIds"]
    assert not any(v.startswith("REDIS_") for v in p["Environment"]["Variables"])


def test_the_loaders_group_reaches_https_and_the_database_and_the_database_lets_it_in(
    each: Synthesized,
) -> None:
    _, fn = function(each, "loader")
    group = _one(fn["Properties"]["VpcConfig"]["SecurityGroupIds"], "group")
    group_id = group["Fn::GetAtt"][0]
    inline = each.template["Resources"][group_id]["Properties"]["SecurityGroupEgress"]
    assert inline == [
        {
            "CidrIp": "0.0.0.0/0",
            "Description": "AWS APIs over HTTPS",
            "FromPort": 443,
            "IpProtocol": "tcp",
            "ToPort": 443,
        }
    ]
    db_id, _ = _one(list(each.resources("AWS::RDS::DBInstance").items()), "db")
    db_port = {"Fn::GetAtt": [db_id, "Endpoint.Port"]}
    (db_group,) = each.resources("AWS::RDS::DBInstance")[db_id]["Properties"]["VPCSecurityGroups"]
    egress = _one(
        [
            e["Properties"]
            for e in each.resources("AWS::EC2::SecurityGroupEgress").values()
            if e["Properties"]["GroupId"] == group
        ],
        "loader egress rule",
    )
    assert egress["DestinationSecurityGroupId"] == db_group
    assert egress["FromPort"] == egress["ToPort"] == db_port
    ingress = [
        i["Properties"]
        for i in each.resources("AWS::EC2::SecurityGroupIngress").values()
        if i["Properties"].get("SourceSecurityGroupId") == group
    ]
    assert [(i["GroupId"], i["FromPort"], i["ToPort"]) for i in ingress] == [
        (db_group, db_port, db_port)
    ]
    assert each.template["Resources"][db_id]["Properties"].get("Port", "5432") == "5432"


def test_the_loaders_environment_names_the_database_secret(each: Synthesized) -> None:
    _, fn = function(each, "loader")
    variables = fn["Properties"]["Environment"]["Variables"]
    attachment = _one(
        list(each.resources("AWS::SecretsManager::SecretTargetAttachment")), "secret attachment"
    )
    assert variables == {
        "DATABASE_SECRET_ARN": {"Ref": attachment},
        "DATABASE_SSLMODE": "require",
        "DATABASE_NAME": "btcpred",
        "POWERTOOLS_METRICS_NAMESPACE": "btcpred",
        "POWERTOOLS_SERVICE_NAME": "loader",
        "POWERTOOLS_LOG_LEVEL": ENVIRONMENTS[each.env].log_level,
    }
    (db,) = each.resources("AWS::RDS::DBInstance").values()
    assert db["Properties"]["DBName"] == variables["DATABASE_NAME"]


def test_the_queue_is_encrypted_tls_only_with_a_dlq_and_six_timeouts_of_visibility(
    each: Synthesized,
) -> None:
    qid, queue, dlq_id, dlq = _loader_queues(each)
    _, fn = function(each, "loader")
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert queue["VisibilityTimeout"] >= 6 * fn["Properties"]["Timeout"]
    assert dlq["MessageRetentionPeriod"] == 14 * 86_400
    for logical_id, props in ((qid, queue), (dlq_id, dlq)):
        assert props["SqsManagedSseEnabled"] is True, logical_id
        policy = _one(
            [
                p["Properties"]["PolicyDocument"]["Statement"]
                for p in each.resources("AWS::SQS::QueuePolicy").values()
                if {"Ref": logical_id} in p["Properties"]["Queues"]
            ],
            f"{logical_id} policy",
        )
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy
        ), f"{logical_id} accepts plain HTTP"


def test_the_bucket_notifies_the_queue_of_new_market_avro_objects_only(
    each: Synthesized,
) -> None:
    qid, _, _, _ = _loader_queues(each)
    bucket = _raw_history_bucket(each)
    notification = _one(
        [
            n["Properties"]
            for n in each.resources("Custom::S3BucketNotifications").values()
            if n["Properties"]["BucketName"] == {"Ref": bucket}
        ],
        "notification",
    )
    config = _one(notification["NotificationConfiguration"]["QueueConfigurations"], "queue cfg")
    assert config["QueueArn"] == {"Fn::GetAtt": [qid, "Arn"]}
    assert config["Events"] == ["s3:ObjectCreated:*"]
    rules = {r["Name"]: r["Value"] for r in config["Filter"]["Key"]["FilterRules"]}
    assert rules == {"prefix": "market/", "suffix": ".avro"}
    assert set(notification["NotificationConfiguration"]) == {"QueueConfigurations"}
    # S3 may send to the queue only for this bucket
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in each.resources("AWS::SQS::QueuePolicy").values()
        if {"Ref": qid} in p["Properties"]["Queues"]
    ]
    send = _one([s for s in policy if s["Effect"] == "Allow"], "S3's statement")
    assert send["Principal"] == {"Service": "s3.amazonaws.com"}
    assert "sqs:SendMessage" in send["Action"]
    assert send["Condition"] == {"ArnLike": {"aws:SourceArn": {"Fn::GetAtt": [bucket, "Arn"]}}}


def test_the_notifications_handler_may_only_configure_the_raw_history_bucket(
    each: Synthesized,
) -> None:
    bucket = _raw_history_bucket(each)
    handler_roles = {
        k
        for k, r in each.resources("AWS::IAM::Role").items()
        if k.startswith("BucketNotificationsHandler")
    }
    role = _one(sorted(handler_roles), "handler role")
    found = statements(each, role)
    assert found == [
        {
            "Action": "s3:PutBucketNotification",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [bucket, "Arn"]},
        }
    ]


def test_the_event_source_takes_ten_and_reports_item_failures(each: Synthesized) -> None:
    config = ENVIRONMENTS[each.env]
    loader_id, _ = function(each, "loader")
    qid, _, _, _ = _loader_queues(each)
    mapping = _one(
        [
            m["Properties"]
            for m in each.resources("AWS::Lambda::EventSourceMapping").values()
            if m["Properties"]["FunctionName"] == {"Ref": loader_id}
        ],
        "loader mapping",
    )
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [qid, "Arn"]}
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": config.loader_max_concurrency}


def test_the_loader_reads_market_objects_and_the_db_secret_and_nothing_else(
    each: Synthesized,
) -> None:
    qid, _, _, _ = _loader_queues(each)
    bucket = _raw_history_bucket(each)
    attachment = _one(list(each.resources("AWS::SecretsManager::SecretTargetAttachment")), "att")
    by_action: dict[str, list[str]] = {}
    for st in _role_statements(each, "loader"):
        assert st["Effect"] == "Allow"
        for action in as_list(st["Action"]):
            by_action.setdefault(action, []).append(json.dumps(st["Resource"]))
    s3 = {a: r for a, r in by_action.items() if a.startswith("s3:")}
    assert s3 == {
        "s3:GetObject": [
            json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/market/*"]]})
        ]
    }, "GetObject under market/ only: no write, no list, no other prefix"
    secrets = {a: r for a, r in by_action.items() if a.startswith("secretsmanager:")}
    assert secrets == {"secretsmanager:GetSecretValue": [json.dumps({"Ref": attachment})]}
    sqs = {a for a in by_action if a.startswith("sqs:")}
    assert sqs == {
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueUrl",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    }
    for action in sqs:
        assert by_action[action] == [json.dumps({"Fn::GetAtt": [qid, "Arn"]})], action
    assert not any(a.startswith("kms:") for a in by_action), "the secret uses aws/secretsmanager"
    others = set(by_action) - set(s3) - set(secrets) - sqs
    assert others <= {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    }, others


def test_no_other_function_may_read_the_market_history(each: Synthesized) -> None:
    bucket = _raw_history_bucket(each)
    for name in ("aggregator", "inference", "api", "websocket", "poller"):
        for st in _role_statements(each, name):
            assert bucket not in json.dumps(st["Resource"]), name


def test_the_secret_is_not_encrypted_with_a_customer_key(each: Synthesized) -> None:
    secrets = each.resources("AWS::SecretsManager::Secret")
    (db_secret,) = [
        s for s in secrets.values() if s["Properties"].get("Name", "").endswith("postgres-admin")
    ]
    assert "KmsKeyId" not in db_secret["Properties"], "else the loader needs kms:Decrypt"
