"""The pure core imports no AWS SDK and never reads the environment (README, STYLE.md).

The core is every module of ``src/btcpred`` except the edges that run as tools on a developer's
machine: the command line (``cli*.py``), the benchmarks (``bench/``), the simulators and local
service runners (``sim/``) and the local stack (``local/``), and the AWS side of a port, which
lives in a module named ``aws.py`` (``inference/aws.py``, metrics through Powertools;
``btcpred/aws.py``, the handlers' Secrets Manager client and Redis credentials).
Lambda handlers and the container entry point live outside ``src`` and pass ``os.environ`` and
AWS clients in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "btcpred"
EDGES = ("cli.py", "cli_model.py", "cli_ingest.py", "cli_history.py", "bench", "sim", "local")
AWS_SDK = {"boto3", "botocore", "aws_lambda_powertools"}
ENV_NAMES = {"environ", "environb", "getenv", "putenv"}


def core_modules() -> list[Path]:
    return sorted(
        p
        for p in SRC.rglob("*.py")
        if not p.relative_to(SRC).parts[0].startswith(EDGES) and p.name != "aws.py"
    )


def violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in AWS_SDK]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in AWS_SDK:
                found.append(node.module)
            if node.module == "os":
                found += [f"os.{a.name}" for a in node.names if a.name in ENV_NAMES]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ENV_NAMES
        ):
            found.append(f"os.{node.attr}")
    return found


def test_the_core_is_what_the_readme_says_it_is() -> None:
    modules = core_modules()

    assert len(modules) > 50  # the scan really walked the package
    assert SRC / "aggregator" / "core.py" in modules
    assert SRC / "cli.py" not in modules
    assert SRC / "credentials.py" in modules  # the secret's parsing and the port are core
    assert SRC / "aws.py" not in modules  # making the boto3 client is the edge


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_a_core_module_imports_no_aws_sdk_and_reads_no_environment(path: Path) -> None:
    assert violations(path) == []


def test_the_scan_catches_what_it_forbids(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nimport boto3\nfrom botocore.config import Config\nx = os.environ['A']\n"
        "y = os.getenv('B')\nfrom os import environ, path\n",
        encoding="utf-8",
    )

    assert sorted(violations(sample)) == sorted(
        ["boto3", "botocore.config", "os.environ", "os.getenv", "os.environ"]
    )
