"""The Lambda layers, built for real with pip (layers/): within budget, each function with only
what it imports, trimmed, importable on their own, incremental, and never half-built.

The size and content checks read the real aarch64 build; the import checks run each handler in
an isolated interpreter (``python -I -S``) whose path holds only the function's code, its
layers' x86_64 twins, the standard library and a stand-in for the Lambda runtime's own
packages (boto3 and its dependencies, linked from this virtualenv).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from layers.build import MB, PIP, LayerBuildError, build_all, build_layer, layer_key, read_pins
from layers.recipes import (
    FUNCTION_LAYERS,
    LAYERS,
    NEVER_IN_LAYERS,
    REPO_ROOT,
    RUNTIME_PACKAGES,
    TARGETS,
    Layer,
    layer_path,
)
from layers.trim import canonical_name, distributions, top_level_names, tree_size
from tests.infra.conftest import Built

pytestmark = pytest.mark.layers

BUDGET = 150 * MB  # Lambda's own limit is 250 MB unzipped, code and layers together
LOADER_BUDGET = 215 * MB  # polars' native runtime alone is ~160 MB (docs/layers.md)
SERVING_STACK = {"numpy", "numpy.libs", "onnxruntime", "fastavro"}
HISTORY_STACK = {"psycopg2", "psycopg2_binary.libs", "polars", "_polars_runtime_32"}
# What each function's layers must provide, imported in the probe after the handler (the issue-14
# loader also imports polars lazily nowhere: these are checked after the handler import).
LAYER_IMPORTS = {
    "loader": (
        "btcpred",
        "redis",
        "aws_lambda_powertools",
        "psycopg2",
        "psycopg2.extras",
        "polars",
    ),
}
DEFAULT_IMPORTS = ("btcpred", "redis", "aws_lambda_powertools")
LAMBDA_312 = {  # PEP 508 environment of the Lambda arm64 Python 3.12 runtime
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "platform_machine": "aarch64",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


def _python_dirs(function: str, root: Path, target: str = "aarch64") -> list[Path]:
    return [layer_path(n, root, target=target) / "python" for n in FUNCTION_LAYERS[function]]


def test_every_function_fits_the_budget(aarch64_layers: Built) -> None:
    sizes = json.loads((aarch64_layers.root / "sizes.json").read_text())["functions"]
    table = {f: {"total_mb": round(s["total"] / MB, 1), **s["layers"]} for f, s in sizes.items()}

    assert set(sizes) == set(FUNCTION_LAYERS)
    for function, entry in sizes.items():
        on_disk = {n: tree_size(layer_path(n, aarch64_layers.root)) for n in entry["layers"]}
        assert entry["layers"] == on_disk  # sizes.json measures what is built
        assert entry["total"] == entry["code"] + sum(on_disk.values())
        budget = LOADER_BUDGET if function == "loader" else BUDGET
        assert entry["total"] <= budget, f"{function} is over {budget / MB:.0f} MB: {table}"
    assert sizes["inference"]["total"] > 50 * MB  # it did measure numpy and onnxruntime


def test_light_functions_carry_no_serving_stack(aarch64_layers: Built) -> None:
    def names(function: str) -> set[str]:
        return set().union(
            *(top_level_names(p) for p in _python_dirs(function, aarch64_layers.root))
        )

    for function in ("api", "websocket", "aggregator", "poller"):
        assert names(function) & (SERVING_STACK | HISTORY_STACK) == set(), function
        assert {"btcpred", "msgspec", "orjson", "redis", "aws_lambda_powertools"} <= names(function)
    assert names("inference") >= SERVING_STACK  # the counter-check
    assert names("loader") >= HISTORY_STACK | {"btcpred", "aws_lambda_powertools"}
    assert names("loader") & {"numpy", "numpy.libs", "onnxruntime"} == set()


def test_no_layer_ships_the_runtime_sdk(aarch64_layers: Built) -> None:
    for name in LAYERS:
        python = layer_path(name, aarch64_layers.root) / "python"
        assert set(distributions(python)) & NEVER_IN_LAYERS == set(), name
        assert top_level_names(python) & {"boto3", "botocore", "s3transfer"} == set(), name


def test_layers_of_one_function_never_overlap(aarch64_layers: Built) -> None:
    # Lambda merges a function's layers into one /opt/python: a shared name would be overwritten
    for function in FUNCTION_LAYERS:
        seen: dict[str, str] = {}
        for python in _python_dirs(function, aarch64_layers.root):
            for entry in python.iterdir():
                assert entry.name not in seen, (
                    f"{entry.name} in {seen.get(entry.name)} and {python}"
                )
                seen[entry.name] = str(python)


def _local_only(top: str) -> bool:
    """``top`` (a first-level module of btcpred) is an edge no Lambda imports."""
    return top in {"sim", "local", "bench"} or re.fullmatch(r"cli(_\w+)?", top) is not None


def test_btcpred_layer_is_the_package_without_its_local_only_edges(aarch64_layers: Built) -> None:
    package = layer_path("btcpred", aarch64_layers.root) / "python" / "btcpred"
    source = REPO_ROOT / "src" / "btcpred"
    shipped = {p.relative_to(package) for p in package.rglob("*.py")}
    in_source = {p.relative_to(source) for p in source.rglob("*.py")}

    assert (package / "py.typed").is_file()
    assert {p for p in in_source if _local_only(p.parts[0].removesuffix(".py"))} >= {
        Path("cli.py"),
        Path("sim/__init__.py"),
        Path("local/replay.py"),
        Path("bench/imports.py"),
    }  # the counter-check: the rule does pick out the edges
    assert shipped == {p for p in in_source if not _local_only(p.parts[0].removesuffix(".py"))}
    assert Path("inference/clients.py") in shipped
    for path in package.rglob("*.py"):  # nor does anything left import them, even lazily
        for module in _imported_modules(path):
            if module.startswith("btcpred."):
                assert not _local_only(module.split(".")[1]), (path, module)


def _imported_modules(path: Path) -> list[str]:
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
            modules += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules += [a.name for a in node.names]
    return modules


def test_every_declared_dependency_is_shipped_provided_or_excluded(aarch64_layers: Built) -> None:
    runtime = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six"}
    for function, names in FUNCTION_LAYERS.items():
        excluded = {canonical_name(e.name) for n in names for e in LAYERS[n].excluded}
        pythons = _python_dirs(function, aarch64_layers.root)
        shipped = {d for p in pythons for d in distributions(p)}
        for python in pythons:
            for dist_info in python.glob("*.dist-info"):
                for line in (dist_info / "METADATA").read_text().splitlines():
                    if not line.startswith("Requires-Dist:"):
                        continue
                    req = Requirement(line.removeprefix("Requires-Dist:").strip())
                    if req.marker is not None and not req.marker.evaluate(LAMBDA_312):
                        continue
                    name = canonical_name(req.name)
                    assert name in shipped | runtime | excluded, f"{function}: {dist_info} {req}"
    assert Marker('extra == "symbolic"').evaluate(LAMBDA_312) is False  # sympy stays out


def test_the_layers_are_trimmed_and_keep_their_licences(aarch64_layers: Built) -> None:
    for name in LAYERS:
        python = layer_path(name, aarch64_layers.root) / "python"
        for path in python.rglob("*"):
            relative = path.relative_to(python)
            assert path.name not in {"__pycache__", "tests", "test"}, relative
            assert path.suffix not in {".pyc", ".pyo", ".pyi"}, relative
        assert not {"bin", "include", "share"} & {p.name for p in python.iterdir()}
        for dist_info in python.glob("*.dist-info"):
            kept = {p.name.lower() for p in dist_info.iterdir()}
            assert "metadata" in kept, dist_info
            assert "record" not in kept, dist_info
    inference = layer_path("inference", aarch64_layers.root) / "python"
    for gone in ("onnxruntime/tools", "onnxruntime/transformers", "onnxruntime/quantization"):
        assert not (inference / gone).exists()
    assert (inference / "onnxruntime" / "LICENSE").is_file()
    assert (inference / "onnxruntime" / "ThirdPartyNotices.txt").is_file()
    for dist in ("numpy-2.4.6", "fastavro-1.13.1"):
        assert any((inference / f"{dist}.dist-info" / "licenses").iterdir())
    history = layer_path("history", aarch64_layers.root) / "python"
    for dist in ("psycopg2_binary-2.9.11", "polars-2.1.0", "polars_runtime_32-2.1.0"):
        assert (history / f"{dist}.dist-info" / "licenses" / "LICENSE").is_file(), dist
    core = layer_path("core", aarch64_layers.root) / "python"
    for dist in ("msgspec", "orjson", "redis", "aws_lambda_powertools", "jmespath"):
        (dist_info,) = core.glob(f"{dist}-*.dist-info")
        assert any("licen" in p.name.lower() for p in dist_info.rglob("*")), dist_info


@pytest.fixture(scope="module")
def runtime_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for the runtime's boto3 & co.: links to this virtualenv's copies."""
    runtime = tmp_path_factory.mktemp("var-runtime")
    for name in (*RUNTIME_PACKAGES, "six"):
        spec = importlib.util.find_spec(name)
        assert spec is not None, name
        assert spec.origin is not None, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source)
    return runtime


