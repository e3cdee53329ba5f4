"""Trimming an installed layer, and reading what it holds.

:func:`trim` applies :data:`layers.recipes.TRIM` and a layer's own ``trim_paths`` to a
``python/`` directory; :func:`distributions` lists the installed distributions (from their
``*.dist-info`` directories, which trimming keeps with their ``METADATA`` and licences).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from pathlib import Path

from layers.recipes import TrimRules

__all__ = ["canonical_name", "distributions", "top_level_names", "tree_size", "trim"]


def canonical_name(name: str) -> str:
    """The PEP 503 form of a distribution name (``Typing_Extensions``: ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _trim_dist_info(directory: Path, keep: tuple[str, ...]) -> None:
    for entry in directory.iterdir():
        if not any(fnmatch.fnmatchcase(entry.name.lower(), pattern) for pattern in keep):
            _remove(entry)


def _trim_tree(python_dir: Path, rules: TrimRules) -> None:
    for top, dirs, files in os.walk(python_dir):
        here = Path(top)
        for name in list(dirs):
            if name.endswith(".dist-info"):
                _trim_dist_info(here / name, rules.dist_info_keep)
                dirs.remove(name)
            elif name in rules.dir_names:
                shutil.rmtree(here / name)
                dirs.remove(name)
        for name in files:
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in rules.file_globs):
                (here / name).unlink()


def trim(python_dir: Path, rules: TrimRules, extra_paths: tuple[str, ...] = ()) -> None:
    """Remove from ``python_dir`` what ``rules`` and ``extra_paths`` name.

    Parameters
    ----------
    python_dir
        The layer's ``python/`` directory.
    rules
        The common rules (directories, file globs, top-level entries, ``*.dist-info`` keeps).
    extra_paths
        Paths relative to ``python_dir``; a missing one is an error, so a recipe whose path no
        longer exists (a package moved things) is noticed instead of silently shipping more.

    Raises
    ------
    FileNotFoundError
        An ``extra_paths`` entry does not exist.
    """
    for relative in extra_paths:
        path = python_dir / relative
        if not path.exists():
            raise FileNotFoundError(f"trim path {relative} is not in the layer")
        _remove(path)
    for name in rules.top_level:
        if (python_dir / name).exists():
            _remove(python_dir / name)
    _trim_tree(python_dir, rules)


def distributions(python_dir: Path) -> dict[str, str]:
    """Installed distributions of a ``python/`` directory: canonical name → version."""
    found: dict[str, str] = {}
    for entry in python_dir.glob("*.dist-info"):
        name, _, version = entry.name.removesuffix(".dist-info").partition("-")
        found[canonical_name(name)] = version
    return found


def top_level_names(python_dir: Path) -> set[str]:
    """The importable top-level names a ``python/`` directory provides (packages and modules)."""
    names: set[str] = set()
    for entry in python_dir.iterdir():
        if entry.name.endswith(".dist-info") or entry.name.startswith("."):
            continue
        if entry.is_dir():
            names.add(entry.name)
        elif entry.suffix in {".py", ".so"}:
            names.add(entry.name.split(".")[0])
    return names


def tree_size(path: Path, *, skip_bytecode: bool = False) -> int:
    """Unzipped bytes of every file under ``path`` (symlinks not followed).

    ``skip_bytecode`` leaves out ``__pycache__`` directories and ``*.pyc`` files, which a
    deployment asset excludes (for a function's code directory, where tests leave them).
    """
    total = 0
    for top, dirs, files in os.walk(path):
        if skip_bytecode:
            dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if skip_bytecode and name.endswith(".pyc"):
                continue
            total += os.lstat(os.path.join(top, name)).st_size
    return total
