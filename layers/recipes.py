"""What each Lambda layer holds and which layers each function attaches: data, not code.

A :class:`Layer` names the requirements it installs (their exact versions are read from
``requirements.txt``, ``requirements-lambda.txt`` and ``requirements-history.txt`` by
:mod:`layers.build`, the single source of truth), the declared dependencies it deliberately leaves
out (:class:`Exclusion`, with the reason) and what it trims beyond the common :data:`TRIM` rules.
The ``btcpred`` layer is the package itself, copied from ``src/btcpred`` without the edges no Lambda
imports.

The CDK app attaches ``FUNCTION_LAYERS[function]`` in that order, each one as
``aws_lambda.Code.from_asset(str(layer_path(name)))``; a built layer directory holds ``python/``,
which Lambda mounts as ``/opt/python`` (on ``sys.path``).

boto3, botocore and their dependencies are never in a layer: the Lambda Python 3.12 runtime
provides them (:data:`RUNTIME_PACKAGES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

__all__ = [
    "DEFAULT_ROOT",
    "DEFAULT_TARGET",
    "FUNCTION_LAYERS",
    "LAYERS",
    "NEVER_IN_LAYERS",
    "REPO_ROOT",
    "REQUIREMENTS_FILES",
    "RUNTIME_PACKAGES",
    "TARGETS",
    "TRIM",
    "Exclusion",
    "Layer",
    "Target",
    "TrimRules",
    "layer_path",
]

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
DEFAULT_ROOT: Final = REPO_ROOT / "build" / "layers"
"""Where layers are built unless ``--root`` says otherwise."""
REQUIREMENTS_FILES: Final = (
    "requirements.txt",
    "requirements-lambda.txt",
    "requirements-history.txt",
)
"""The files whose ``name==version`` lines pin every layer requirement (repo-relative)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A platform the layers are built for (pip's ``--platform`` and ``--python-version``)."""

    name: str
    pip_platforms: tuple[str, ...]
    """Wheel tags accepted, newest first (some wheels ship only the older manylinux2014 tag)."""
    python_version: str | None
    """``X.Y`` of the wheels; ``None``: the interpreter that runs the build."""
    subdir: str
    """Sub-directory of the root the layers go to (``""``: the root itself)."""


TARGETS: Final[Mapping[str, Target]] = MappingProxyType(
    {
        # What the functions run on: Lambda arm64 (Graviton), Python 3.12, Amazon Linux 2023.
        "aarch64": Target(
            "aarch64", ("manylinux_2_28_aarch64", "manylinux2014_aarch64"), "3.12", ""
        ),
        # The twin for this machine, so tests can import the layers: it differs from the real
        # layer only in its platform and ABI tags (same pins, same trimming).
        "x86_64": Target(
            "x86_64", ("manylinux_2_28_x86_64", "manylinux2014_x86_64"), None, "x86_64"
        ),
    }
)
DEFAULT_TARGET: Final = "aarch64"


@dataclass(frozen=True, slots=True)
class TrimRules:
    """What is removed from every layer after installation."""

    dir_names: tuple[str, ...]
    """Directories of these names, anywhere (outside ``*.dist-info``)."""
    file_globs: tuple[str, ...]
    """Files matching these globs, anywhere (outside ``*.dist-info``)."""
    top_level: tuple[str, ...]
    """Entries directly under ``python/`` (pip's scripts and headers)."""
    dist_info_keep: tuple[str, ...]
    """Globs (lower case) of the ``*.dist-info`` entries kept; everything else there goes."""


TRIM: Final = TrimRules(
    dir_names=("__pycache__", "tests", "test"),
    # byte code is compiled for the builder's interpreter, not 3.12; stubs are for type checkers
    file_globs=("*.pyc", "*.pyo", "*.pyi"),
    top_level=("bin", "include", "share"),
    # METADATA: importlib.metadata.version() needs it (redis reads its own version that way for
    # CLIENT SETINFO); the licences must ship with the code they cover.
    dist_info_keep=(
        "metadata",
        "licen[cs]e*",
        "licenses",
        "licences",
        "copying*",
        "notice*",
        "authors*",
    ),
)


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A declared dependency that a layer leaves out, and why."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer: the requirements pip installs, or a package copied from the source tree."""

    name: str
    description: str
    requirements: tuple[str, ...] = ()
    """Distribution names; each must be pinned with ``==`` in :data:`REQUIREMENTS_FILES`."""
    resolve_dependencies: bool = True
    """Let pip add the requirements' dependencies (else ``--no-deps``: the list is complete)."""
    excluded: tuple[Exclusion, ...] = ()
    """Declared dependencies deliberately not installed."""
    trim_paths: tuple[str, ...] = ()
    """Paths under ``python/`` removed beyond :data:`TRIM` (not imported at run time)."""
    source: str | None = None
    """Repo-relative package directory copied to ``python/<its name>`` (instead of pip)."""
    source_excludes: tuple[str, ...] = ()
    """Globs of entries directly under ``source`` that are not copied."""


LAYERS: Final[Mapping[str, Layer]] = MappingProxyType(
    {
        "core": Layer(
            name="core",
            description="msgspec, orjson, redis and Powertools (with jmespath, typing_extensions)",
            requirements=("msgspec", "orjson", "redis", "aws-lambda-powertools"),
        ),
        "inference": Layer(
            name="inference",
            description="numpy, onnxruntime and fastavro: the inference function's serving stack",
            requirements=("numpy", "onnxruntime", "fastavro"),
            resolve_dependencies=False,
            excluded=(
                Exclusion(
                    "packaging",
                    "imported only by onnxruntime.backend, .tools, .transformers and "
                    ".quantization, which are trimmed; never by `import onnxruntime` or a session",
                ),
                Exclusion(
                    "protobuf",
                    "google.protobuf is imported only through onnx, by onnxruntime.tools, "
                    ".transformers and .quantization (trimmed); the C++ runtime parses models",
                ),
                Exclusion(
                    "flatbuffers",
                    "imported only by onnxruntime.quantization (calibration tables) and "
                    ".tools.ort_format_model, both trimmed",
                ),
            ),
            trim_paths=(
                # onnxruntime: offline tools, model converters and quantizers (they need onnx,
                # torch, protobuf...), the onnx-backend test API and sample models
                "onnxruntime/tools",
                "onnxruntime/transformers",
                "onnxruntime/quantization",
                "onnxruntime/backend",
                "onnxruntime/datasets",
                # numpy: C headers and static libraries for building extensions, the Fortran
                # wrapper generator and the PyInstaller hooks; `import numpy` loads none of them
                "numpy/_core/include",
                "numpy/_core/lib",
                "numpy/f2py",
                "numpy/_pyinstaller",
            ),
        ),
        "history": Layer(
            name="history",
            description="psycopg2-binary (libpq bundled) and polars: the history loader's stack",
            requirements=("psycopg2-binary", "polars", "polars-runtime-32"),
            # polars' one dependency is its runtime, listed; psycopg2-binary declares none
            resolve_dependencies=False,
        ),
        "btcpred": Layer(
            name="btcpred",
            description="the btcpred package (src/btcpred) without the local-only edges",
            source="src/btcpred",
            # the simulators, the local replay, the benchmarks and the command line: no handler
            # imports them (tests/infra/test_layers.py checks both the graph and the layer)
            source_excludes=("sim", "local", "bench", "cli*.py"),
        ),
    }
)

FUNCTION_LAYERS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "aggregator": ("core", "btcpred"),
        "api": ("core", "btcpred"),
        "websocket": ("core", "btcpred"),
        "inference": ("core", "inference", "btcpred"),
        # light: REST and Redis only, like the client functions (no numpy/onnxruntime/fastavro)
        "poller": ("core", "btcpred"),
        # Powertools (core) for the SQS batch; psycopg2 and polars, no numpy/onnxruntime/fastavro
        "loader": ("core", "history", "btcpred"),
    }
)
"""Each function's layers, in the order they are attached."""

RUNTIME_PACKAGES: Final = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3")
"""Import names the Lambda Python 3.12 runtime provides (``six`` too, a module)."""
NEVER_IN_LAYERS: Final = frozenset({"boto3", "botocore", "s3transfer"})
"""Distributions a build refuses to ship: the runtime's own copy is the one to use."""


def layer_path(name: str, root: Path | None = None, *, target: str = DEFAULT_TARGET) -> Path:
    """The built directory of layer ``name`` (it holds ``python/``).

    Parameters
    ----------
    name
        A key of :data:`LAYERS`.
    root
        The build root; default ``<repo>/build/layers``.
    target
        A key of :data:`TARGETS`; the x86_64 twin lives in ``<root>/x86_64/<name>``.

    Raises
    ------
    KeyError
        ``name`` is not a layer or ``target`` not a target.
    """
    if name not in LAYERS:
        raise KeyError(f"no layer named {name!r} (layers: {', '.join(LAYERS)})")
    base = root if root is not None else DEFAULT_ROOT
    subdir = TARGETS[target].subdir
    return (base / subdir / name) if subdir else (base / name)
