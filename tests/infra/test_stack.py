"""What matters in the synthesized environments: event source settings, the schedule, IAM,
encryption and public access, environment variables against what each handler's settings read,
secrets and network placement (tests/infra/test_monitoring.py covers the alarms)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from btcpred.keys import acl_access_string
from btcpred.settings import (
    AggregatorSettings,
    HttpSettings,
    InferenceSettings,
    WebSocketSettings,
)
from stacks.config import ENVIRONMENTS
from tests.infra.conftest import Synthesized

SETTINGS = {
    "aggregator": AggregatorSettings,
    "inference": InferenceSettings,
    "api": HttpSettings,
    "websocket": WebSocketSettings,
}
# Read by Powertools itself (the handlers' Logger), not by a btcpred settings object.
POWERTOOLS_VARIABLES = {"POWERTOOLS_LOG_LEVEL"}
# Plausible deploy-time values of the variables whose value is a CloudFormation token.
TOKEN_VALUES = {
    "REDIS_HOST": "btcpred-dev-features-abc123.serverless.apne1.cache.amazonaws.com",
    "REDIS_PORT": "6379",
    "REDIS_AUTH_SECRET_ARN": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:r-AbC",
    "WEBSOCKET_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:t",
    "MODEL_PATH": "s3://btcpred-dev-models/models",
    "PREDICTION_HISTORY_URI": "s3://btcpred-dev-predictions/predictions",
    "WEBSOCKET_ENDPOINT": "https://abc123.execute-api.ap-northeast-1.amazonaws.com/live",
}


class RecordingEnv(Mapping[str, str]):
    """An environment mapping that remembers which names were looked up."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values, self.read = values, set[str]()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self._values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def function(s: Synthesized, name: str) -> tuple[str, dict[str, Any]]:
    wanted = f"btcpred-{s.env}-{name}"
    found = [
        (k, v)
        for k, v in s.resources("AWS::Lambda::Function").items()
        if v["Properties"].get("FunctionName") == wanted
    ]
    assert len(found) == 1, f"no single function {wanted}"
    return found[0]