PROBE = r"""
import json, sys
config = json.loads(sys.argv[1])
stdlib = list(sys.path)
sys.path[:] = config["path"] + stdlib
import importlib
import handler
for name in config.get("imports", []):
    importlib.import_module(name)
out = {"stdlib": stdlib}
if config.get("model"):
    from btcpred.features import FeatureEngine
    from btcpred.features.batch import snapshots_from_klines
    from btcpred.klines import read_klines
    from btcpred.model import open_registry
    from pathlib import Path
    model = open_registry(config["models"]).load(config["model"])
    klines = read_klines(Path(config["klines"]))
    snaps = list(snapshots_from_klines(klines, FeatureEngine("BTCUSDT")))
    pred = model.predict([s.values() for s in snaps[-model.metadata.window:]])
    out["price"], out["predicted"] = snaps[-1].price, pred.predicted_price
    out["confidence"] = pred.confidence
files = {}
for name, module in list(sys.modules.items()):
    where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), None)
    if where:
        files[name] = where
out["files"] = files
print(json.dumps(out))
"""


def _probe(function: str, root: Path, runtime: Path, **extra: Any) -> dict[str, Any]:
    code = REPO_ROOT / "lambdas" / function
    path = [str(code), *map(str, _python_dirs(function, root, "x86_64")), str(runtime)]
    config = json.dumps({"path": path, **extra})
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", PROBE, config],
        capture_output=True,
        text=True,
        check=False,
        cwd=code,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_DEFAULT_REGION": "ap-northeast-1",
        },
        timeout=120,
    )
    assert out.returncode == 0, f"{function} does not import from its layers:\n{out.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    allowed = (*path, *result["stdlib"])
    for module, where in result["files"].items():
        assert any(os.path.abspath(where).startswith(a + os.sep) for a in allowed), (module, where)
    return result


