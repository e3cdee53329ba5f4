"""Synthesize every environment once per session, the way ``make synth`` does (cdk.json's
context, cdk-nag attached), and hand the templates to the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("dev", "staging", "prod")


def cdk_context(env: str) -> dict[str, Any]:
    """cdk.json's context (feature flags) plus cdk.context.json (the committed AZs)."""
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    context.update(json.loads((ROOT / "cdk.context.json").read_text()))
    return {**context, "env": env}


@dataclass(frozen=True)
class Synthesized:
    """One environment's synthesized template and the stack object behind it."""

    env: str
    template: dict[str, Any]
    stack: Any
    outdir: Path

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        """Resources of one CloudFormation type, by logical id."""
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == kind}


@pytest.fixture(scope="session")
def built_layers() -> None:
    """The layers the functions reference (incremental: cheap after the first build)."""
    subprocess.run([sys.executable, "-m", "layers.build"], cwd=ROOT, check=True)


@pytest.fixture(scope="session")
def synthesized(
    built_layers: None, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Synthesized]:
    """dev, staging and prod, synthesized through ``stacks.btcpred_stack.build``."""
    import aws_cdk as cdk

    from stacks.btcpred_stack import build

    out: dict[str, Synthesized] = {}
    for env in ENVIRONMENTS:
        outdir = tmp_path_factory.mktemp(f"cdk-{env}")
        app = cdk.App(context=cdk_context(env), outdir=str(outdir))
        stack = build(app)
        assembly = app.synth()
        template = assembly.get_stack_by_name(stack.stack_name).template
        out[env] = Synthesized(env, template, stack, outdir)
    return out


@pytest.fixture(scope="session")
def dev(synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized["dev"]


@pytest.fixture(scope="session")
def prod(synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized["prod"]
