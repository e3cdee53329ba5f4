"""Build the Lambda layers with pip, without Docker: ``python -m layers.build``.

Usage: ``python -m layers.build [--platform aarch64|x86_64] [--root DIR] [--only NAME ...]``.

Each layer of :data:`layers.recipes.LAYERS` is installed into a temporary directory next to its
final place (``pip install --only-binary=:all: --platform ... --python-version ... --target``,
or a copy of the source package), trimmed, then renamed into place, so a failed build leaves the
previous complete layer (or none) and never a half-built one. A stamp file per layer
(``<name>.stamp`` beside it) holds the hash of everything the layer is made from: its pins, the
recipe and trim rules, the target platform, the code of this package and, for a source layer,
its files. A layer whose stamp matches is left alone and reported up to date.

Afterwards the unzipped size of each function (its ``lambdas/<function>`` code plus its
layers) is printed and written to ``<root>/sizes.json`` (``<root>/x86_64/sizes.json`` for the
twin).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from layers.recipes import (
    DEFAULT_ROOT,
    DEFAULT_TARGET,
    FUNCTION_LAYERS,
    LAYERS,
    NEVER_IN_LAYERS,
    REPO_ROOT,
    REQUIREMENTS_FILES,
    TARGETS,
    TRIM,
    Layer,
    Target,
    layer_path,
)
from layers.trim import canonical_name, distributions, tree_size, trim

__all__ = [
    "PIP",
    "BuildResult",
    "LayerBuildError",
    "build_all",
    "build_layer",
    "function_sizes",
    "layer_key",
    "main",
    "read_pins",
]

PIP: Final = (sys.executable, "-m", "pip")
MB: Final = 1_000_000
"""Sizes are in decimal MB: stricter than Lambda's limit (262,144,000 bytes, "250 MB")."""
_OWN_CODE: Final = ("recipes.py", "trim.py", "build.py")

Log = Callable[[str], None]


def _print(line: str) -> None:
    print(line, flush=True)  # progress shows as it happens, also through a pipe


class LayerBuildError(RuntimeError):
    """A layer could not be built; the message names the layer."""


@dataclass(frozen=True, slots=True)
class BuildResult:
    """One layer after :func:`build_layer`."""

    name: str
    path: Path
    size: int
    """Unzipped bytes."""
    rebuilt: bool
    """False: the stamp matched and nothing was done."""
    seconds: float


def read_pins(repo: Path = REPO_ROOT) -> dict[str, str]:
    """Every ``name==version`` line of :data:`REQUIREMENTS_FILES`: canonical name → version."""
    pins: dict[str, str] = {}
    for file in REQUIREMENTS_FILES:
        for raw in (repo / file).read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if "==" in line and not line.startswith("-"):
                name, _, version = line.partition("==")
                pins[canonical_name(name.split("[", 1)[0].strip())] = version.strip()
    return pins


def _python_version(target: Target) -> str:
    return target.python_version or f"{sys.version_info.major}.{sys.version_info.minor}"


def _requirements(layer: Layer, pins: Mapping[str, str]) -> list[str]:
    missing = [r for r in layer.requirements if canonical_name(r) not in pins]
    if missing:
        raise LayerBuildError(
            f"layer {layer.name!r}: {', '.join(missing)} not pinned (name==version) in "
            + " or ".join(REQUIREMENTS_FILES)
        )
    return [f"{r}=={pins[canonical_name(r)]}" for r in layer.requirements]


def _source_files(layer: Layer, repo: Path) -> list[Path]:
    """The files a source layer copies: ``source`` less its excludes and byte code."""
    if layer.source is None:
        return []
    top = repo / layer.source
    files: list[Path] = []
    for path in sorted(top.rglob("*")):
        parts = path.relative_to(top).parts
        if any(fnmatch.fnmatchcase(parts[0], pattern) for pattern in layer.source_excludes):
            continue
        if path.is_file() and "__pycache__" not in parts and path.suffix != ".pyc":
            files.append(path)
    return files