@pytest.mark.parametrize("function", sorted(FUNCTION_LAYERS))
def test_each_handler_imports_from_its_own_layers_alone(
    function: str, x86_64_layers: Built, runtime_packages: Path
) -> None:
    imports = LAYER_IMPORTS.get(function, DEFAULT_IMPORTS)
    result = _probe(function, x86_64_layers.root, runtime_packages, imports=list(imports))

    files: dict[str, str] = result["files"]
    assert files["handler"] == str(REPO_ROOT / "lambdas" / function / "handler.py")
    layer_of = {n: layer_path(n, x86_64_layers.root, target="x86_64") for n in LAYERS}
    assert files["btcpred"].startswith(str(layer_of["btcpred"]))
    assert files["redis"].startswith(str(layer_of["core"]))
    assert ("numpy" in files) == (function == "inference")
    assert ("psycopg2" in files) == (function == "loader")
    if function == "loader":
        assert files["psycopg2._psycopg"].startswith(str(layer_of["history"]))  # libpq bundled
        assert files["polars"].startswith(str(layer_of["history"]))
        assert "fastavro" not in files  # the loader checks and decodes objects without it


def test_inference_runs_the_shipped_model_from_its_layers(
    x86_64_layers: Built, runtime_packages: Path
) -> None:
    (current,) = (REPO_ROOT / "models").glob("*/current.json")
    klines = REPO_ROOT / "fixtures/binance/btcusdt_1m_2024-08-08T18_2024-08-09T0010.csv.gz"

    result = _probe(
        "inference",
        x86_64_layers.root,
        runtime_packages,
        models=str(REPO_ROOT / "models"),
        model=current.parent.name,
        klines=str(klines),
    )

    files: dict[str, str] = result["files"]
    assert abs(result["predicted"] / result["price"] - 1) < 0.01
    assert 0 < result["confidence"] < 1
    assert "onnxruntime.capi.onnxruntime_pybind11_state" in files
    for excluded in ("packaging", "google", "flatbuffers", "sympy", "coloredlogs", "onnx"):
        assert excluded not in files  # the session never wanted what the layer leaves out


def test_a_second_build_is_up_to_date_and_rewrites_nothing(aarch64_layers: Built) -> None:
    root = aarch64_layers.root
    before = {
        n: (layer_path(n, root).stat().st_ino, layer_path(n, root).stat().st_mtime_ns)
        for n in LAYERS
    }
    stamps = {n: layer_path(n, root).with_name(f"{n}.stamp").read_bytes() for n in LAYERS}
    log: list[str] = []

    started = time.perf_counter()
    results = build_all(root=root, log=log.append)
    elapsed = time.perf_counter() - started

    assert [r.rebuilt for r in results] == [False] * len(LAYERS)
    assert all(any(line.startswith(f"[{n}] up to date") for line in log) for n in LAYERS), log
    assert elapsed < 1.0
    after = {
        n: (layer_path(n, root).stat().st_ino, layer_path(n, root).stat().st_mtime_ns)
        for n in LAYERS
    }
    assert after == before
    assert stamps == {n: layer_path(n, root).with_name(f"{n}.stamp").read_bytes() for n in LAYERS}


