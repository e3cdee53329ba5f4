"""``btcpred bench imports``: each Lambda handler's cold import, in a fresh interpreter.

A cold start imports the handler module before the first event; what that import pulls in is
the function's fixed cost (and its package size). Each round starts a new ``python -X
importtime`` process that imports one ``lambdas/<function>/handler.py`` the way the Lambda
runtime does (by file, no event), and sums the ``self`` column of Python's import-time report:
the time spent importing, without interpreter start-up. The median of the rounds is reported
with the number of modules imported and which heavy packages (numpy, onnxruntime, fastavro,
boto3) the function loads.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["HEAVY", "ImportFigures", "as_json", "handler_imports", "run_imports_bench"]

HEAVY: Final = ("numpy", "onnxruntime", "fastavro", "boto3")
"""Packages a light function must not carry (boto3 is listed to show who uses it)."""

_PROBE: Final = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(sorted(sys.modules)))
"""


@dataclass(frozen=True, slots=True)
class ImportFigures:
    """One function's cold import."""

    function: str
    import_ms_p50: float
    import_ms_max: float
    modules: int
    heavy: list[str]


def handler_imports(handler: Path, *, importtime: bool = False) -> tuple[list[str], float]:
    """Import ``handler`` in a fresh interpreter: (modules loaded, import ms or 0.0).

    Raises
    ------
    RuntimeError
        The import failed (its stderr is in the message).
    """
    argv = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", _PROBE]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(  # noqa: S603 - our own interpreter and probe, no shell
        [*argv, str(handler)], capture_output=True, text=True, check=False, env=env, timeout=120
    )
    if out.returncode != 0:
        raise RuntimeError(f"importing {handler} failed:\n{out.stderr[-2000:]}")
    modules: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    micros = 0
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            first = line.removeprefix("import time:").split("|", 1)[0].strip()
            if first.isdigit():
                micros += int(first)
    return modules, micros / 1000


def run_imports_bench(
    lambdas_dir: Path,
    *,
    rounds: int = 5,
    progress: Callable[[str], None] | None = None,
    functions: Sequence[str] | None = None,
) -> list[ImportFigures]:
    """Measure every ``lambdas/<function>/handler.py`` (or just ``functions``)."""
    names = functions or sorted(p.parent.name for p in lambdas_dir.glob("*/handler.py"))
    figures = []
    for name in names:
        handler = lambdas_dir / name / "handler.py"
        times: list[float] = []
        modules: list[str] = []
        for _ in range(rounds):
            modules, ms = handler_imports(handler, importtime=True)
            times.append(ms)
        heavy: list[str] = [h for h in HEAVY if h in modules]
        figures.append(
            ImportFigures(
                name,
                round(statistics.median(times), 1),
                round(max(times), 1),
                len(modules),
                heavy,
            )
        )
        if progress is not None:
            progress(f"{name}: {figures[-1].import_ms_p50} ms, {len(modules)} modules, {heavy}")
    return figures


def as_json(figures: Sequence[ImportFigures]) -> dict[str, Any]:
    """The ``--json`` object: one entry per function."""
    return {f.function: {k: v for k, v in asdict(f).items() if k != "function"} for f in figures}