def statements(s: Synthesized, role_logical_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for policy in s.resources("AWS::IAM::Policy").values():
        roles = policy["Properties"].get("Roles", [])
        if {"Ref": role_logical_id} in roles:
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(params=list(ENVIRONMENTS))
def each(request: pytest.FixtureRequest, synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized[request.param]


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_variable_of_a_function_is_read_by_its_settings_and_parses(
    each: Synthesized, name: str
) -> None:
    _, fn = function(each, name)
    variables = fn["Properties"]["Environment"]["Variables"]
    values = {}
    for key, value in variables.items():
        if isinstance(value, str):
            values[key] = value
        else:
            assert key in TOKEN_VALUES, f"{name}: {key} is a token with no test value"
            values[key] = TOKEN_VALUES[key]
    env = RecordingEnv(values)
    settings = SETTINGS[name].from_env(env)
    unread = set(variables) - env.read - POWERTOOLS_VARIABLES
    assert not unread, f"{name} sets variables nothing reads: {sorted(unread)}"
    assert settings.redis_cluster is True
    assert settings.redis_url.startswith("rediss://"), "TLS to the cache"
    assert settings.redis_auth_secret_arn == TOKEN_VALUES["REDIS_AUTH_SECRET_ARN"]
    assert variables["SYMBOLS"] == ",".join(ENVIRONMENTS[each.env].symbols)
    (app_user,) = [
        u["Properties"]
        for u in each.resources("AWS::ElastiCache::User").values()
        if u["Properties"]["UserName"] != "default"
    ]
    assert app_user["AccessString"] == acl_access_string(settings.redis_keys), (
        f"{name}'s keys are not exactly what the cache user may touch"
    )


def test_no_secret_value_is_in_an_environment_variable_or_the_template(each: Synthesized) -> None:
    for name in SETTINGS:
        _, fn = function(each, name)
        for key, value in fn["Properties"]["Environment"]["Variables"].items():
            assert "TOKEN" not in key or key.endswith("_SECRET_ARN"), key
            assert "PASSWORD" not in key, key
            assert "resolve:secretsmanager" not in json.dumps(value), key
    users = each.resources("AWS::ElastiCache::User")
    passwords = [
        u["Properties"]["AuthenticationMode"].get("Passwords")
        for u in users.values()
        if u["Properties"]["AuthenticationMode"]["Type"] == "password"
    ]
    assert passwords, "the application user authenticates with a password"
    for pw in passwords:
        assert "{{resolve:secretsmanager:" in json.dumps(pw), "a dynamic reference, not a value"


def test_the_aggregator_event_source_is_safe_against_poison_and_reports_item_failures(
    each: Synthesized,
) -> None:
    config = ENVIRONMENTS[each.env]
    agg_id, _ = function(each, "aggregator")
    (mapping,) = [
        m["Properties"]
        for m in each.resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": agg_id}
    ]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == config.aggregator_retry_attempts >= 0
    assert 0 < mapping["MaximumRecordAgeInSeconds"] == config.aggregator_max_record_age_s
    assert mapping["MaximumBatchingWindowInSeconds"] == config.aggregator_batching_window_s
    assert mapping["ParallelizationFactor"] == config.aggregator_parallelization_factor
    assert mapping["BatchSize"] == config.aggregator_batch_size
    assert mapping["StartingPosition"] == "LATEST"
    stream_id = next(iter(each.resources("AWS::Kinesis::Stream")))
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    destination = mapping["DestinationConfig"]["OnFailure"]["Destination"]
    queue_id = destination["Fn::GetAtt"][0]
    assert each.template["Resources"][queue_id]["Type"] == "AWS::SQS::Queue"
    variables = function(each, "aggregator")[1]["Properties"]["Environment"]["Variables"]
    assert variables["POISON_RECORD_POLICY"] == "report", "poison reaches the DLQ, not lost"


def test_inference_runs_every_minute_overlapping_by_at_most_two(each: Synthesized) -> None:
    config = ENVIRONMENTS[each.env]
    inf_id, fn = function(each, "inference")
    props = fn["Properties"]
    settings = InferenceSettings.from_env(
        {k: v for k, v in props["Environment"]["Variables"].items() if isinstance(v, str)}
    )
    assert props["ReservedConcurrentExecutions"] == 2
    loop_ms = props["Timeout"] * 1000 - settings.stop_margin_ms
    assert loop_ms > 60_000 + settings.interval_s * 1000, "the next invocation starts first"
    assert settings.interval_s == config.prediction_interval_s
    (rule,) = [
        r["Properties"]
        for r in each.resources("AWS::Events::Rule").values()
        if any(t["Arn"] == {"Fn::GetAtt": [inf_id, "Arn"]} for t in r["Properties"]["Targets"])
    ]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    (target,) = rule["Targets"]
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
    (invoke,) = [
        c["Properties"]
        for c in each.resources("AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == {"Ref": inf_id}
    ]
    assert (invoke["MaximumRetryAttempts"], invoke["MaximumEventAgeInSeconds"]) == (0, 60), (
        "Lambda's async queue must not retry a start into the next minute's"
    )


def test_functions_run_on_arm64_python_312_in_private_subnets(each: Synthesized) -> None:
    for name in SETTINGS:
        _, fn = function(each, name)
        p = fn["Properties"]
        assert (p["Architectures"], p["Runtime"]) == (["arm64"], "python3.12"), name
        assert p["VpcConfig"]["SubnetIds"], name
        subnets = [each.template["Resources"][s["Ref"]] for s in p["VpcConfig"]["SubnetIds"]]
        for subnet in subnets:
            tags = {t["Key"]: t["Value"] for t in subnet["Properties"]["Tags"]}
            assert tags["aws-cdk:subnet-name"] == "app", name
        log_group = each.template["Resources"][p["LoggingConfig"]["LogGroup"]["Ref"]]
        days = ENVIRONMENTS[each.env].log_retention_days
        assert log_group["Properties"]["RetentionInDays"] == days, name


def test_no_iam_action_is_a_wildcard_and_star_resources_only_where_aws_requires(
    each: Synthesized,
) -> None:
    for logical_id, policy in each.resources("AWS::IAM::Policy").items():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            for action in as_list(st["Action"]):
                assert "*" not in action, f"{logical_id}: {action}"
            if "*" in as_list(st["Resource"]):
                if as_list(st["Action"]) == ["ecr:GetAuthorizationToken"]:
                    continue  # the ingestor's image pull logs in; ECR has no resource for it
                assert st.get("Sid") == "VpcNetworkInterfaces", f"{logical_id}: {st}"
                assert all(
                    a.startswith("ec2:")
                    and "NetworkInterface" in a
                    or a
                    in {
                        "ec2:DescribeSubnets",
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:UnassignPrivateIpAddresses",
                    }
                    for a in as_list(st["Action"])
                )


def test_the_management_api_permission_is_post_on_one_stages_connections(
    each: Synthesized,
) -> None:
    config = ENVIRONMENTS[each.env]
    (api_id,) = [
        k
        for k, v in each.resources("AWS::ApiGatewayV2::Api").items()
        if v["Properties"]["ProtocolType"] == "WEBSOCKET"
    ]
    for name in ("inference", "websocket"):
        _, fn = function(each, name)
        role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        manage = [
            s for s in statements(each, role_id) if s["Action"] == "execute-api:ManageConnections"
        ]
        assert len(manage) == 1, name
        assert manage[0]["Resource"] == {
            "Fn::Join": [
                "",
                [
                    f"arn:aws:execute-api:{config.region}:{config.account}:",
                    {"Ref": api_id},
                    "/live/POST/@connections/*",
                ],
            ]
        }, name
    for name in ("aggregator", "api"):
        _, fn = function(each, name)
        role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        actions = {a for s in statements(each, role_id) for a in as_list(s["Action"])}
        assert "execute-api:ManageConnections" not in actions, name
        assert not any(a.startswith("s3:") for a in actions), name


def test_inference_reads_models_and_writes_history_only_under_its_prefixes(
    dev: Synthesized,
) -> None:
    _, fn = function(dev, "inference")
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    s3 = {
        a: json.dumps(s["Resource"])
        for s in statements(dev, role_id)
        for a in as_list(s["Action"])
        if a.startswith("s3:")
    }
    assert set(s3) == {"s3:GetObject", "s3:ListBucket", "s3:PutObject"}
    assert s3["s3:GetObject"].endswith('/models/*"]]}')
    assert s3["s3:PutObject"].endswith('/predictions/*"]]}')


def test_every_bucket_is_encrypted_private_tls_only_and_logged(each: Synthesized) -> None:
    buckets = each.resources("AWS::S3::Bucket")
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]["Statement"]
        for p in each.resources("AWS::S3::BucketPolicy").values()
    }
    logged = 0
    for logical_id, bucket in buckets.items():
        p = bucket["Properties"]
        assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical_id
        assert p["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        assert p["LifecycleConfiguration"]["Rules"], logical_id
        denies = [
            s
            for s in policies[logical_id]
            if s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        ]
        assert denies, f"{logical_id} accepts plain HTTP"
        logged += "LoggingConfiguration" in p
    assert logged == len(buckets) - 1, "every bucket but the access-log bucket logs access"


def test_stream_queue_database_and_cache_are_encrypted_and_private(each: Synthesized) -> None:
    (stream,) = each.resources("AWS::Kinesis::Stream").values()
    assert stream["Properties"]["StreamEncryption"]["EncryptionType"] == "KMS"
    for queue in each.resources("AWS::SQS::Queue").values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    (db,) = each.resources("AWS::RDS::DBInstance").values()
    assert db["Properties"]["StorageEncrypted"] is True
    assert db["Properties"]["PubliclyAccessible"] is False
    params = each.template["Resources"][db["Properties"]["DBParameterGroupName"]["Ref"]]
    assert params["Properties"]["Parameters"]["rds.force_ssl"] == "1", "sslmode=require"
    (cache,) = each.resources("AWS::ElastiCache::ServerlessCache").values()
    assert cache["Properties"]["UserGroupId"], "RBAC"
    for sg_id in cache["Properties"]["SecurityGroupIds"]:
        ingress = [
            r["Properties"]
            for r in each.resources("AWS::EC2::SecurityGroupIngress").values()
            if r["Properties"]["GroupId"] == sg_id
        ]
        assert ingress, "the functions may connect"
        assert all("SourceSecurityGroupId" in r for r in ingress), "no CIDR may connect"
    default = [
        u["Properties"]
        for u in each.resources("AWS::ElastiCache::User").values()
        if u["Properties"]["UserName"] == "default"
    ]
    assert len(default) == 1, "ElastiCache requires a user named default"
    assert default[0]["AccessString"].startswith("off"), "and it is disabled"


def test_no_execute_api_interface_endpoint_and_an_s3_gateway_endpoint(each: Synthesized) -> None:
    endpoints = each.resources("AWS::EC2::VPCEndpoint").values()
    services = [json.dumps(e["Properties"]["ServiceName"]) for e in endpoints]
    assert not any("execute-api" in s for s in services)
    gateways = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Gateway"]
    assert any(".s3" in json.dumps(e["Properties"]["ServiceName"]) for e in gateways)
    assert each.resources("AWS::EC2::FlowLog")


def test_environments_differ_as_their_config_rows_say(synthesized: dict[str, Synthesized]) -> None:
    for env, s in synthesized.items():
        config = ENVIRONMENTS[env]
        assert len(s.resources("AWS::EC2::NatGateway")) == config.nat_gateways
        (db,) = s.resources("AWS::RDS::DBInstance").values()
        assert db["Properties"]["MultiAZ"] is config.db_multi_az
        assert db["Properties"]["DeletionProtection"] is config.deletion_protection
        assert db["Properties"]["BackupRetentionPeriod"] == config.db_backup_retention_days
        assert db["DeletionPolicy"] == ("Snapshot" if config.retain_data else "Delete")
        assert db["UpdateReplacePolicy"] == ("Snapshot" if config.retain_data else "Delete")
        for kind in ("AWS::S3::Bucket", "AWS::Kinesis::Stream"):
            for resource in s.resources(kind).values():
                kept = resource.get("DeletionPolicy") == "RetainExceptOnCreate"
                assert kept is config.retain_data, f"{env}: {kind}"
        (stream,) = s.resources("AWS::Kinesis::Stream").values()
        assert stream["Properties"]["RetentionPeriodHours"] == config.kinesis_retention_hours
    assert synthesized["prod"].stack.termination_protection is True
    assert synthesized["dev"].stack.termination_protection is False


def test_the_websocket_stage_is_throttled_and_logs_access(each: Synthesized) -> None:
    config = ENVIRONMENTS[each.env]
    stages = {
        s["Properties"]["StageName"]: s["Properties"]
        for s in each.resources("AWS::ApiGatewayV2::Stage").values()
    }
    assert set(stages) == {"live", "$default"}
    for name, rate in (("live", config.websocket_rate_limit), ("$default", config.http_rate_limit)):
        stage = stages[name]
        assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == rate
        assert stage["AccessLogSettings"]["DestinationArn"], name
        assert "requestId" in stage["AccessLogSettings"]["Format"], name
    routes = {
        r["Properties"]["RouteKey"] for r in each.resources("AWS::ApiGatewayV2::Route").values()
    }
    assert {
        "$connect",
        "$disconnect",
        "$default",
        "GET /health",
        "GET /prediction/latest",
    } <= routes
    assert each.resources("AWS::ApiGateway::Account"), "the role that stage logging needs"
