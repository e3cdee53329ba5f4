"""Session fixtures of the infrastructure tests: the Lambda layers (``layers/``), built once,
and every environment synthesized once, the way ``make synth`` does (cdk.json's context,
cdk-nag attached).

Both layer builds go to the repository's own ``build/layers`` (the aarch64 layers the CDK app
deploys, and the ``x86_64`` twin this machine can import), so they are incremental: the first
session downloads the wheels and builds (seconds with pip's cache), later ones find every stamp
up to date. A failing pip fails the tests: they need PyPI, which every machine of the project
reaches.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from layers.build import BuildResult, build_all
from layers.recipes import DEFAULT_ROOT

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


@dataclass(frozen=True, slots=True)
class Built:
    """One session build: its results and what it printed."""

    target: str
    root: Path
    results: dict[str, BuildResult]
    log: list[str]


def _build(target: str) -> Built:
    log: list[str] = []
    results = build_all(target=target, root=DEFAULT_ROOT, log=log.append)
    return Built(target, DEFAULT_ROOT, {r.name: r for r in results}, log)


@pytest.fixture(scope="session")
def aarch64_layers() -> Built:
    """The real layers (Lambda arm64, Python 3.12), built or found up to date."""
    return _build("aarch64")


@pytest.fixture(scope="session")
def x86_64_layers() -> Built:
    """The x86_64 twin for this interpreter's Python, built or found up to date."""
    return _build("x86_64")


@pytest.fixture(scope="session")
def synthesized(
    aarch64_layers: Built, tmp_path_factory: pytest.TempPathFactory
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
