"""Where backfill writes objects: a local directory (here) or S3 (:mod:`btcpred.history.aws`).

A sink never replaces an object: :meth:`Sink.put` creates the key only if it is absent and says
whether it did, so objects are immutable and a rerun cannot duplicate or overwrite data.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

__all__ = ["DirectorySink", "Sink"]


class Sink(Protocol):
    """An object store holding history objects under keys."""

    def keys(self, prefix: str) -> set[str]:
        """Every key that starts with ``prefix``."""
        ...

    def put(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` unless it exists; ``True`` if it was created."""
        ...

    def describe(self, key: str) -> str:
        """Where ``key`` lives, for messages (a path or an ``s3://`` URI)."""
        ...


class DirectorySink:
    """Objects as files under ``root`` (the key is the relative path)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} leaves {self.root}")
        return path

    def keys(self, prefix: str) -> set[str]:
        """Every file under the directory ``prefix`` names (or that starts with it)."""
        base = self._path(prefix) if prefix else self.root.resolve()
        folder = base if base.is_dir() else base.parent
        if not folder.is_dir():
            return set()
        root = self.root.resolve()
        found = {p.relative_to(root).as_posix() for p in folder.rglob("*") if p.is_file()}
        return {k for k in found if k.startswith(prefix) and not Path(k).name.startswith(".")}

    def put(self, key: str, data: bytes) -> bool:
        """Write a temporary file beside the target, then hard-link it into place: the key
        appears complete or not at all, and an existing file is never replaced."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def describe(self, key: str) -> str:
        """The file's path."""
        return str(self._path(key))
