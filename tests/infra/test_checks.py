"""The checks that fail the build: cdk-nag (no unacknowledged finding, every acknowledgement
with a reason), cfn-lint (no error, no untriaged warning), and the config table's guards."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs

from stacks.btcpred_stack import build
from stacks.config import ENVIRONMENTS, ConfigError, EnvConfig, config_for
from tests.infra.conftest import ROOT, Synthesized, cdk_context


def report(s: Synthesized) -> dict[str, object]:
    return json.loads((s.outdir / "validation-report.json").read_text())


@pytest.fixture(params=list(ENVIRONMENTS))
def each(request: pytest.FixtureRequest, synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized[request.param]


def test_no_finding_is_left_unacknowledged_and_each_acknowledgement_has_a_reason(
    each: Synthesized,
) -> None:
    plugins = {p["pluginName"]: p for p in report(each)["pluginReports"]}  # type: ignore[index]
    nag = plugins["AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == [], "warnings count as findings too"
    for suppressed in nag["suppressedViolations"]:
        reason = suppressed["violatingConstructs"][0].get("reason") or suppressed.get("reason", "")
        assert len(str(reason)) >= 40, f"{suppressed['ruleName']}: no real reason: {reason!r}"


def test_an_unacknowledged_finding_fails_the_synth(tmp_path: Path) -> None:
    app = cdk.App(context=cdk_context("dev"), outdir=str(tmp_path))
    stack = build(app)
    sqs.Queue(stack, "PlainQueue")  # no TLS-only policy, no DLQ: AwsSolutions-SQS3, SQS4
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    violations = json.loads((tmp_path / "validation-report.json").read_text())["pluginReports"]
    rules = {
        v["ruleName"]
        for p in violations
        for v in p["violations"]
        if any("PlainQueue" in c["constructPath"] for c in v["violatingConstructs"])
    }
    assert {"AwsSolutions-SQS3", "AwsSolutions-SQS4"} <= rules


def test_cfn_lint_finds_nothing_in_any_template(synthesized: dict[str, Synthesized]) -> None:
    templates = [
        str(s.outdir / f"{s.stack.stack_name}.template.json") for s in synthesized.values()
    ]
    exe = shutil.which("cfn-lint", path=str(Path(sys.executable).parent))
    assert exe, "cfn-lint is installed with the dev requirements"
    done = subprocess.run(
        [exe, "--config-file", str(ROOT / ".cfnlintrc.yaml"), "--", *templates],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_config_table_refuses_what_would_break_an_environment() -> None:
    with pytest.raises(ConfigError, match="Binance refuses US regions"):
        config_for({"env": "prod", "region": "us-east-1"})
    with pytest.raises(ConfigError, match="env='qa'"):
        config_for({"env": "qa"})
    with pytest.raises(ConfigError, match="prod: must keep deletion protection"):
        replace(ENVIRONMENTS["prod"], deletion_protection=False)
    with pytest.raises(ConfigError, match="inference_timeout_s"):
        EnvConfig(name="dev", inference_timeout_s=60)
    with pytest.raises(ConfigError, match="aggregator_max_record_age_s"):
        EnvConfig(name="dev", aggregator_max_record_age_s=-1)
    with pytest.raises(ConfigError, match="nat_gateways"):
        EnvConfig(name="dev", max_azs=2, nat_gateways=3)


def test_account_and_region_come_from_context_when_given() -> None:
    config = config_for({"env": "staging", "account": "210987654321", "region": "eu-west-1"})
    assert (config.name, config.account, config.region) == ("staging", "210987654321", "eu-west-1")
    assert config_for({}).name == "dev"