FAKE_PIP = r"""
import pathlib, sys
target = pathlib.Path(sys.argv[sys.argv.index("--target") + 1])
(target / "fake").mkdir(parents=True)
pinned = [a for a in sys.argv if "==" in a]
(target / "fake" / "__init__.py").write_text(" ".join(pinned))
sys.exit(int(pathlib.Path(__file__).with_name("exit_code").read_text()))
"""


def test_a_failing_pip_names_the_layer_and_leaves_the_previous_one(tmp_path: Path) -> None:
    pip = tmp_path / "pip.py"
    pip.write_text(FAKE_PIP)
    (tmp_path / "exit_code").write_text("0")
    layer, target, root = LAYERS["core"], TARGETS["x86_64"], tmp_path / "root"
    pins = read_pins()
    fake = (sys.executable, str(pip))
    build_layer(layer, target=target, root=root, pins=pins, pip=fake, log=lambda _: None)
    final = layer_path("core", root, target="x86_64")
    stamp = final.with_name("core.stamp").read_text()
    (tmp_path / "exit_code").write_text("3")

    newer = {**pins, "redis": "99.0.0"}  # a new pin: the stamp no longer matches
    with pytest.raises(LayerBuildError, match=r"layer 'core': pip failed \(exit 3\)"):
        build_layer(layer, target=target, root=root, pins=newer, pip=fake, log=lambda _: None)

    assert f"redis=={pins['redis']}" in (final / "python/fake/__init__.py").read_text()
    assert final.with_name("core.stamp").read_text() == stamp
    assert sorted(p.name for p in final.parent.iterdir()) == ["core", "core.stamp"]


def test_a_fresh_failed_build_leaves_nothing(tmp_path: Path) -> None:
    pip = tmp_path / "pip.py"
    pip.write_text(FAKE_PIP)
    (tmp_path / "exit_code").write_text("1")

    with pytest.raises(LayerBuildError, match="layer 'inference'"):
        build_all(
            ["inference"],
            root=tmp_path / "root",
            pip=(sys.executable, str(pip)),
            log=lambda _: None,
        )

    assert list((tmp_path / "root").iterdir()) == []


def test_an_unpinned_requirement_is_refused_by_name(tmp_path: Path) -> None:
    layer = Layer(name="core", description="test", requirements=("left-pad",))

    with pytest.raises(LayerBuildError, match="layer 'core': left-pad not pinned"):
        build_layer(layer, target=TARGETS["x86_64"], root=tmp_path, pip=PIP, log=lambda _: None)


def test_the_btcpred_key_follows_its_shipped_sources_only(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "src/btcpred/sim").mkdir(parents=True)
    (repo / "src/btcpred/__init__.py").write_text("")
    (repo / "src/btcpred/sim/server.py").write_text("")
    layer, target, pins = LAYERS["btcpred"], TARGETS["aarch64"], read_pins()
    key = layer_key(layer, target, pins, repo)

    (repo / "src/btcpred/sim/server.py").write_text("x = 1\n")  # not shipped: same key
    assert layer_key(layer, target, pins, repo) == key
    (repo / "src/btcpred/__init__.py").write_text("x = 1\n")
    assert layer_key(layer, target, pins, repo) != key
    assert layer_key(layer, TARGETS["x86_64"], pins, repo) != layer_key(layer, target, pins, repo)
    assert layer_key(LAYERS["core"], target, {**pins, "redis": "8.0.0"}, repo) != layer_key(
        LAYERS["core"], target, pins, repo
    )


def test_layer_path_and_the_function_table() -> None:
    assert layer_path("core") == REPO_ROOT / "build/layers/core"
    assert layer_path("core", Path("/r"), target="x86_64") == Path("/r/x86_64/core")
    with pytest.raises(KeyError, match="no layer named 'nope'"):
        layer_path("nope")
    assert set(FUNCTION_LAYERS) == {p.name for p in (REPO_ROOT / "lambdas").iterdir() if p.is_dir()}
    assert all(set(names) <= set(LAYERS) for names in FUNCTION_LAYERS.values())
    assert FUNCTION_LAYERS["inference"] == ("core", "inference", "btcpred")
    assert FUNCTION_LAYERS["poller"] == ("core", "btcpred")  # light: no serving stack
    assert FUNCTION_LAYERS["loader"] == ("core", "history", "btcpred")