def layer_key(layer: Layer, target: Target, pins: Mapping[str, str], repo: Path = REPO_ROOT) -> str:
    """The hash a layer's stamp must hold for the built layer to be up to date."""
    digest = hashlib.sha256()
    own = Path(__file__).parent
    facts: dict[str, Any] = {
        "layer": asdict(layer),
        "trim": asdict(TRIM),
        "target": {**asdict(target), "python_version": _python_version(target)},
        "pins": _requirements(layer, pins),
        "code": {f: hashlib.sha256((own / f).read_bytes()).hexdigest() for f in _OWN_CODE},
    }
    digest.update(json.dumps(facts, sort_keys=True).encode())
    if layer.source is not None:
        top = repo / layer.source
        for path in _source_files(layer, repo):
            digest.update(str(path.relative_to(top)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _pip_install(
    layer: Layer, target: Target, dest: Path, pins: Mapping[str, str], pip: Sequence[str]
) -> None:
    argv = [*pip, "install", "--only-binary=:all:", "--implementation", "cp"]
    argv += ["--python-version", _python_version(target)]
    for platform in target.pip_platforms:
        argv += ["--platform", platform]
    argv += ["--target", str(dest), "--no-compile", "--progress-bar", "off"]
    argv += [] if layer.resolve_dependencies else ["--no-deps"]
    out = subprocess.run(  # noqa: S603 - our interpreter's pip, arguments from the recipes
        [*argv, *_requirements(layer, pins)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-25:])
        raise LayerBuildError(f"layer {layer.name!r}: pip failed (exit {out.returncode}):\n{tail}")


def _check_contents(layer: Layer, python_dir: Path) -> dict[str, str]:
    found = distributions(python_dir)
    unwanted = set(found) & (NEVER_IN_LAYERS | {canonical_name(e.name) for e in layer.excluded})
    if unwanted:
        raise LayerBuildError(
            f"layer {layer.name!r}: pip installed {', '.join(sorted(unwanted))}, which this "
            "layer must not ship (the runtime provides it, or the recipe excludes it)"
        )
    return found


def _install(
    layer: Layer,
    target: Target,
    staging: Path,
    repo: Path,
    pins: Mapping[str, str],
    pip: Sequence[str],
) -> dict[str, str]:
    python_dir = staging / "python"
    if layer.source is None:
        _pip_install(layer, target, python_dir, pins, pip)
    else:
        top = repo / layer.source
        for path in _source_files(layer, repo):
            dest = python_dir / top.name / path.relative_to(top)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    try:
        trim(python_dir, TRIM, layer.trim_paths)
    except FileNotFoundError as exc:
        raise LayerBuildError(f"layer {layer.name!r}: {exc}") from None
    return _check_contents(layer, python_dir)


def _swap_into_place(staging: Path, final: Path) -> None:
    """Rename ``staging`` to ``final``; an old ``final`` is moved aside first, then removed."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _stamp(final: Path) -> Path:
    return final.with_name(f"{final.name}.stamp")


def _up_to_date(final: Path, key: str) -> bool:
    try:
        stamp = json.loads(_stamp(final).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("key") == key and (final / "python").is_dir()


def _build_into_place(
    layer: Layer,
    target: Target,
    final: Path,
    repo: Path,
    pins: Mapping[str, str],
    pip: Sequence[str],
) -> dict[str, str]:
    """Install and trim into a temporary directory beside ``final``, then rename it there."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{layer.name}.*.tmp"):  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{layer.name}.", suffix=".tmp", dir=final.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would reach the zip: Lambda's user could not read it
    try:
        versions = _install(layer, target, staging, repo, pins, pip)
        _stamp(final).unlink(missing_ok=True)  # no stamp can vouch for a layer mid-swap
        _swap_into_place(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return versions


def build_layer(
    layer: Layer,
    *,
    target: Target,
    root: Path = DEFAULT_ROOT,
    repo: Path = REPO_ROOT,
    pins: Mapping[str, str] | None = None,
    pip: Sequence[str] = PIP,
    log: Log = _print,
) -> BuildResult:
    """Build ``layer`` for ``target`` under ``root`` unless its stamp says it is up to date.

    Raises
    ------
    LayerBuildError
        pip failed, a requirement is not pinned, a trim path is missing, or the layer would
        ship a package it must not; the previous layer (if any) is left as it was.
    """
    started = time.perf_counter()
    pins = read_pins(repo) if pins is None else pins
    final = layer_path(layer.name, root, target=target.name)
    key = layer_key(layer, target, pins, repo)
    if _up_to_date(final, key):
        size = tree_size(final)
        log(f"[{layer.name}] up to date: {size / MB:.1f} MB unzipped ({final})")
        return BuildResult(layer.name, final, size, False, time.perf_counter() - started)
    what = (
        f"copy {layer.source}"
        if layer.source
        else "pip install " + " ".join(_requirements(layer, pins))
    )
    log(f"[{layer.name}] {target.name}, Python {_python_version(target)}: {what}")
    versions = _build_into_place(layer, target, final, repo, pins, pip)
    size = tree_size(final)
    stamp = {"key": key, "target": target.name, "bytes": size, "distributions": versions}
    _stamp(final).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    seconds = time.perf_counter() - started
    log(f"[{layer.name}] built in {seconds:.1f} s: {size / MB:.1f} MB unzipped ({final})")
    return BuildResult(layer.name, final, size, True, seconds)


def function_sizes(
    layer_sizes: Mapping[str, int], repo: Path = REPO_ROOT
) -> dict[str, dict[str, Any]]:
    """Per function whose layers are all in ``layer_sizes``: code, layer and total bytes."""
    sizes: dict[str, dict[str, Any]] = {}
    for function, names in FUNCTION_LAYERS.items():
        if not all(n in layer_sizes for n in names):
            continue
        code = tree_size(repo / "lambdas" / function, skip_bytecode=True)
        layers = {n: layer_sizes[n] for n in names}
        sizes[function] = {"code": code, "layers": layers, "total": code + sum(layers.values())}
    return sizes


def build_all(
    names: Sequence[str] | None = None,
    *,
    target: str = DEFAULT_TARGET,
    root: Path = DEFAULT_ROOT,
    repo: Path = REPO_ROOT,
    pip: Sequence[str] = PIP,
    log: Log = _print,
) -> list[BuildResult]:
    """Build the named layers (default: all) for ``target``; write and print ``sizes.json``.

    The sizes cover every function whose layers are all built under ``root`` (also those that
    were built earlier and not named now).
    """
    pins, spec = read_pins(repo), TARGETS[target]
    results = [
        build_layer(LAYERS[n], target=spec, root=root, repo=repo, pins=pins, pip=pip, log=log)
        for n in (names or list(LAYERS))
    ]
    built = {r.name: r.size for r in results}
    for name in set(LAYERS) - set(built):
        if (layer_path(name, root, target=target) / "python").is_dir():
            built[name] = tree_size(layer_path(name, root, target=target))
    sizes = function_sizes(built, repo)
    report = {"unit": "bytes (unzipped)", "target": target, "functions": sizes}
    out = layer_path("core", root, target=target).parent / "sizes.json"
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    for function, entry in sizes.items():
        parts = " + ".join(f"{n} {b / MB:.2f}" for n, b in entry["layers"].items())
        log(
            f"{function}: {entry['total'] / MB:.1f} MB unzipped "
            f"(code {entry['code'] / MB:.3f} + {parts} MB)"
        )
    log(f"sizes written to {out}")
    return results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m layers.build", description="Build the Lambda layers with pip."
    )
    parser.add_argument("--platform", choices=sorted(TARGETS), default=DEFAULT_TARGET)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="default: build/layers")
    parser.add_argument("--only", nargs="+", choices=sorted(LAYERS), metavar="NAME")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1: a layer failed)."""
    args = _parser().parse_args(argv)
    try:
        build_all(args.only, target=args.platform, root=args.root.resolve())
    except LayerBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
