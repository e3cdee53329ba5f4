"""Session builds of the Lambda layers (``layers/``), shared by the infrastructure tests.

Both builds go to the repository's own ``build/layers`` (the aarch64 layers the CDK app
deploys, and the ``x86_64`` twin this machine can import), so they are incremental: the first
session downloads the wheels and builds (seconds with pip's cache), later ones find every stamp
up to date. A failing pip fails the tests: they need PyPI, which every machine of the project
reaches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from layers.build import BuildResult, build_all
from layers.recipes import DEFAULT_ROOT


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
