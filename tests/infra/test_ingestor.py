"""The ingestor's Fargate service in every synthesized environment: platform and size, the
deployment settings, the container's contract with ``btcpred ingest`` (environment, health
check, stop timeout against the flush deadline), network placement, the task role, logs, its
alarms, and the image asset synth stages (small, only the build inputs)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from stacks.config import ENVIRONMENTS, ConfigError, EnvConfig, config_for
from tests.infra.conftest import ROOT, Synthesized, cdk_context

CONTRACT_VARIABLES = {
    "SYMBOLS",
    "KINESIS_STREAM_NAME",
    "BINANCE_API_KEY_SECRET_ARN",
    "BINANCE_STREAM_URL",
    "BINANCE_REST_URL",
    "LOG_LEVEL",
    "INGEST_FLUSH_DEADLINE_S",
    "INGEST_HEARTBEAT_PATH",
    "ENVIRONMENT",
}
MAX_ASSET_BYTES = 5 * 1024 * 1024


def one(s: Synthesized, kind: str) -> tuple[str, dict[str, Any]]:
    found = s.resources(kind)
    assert len(found) == 1, f"{kind}: {list(found)}"
    logical_id, resource = next(iter(found.items()))
    return logical_id, resource["Properties"]


def container(s: Synthesized) -> dict[str, Any]:
    _, task = one(s, "AWS::ECS::TaskDefinition")
    (definition,) = task["ContainerDefinitions"]
    assert definition["Name"] == "ingestor"
    return dict(definition)


def environment(s: Synthesized) -> dict[str, Any]:
    return {v["Name"]: v["Value"] for v in container(s)["Environment"]}


def logical_id_of(s: Synthesized, kind: str, name_prefix: str) -> str:
    (found,) = [k for k in s.resources(kind) if k.startswith(name_prefix)]
    return found


def alarm(s: Synthesized, name: str) -> dict[str, Any]:
    wanted = f"btcpred-{s.env}-{name}"
    (found,) = [
        a["Properties"]
        for a in s.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"] == wanted
    ]
    return dict(found)


@pytest.fixture(params=list(ENVIRONMENTS))
def each(request: pytest.FixtureRequest, synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized[request.param]


def test_the_task_is_arm64_fargate_sized_by_the_config_row(each: Synthesized) -> None:
    config = ENVIRONMENTS[each.env]
    _, task = one(each, "AWS::ECS::TaskDefinition")
    assert task["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["NetworkMode"] == "awsvpc"
    assert (task["Cpu"], task["Memory"]) == (
        str(config.ingestor_cpu),
        str(config.ingestor_memory_mb),
    )


def test_the_sizes_are_the_agreed_ones() -> None:
    sizes = {n: (c.ingestor_cpu, c.ingestor_memory_mb) for n, c in ENVIRONMENTS.items()}
    assert sizes == {"dev": (256, 512), "staging": (512, 1024), "prod": (512, 1024)}


@pytest.mark.parametrize(("cpu", "memory"), [(256, 4096), (512, 512), (1024, 1024), (300, 1024)])
def test_a_size_fargate_does_not_offer_is_refused(cpu: int, memory: int) -> None:
    with pytest.raises(ConfigError, match="ingestor_cpu/ingestor_memory_mb"):
        EnvConfig(name="dev", ingestor_cpu=cpu, ingestor_memory_mb=memory)
    assert EnvConfig(name="dev", ingestor_cpu=1024, ingestor_memory_mb=3072).ingestor_cpu == 1024


def test_the_service_keeps_one_task_and_starts_the_new_one_first(each: Synthesized) -> None:
    _, service = one(each, "AWS::ECS::Service")
    deployment = service["DeploymentConfiguration"]
    assert service["DesiredCount"] == 1
    assert (deployment["MinimumHealthyPercent"], deployment["MaximumPercent"]) == (100, 200)
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert service["LaunchType"] == "FARGATE"
    assert service["PlatformVersion"] == "LATEST"
    assert service["EnableExecuteCommand"] is False
    assert service["ServiceName"] == f"btcpred-{each.env}-ingestor"
    cluster_id, cluster = one(each, "AWS::ECS::Cluster")
    assert service["Cluster"] == {"Ref": cluster_id}
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]
    outputs = each.template["Outputs"]
    assert outputs["IngestorCluster"]["Value"] == {"Ref": cluster_id}
    service_id = logical_id_of(each, "AWS::ECS::Service", "Ingestor")
    assert outputs["IngestorService"]["Value"] == {"Fn::GetAtt": [service_id, "Name"]}


def test_sigterm_leaves_the_flush_time_to_finish_and_health_is_checked(each: Synthesized) -> None:
    c = container(each)
    flush = int(environment(each)["INGEST_FLUSH_DEADLINE_S"])
    assert (c["StopTimeout"], flush) == (30, 20)
    assert flush < c["StopTimeout"], "ECS must not SIGKILL a flush in progress"
    assert c["HealthCheck"] == {
        "Command": ["CMD", "btcpred", "ingest-health"],
        "Interval": 30,
        "Timeout": 5,
        "Retries": 3,
        "StartPeriod": 60,
    }
    assert c["Essential"] is True


def test_the_environment_is_the_ingestors_contract_without_secret_values(
    each: Synthesized,
) -> None:
    config = ENVIRONMENTS[each.env]
    env = environment(each)
    assert set(env) == CONTRACT_VARIABLES
    assert env["SYMBOLS"] == ",".join(config.symbols)
    assert env["ENVIRONMENT"] == each.env
    assert env["LOG_LEVEL"] == config.log_level
    assert env["BINANCE_STREAM_URL"] == "wss://stream-sbe.binance.com:9443"
    assert env["BINANCE_REST_URL"] == "https://api.binance.com"
    assert env["INGEST_HEARTBEAT_PATH"] == "/tmp/btcpred-ingest.heartbeat"
    stream_id = next(iter(each.resources("AWS::Kinesis::Stream")))
    assert env["KINESIS_STREAM_NAME"] == {"Ref": stream_id}
    secret_id = logical_id_of(each, "AWS::SecretsManager::Secret", "SecretsBinanceApiKey")
    assert env["BINANCE_API_KEY_SECRET_ARN"] == {"Ref": secret_id}
    assert "Secrets" not in container(each), "the process reads the key, ECS injects nothing"
    assert "resolve:secretsmanager" not in json.dumps(container(each))


def test_the_task_is_private_and_may_only_call_out_on_443_and_9443(each: Synthesized) -> None:
    _, service = one(each, "AWS::ECS::Service")
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    for subnet in network["Subnets"]:
        tags = each.template["Resources"][subnet["Ref"]]["Properties"]["Tags"]
        assert {t["Key"]: t["Value"] for t in tags}["aws-cdk:subnet-name"] == "app"
    (group_ref,) = network["SecurityGroups"]
    group_id = group_ref["Fn::GetAtt"][0]
    group = each.template["Resources"][group_id]["Properties"]
    egress = {
        (r["IpProtocol"], r["FromPort"], r["ToPort"], r["CidrIp"])
        for r in group["SecurityGroupEgress"]
    }
    assert egress == {("tcp", 443, 443, "0.0.0.0/0"), ("tcp", 9443, 9443, "0.0.0.0/0")}
    assert "SecurityGroupIngress" not in group
    ingress = [
        r
        for kind in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress")
        for r in each.resources(kind).values()
        if group_id in json.dumps(r["Properties"])
    ]
    assert not ingress, "nothing may connect to the ingestor, and no other rule is added"


def test_the_task_role_writes_the_stream_and_reads_the_binance_key_only(
    each: Synthesized,
) -> None:
    _, task = one(each, "AWS::ECS::TaskDefinition")
    role_id = task["TaskRoleArn"]["Fn::GetAtt"][0]
    role = each.template["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ecs-tasks.amazonaws.com"
    }
    assert "ManagedPolicyArns" not in role
    statements = [
        st
        for p in each.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for st in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    stream_id = next(iter(each.resources("AWS::Kinesis::Stream")))
    secret_id = logical_id_of(each, "AWS::SecretsManager::Secret", "SecretsBinanceApiKey")
    granted = sorted(
        (json.dumps(st["Action"]), json.dumps(st["Resource"]), st["Effect"]) for st in statements
    )
    assert granted == sorted(
        [
            (
                json.dumps(["kinesis:PutRecord", "kinesis:PutRecords"]),
                json.dumps({"Fn::GetAtt": [stream_id, "Arn"]}),
                "Allow",
            ),
            (
                json.dumps("secretsmanager:GetSecretValue"),
                json.dumps({"Ref": secret_id}),
                "Allow",
            ),
        ]
    )


def test_logs_go_to_the_ingestors_group_without_blocking_the_process(each: Synthesized) -> None:
    logging = container(each)["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    options = logging["Options"]
    assert options["mode"] == "non-blocking"
    assert options["max-buffer-size"] == f"{25 * 1024 * 1024}b"
    group = each.template["Resources"][options["awslogs-group"]["Ref"]]["Properties"]
    assert group["LogGroupName"] == f"/ecs/btcpred-{each.env}/ingestor"
    assert group["RetentionInDays"] == ENVIRONMENTS[each.env].log_retention_days


def _metric(a: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]], str, int]:
    return (
        a["Namespace"],
        a["MetricName"],
        a["Dimensions"],
        a.get("Statistic") or (a["ExtendedStatistic"]),
        a["Period"],
    )


def test_the_ingestor_alarms_read_its_metrics(each: Synthesized) -> None:
    t = ENVIRONMENTS[each.env].alarms
    ingestor = [{"Name": "service", "Value": "ingestor"}]
    frames = alarm(each, "ingestor-no-frames")
    assert _metric(frames) == ("btcpred", "Frames", ingestor, "Sum", 60)
    assert (frames["Threshold"], frames["ComparisonOperator"]) == (1, "LessThanThreshold")
    assert (frames["EvaluationPeriods"], frames["DatapointsToAlarm"]) == (2, 2)
    assert frames["TreatMissingData"] == "breaching"
    gaps = alarm(each, "ingestor-gaps")
    assert _metric(gaps) == ("btcpred", "Gaps", ingestor, "Sum", 300)
    assert gaps["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert gaps["Threshold"] == t.ingest_gap_count == 1
    lag = alarm(each, "ingestor-lag")
    assert _metric(lag) == ("btcpred", "ExchangeLagMs", ingestor, "p99", 60)
    assert (lag["Threshold"], lag["EvaluationPeriods"]) == (t.max_ingest_lag_p99_ms, 3)
    puts = alarm(each, "ingestor-put-failures")
    inputs = {
        q["MetricStat"]["Metric"]["MetricName"]: (
            q["MetricStat"]["Stat"],
            q["MetricStat"]["Period"],
        )
        for q in puts["Metrics"]
        if "MetricStat" in q
    }
    assert inputs == {"PutErrors": ("Sum", 300), "PutFailedEntries": ("Sum", 300)}
    assert puts["Threshold"] == t.max_ingest_put_failures_per_5min
    tasks = alarm(each, "ingestor-no-tasks")
    cluster_id, _ = one(each, "AWS::ECS::Cluster")
    service_id = logical_id_of(each, "AWS::ECS::Service", "Ingestor")
    assert _metric(tasks) == (
        "ECS/ContainerInsights",
        "RunningTaskCount",
        [
            {"Name": "ClusterName", "Value": {"Ref": cluster_id}},
            {"Name": "ServiceName", "Value": {"Fn::GetAtt": [service_id, "Name"]}},
        ],
        "Maximum",
        60,
    )
    assert (tasks["Threshold"], tasks["ComparisonOperator"]) == (1, "LessThanThreshold")
    assert tasks["TreatMissingData"] == "breaching"


# --- the image --------------------------------------------------------------------------------


def staged_image(s: Synthesized) -> tuple[Path, dict[str, Any]]:
    assets = json.loads((s.outdir / f"{s.stack.stack_name}.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    return s.outdir / image["source"]["directory"], image["source"]


def test_synth_stages_only_the_images_build_inputs(dev: Synthesized) -> None:
    directory, source = staged_image(dev)
    assert source["dockerFile"] == "ingestor/Dockerfile"
    assert source["platform"] == "linux/arm64"
    files = [p for p in directory.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    assert size < MAX_ASSET_BYTES, f"staged image context is {size / 1e6:.1f} MB"
    top = {p.name for p in directory.iterdir()}
    assert top == {
        ".dockerignore",
        "ingestor",
        "src",
        "pyproject.toml",
        "README.md",
        "requirements.txt",
        "requirements-ingest.txt",
    }
    assert (directory / "ingestor" / "Dockerfile").is_file()
    assert (directory / "src" / "btcpred" / "__init__.py").is_file()
    relative = {str(p.relative_to(directory)) for p in files}
    for unwanted in (".venv", "tests", "fixtures", "models", "node_modules", "cdk.out", ".git"):
        assert not any(r.split("/")[0] == unwanted for r in relative), unwanted
    assert not any("__pycache__" in r or r.endswith(".pyc") for r in relative)


def dockerfile() -> str:
    return (ROOT / "ingestor" / "Dockerfile").read_text()


def test_the_image_is_arm64_non_root_and_exec_form() -> None:
    text = dockerfile()
    bases = re.findall(r"^FROM (\S+) (\S+)", text, flags=re.M)
    assert bases, "no FROM line"
    for platform, image in bases:
        assert platform == "--platform=linux/arm64"
        assert re.fullmatch(r"python:3\.12\.\d+-slim-\w+", image), f"{image}: pin the tag"
    assert re.search(r"^USER 10001:10001$", text, flags=re.M)
    assert re.search(r'^ENTRYPOINT \["btcpred", "ingest"\]$', text, flags=re.M)
    assert re.search(r"^HEALTHCHECK NONE$", text, flags=re.M)
    assert "PYTHONUNBUFFERED=1" in text


def test_the_image_installs_the_pins_from_the_requirement_files_only() -> None:
    text = dockerfile()
    assert not re.search(r"\w==\d", text), "versions come from the pin files, not the Dockerfile"
    assert "-r requirements-ingest.txt" in text
    assert "pip install --no-deps ." in text
    light = re.search(r"grep -E '\^\(([^)]*)\)==' requirements.txt", text)
    assert light, "the light pins are read from requirements.txt"
    assert set(light.group(1).split("|")) == {"msgspec", "orjson"}
    pins = (ROOT / "requirements.txt").read_text().splitlines()
    for name in ("msgspec", "orjson"):
        assert len([p for p in pins if p.startswith(f"{name}==")]) == 1, name
    patterns = [
        line for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] not in "#"
    ]
    assert patterns[0] == "*", "everything is excluded first, then the build inputs admitted"


def test_a_first_deploy_may_start_the_service_without_a_task(tmp_path: Path) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_ecs as ecs

    from stacks.btcpred_stack import BtcpredStack

    assert config_for({"env": "prod"}).ingestor_desired_count == 1
    with pytest.raises(ConfigError, match="ingestor_tasks"):
        config_for({"env": "dev", "ingestor_tasks": "2"})
    with pytest.raises(ConfigError, match="ingestor_tasks"):
        config_for({"env": "dev", "ingestor_tasks": "none"})
    app = cdk.App(context=cdk_context("dev"), outdir=str(tmp_path))
    stack = BtcpredStack(app, config_for({"env": "dev", "ingestor_tasks": "0"}))
    service = stack.ingestor.service.node.default_child
    assert isinstance(service, ecs.CfnService)
    assert service.desired_count == 0


def test_the_console_script_imports_without_what_the_image_leaves_out() -> None:
    import subprocess
    import sys

    # The image installs the package with --no-deps: numpy, onnxruntime, redis and fastavro are
    # absent, so `btcpred` (the entry point and the health check) must start without them.
    code = (
        "import sys\n"
        "for m in ('numpy', 'onnxruntime', 'redis', 'fastavro'):\n"
        "    sys.modules[m] = None\n"
        "import btcpred.cli, btcpred.cli_ingest\n"
        "import btcpred.ingest.main, btcpred.ingest.service, btcpred.ingest.aws\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr
