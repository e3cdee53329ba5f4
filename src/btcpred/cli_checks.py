"""The ``btcpred`` command's up-front checks of its file and URL arguments, and the one place
that turns a user's mistake into one line (an edge module, like :mod:`btcpred.cli`).

A command checks every path and URL it was given before its long work starts (loading a
capture, training, starting servers), so a typo costs a second, not a run. Whatever goes wrong
later with the user's input surfaces as a typed error of the core (a malformed kline file, an
unreadable model, a registry refusing a version); :func:`user_error_types` lists those types and
``btcpred.cli.main`` prints any of them as ``btcpred: error: ...`` with exit status 1. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

__all__ = [
    "EXIT_USER_ERROR",
    "CliError",
    "error_line",
    "input_directory",
    "input_file",
    "klines_inputs",
    "new_directory",
    "output_directory",
    "output_file",
    "redis_url",
    "replaced_on_success",
    "user_error_types",
]

EXIT_USER_ERROR = 1

# Typed errors of the core (and of the clients it drives) that mean "your input or your
# environment", never "a bug": (module, class name). They are looked up in sys.modules: a class
# whose module was never imported cannot have been raised, and importing numpy, onnxruntime or
# botocore only to catch would slow every command.
_USER_ERRORS: tuple[tuple[str, str], ...] = (
    ("btcpred.klines", "KlineFormatError"),
    ("btcpred.sources.capture", "CaptureFormatError"),
    ("btcpred.model.dataset", "DatasetError"),
    ("btcpred.model.metadata", "ModelFormatError"),
    ("btcpred.model.registry", "RegistryError"),
    ("btcpred.sim.services", "ServiceNotInstalledError"),
    ("botocore.exceptions", "BotoCoreError"),  # no credentials, endpoint unreachable
    ("botocore.exceptions", "ClientError"),  # access denied, no such bucket
    ("redis.exceptions", "RedisError"),
    ("btcpred.settings.parse", "ConfigError"),  # an incomplete or invalid environment
    ("btcpred.credentials", "CredentialsError"),  # a secret that cannot be read
    ("btcpred.history.backfill", "BackfillError"),  # banned, restricted, the source failing
    ("btcpred.history.backfill", "DumpFormatError"),  # a malformed dump file
    ("psycopg2", "Error"),  # the database failed during a load
)


class CliError(Exception):
    """A mistake in what the user asked for, found by the command itself."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types ``main`` reports as one line instead of a traceback."""
    found: list[type[BaseException]] = [CliError]
    for module_name, class_name in _USER_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None:
            found.append(getattr(module, class_name))
    return tuple(found)


def error_line(exc: BaseException) -> str:
    """``btcpred: error: <message>`` on one line, whatever line breaks the message holds."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return f"btcpred: error: {message}"


def input_file(path: Path, what: str) -> Path:
    """``path`` if it is a readable file; else a :class:`CliError` naming ``what``."""
    if not path.exists():
        raise CliError(f"{what} not found: {path}")
    if not path.is_file():
        raise CliError(f"{what} is not a file: {path}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return path


def input_directory(path: Path, what: str, hint: str = "") -> Path:
    """``path`` if it is a directory; else a :class:`CliError` naming ``what`` (and ``hint``)."""
    if not path.is_dir():
        state = "is not a directory" if path.exists() else "does not exist"
        raise CliError(f"{what} {path} {state}{hint}")
    return path


def klines_inputs(paths: Iterable[Path]) -> list[Path]:
    """Kline files that exist and hold at least one kline (the first row is parsed here).

    Raises
    ------
    CliError
        A path is missing or not a file.
    btcpred.klines.KlineFormatError
        A file is not gzip, is empty or holds a header only, or its first row is malformed.
    """
    from btcpred.klines import read_klines

    checked = [input_file(path, "klines file") for path in paths]
    for path in checked:
        for _ in read_klines(path):  # raises for a file without klines
            break
    return checked


def _parent_exists(path: Path, what: str) -> None:
    parent = path.absolute().parent
    if not parent.is_dir():
        raise CliError(f"{what} {path}: directory {parent} does not exist")


def output_file(path: Path, what: str) -> Path:
    """``path`` if a file can be written there: not a directory, in an existing directory."""
    if path.is_dir():
        raise CliError(f"{what} {path} is a directory; give a file name")
    _parent_exists(path, what)
    return path


@contextlib.contextmanager
def replaced_on_success(path: Path, what: str) -> Iterator[TextIO]:
    """A text file that replaces ``path`` only when the block ends without an error.

    It is a temporary file next to ``path``: a failed run leaves no partial file behind and
    keeps what was there.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.absolute().parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise CliError(f"{what} {path}: cannot write there ({exc.strerror})") from None
    try:
        with open(fd, "w", encoding="ascii") as handle:
            yield handle
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; an output is for every reader
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def new_directory(path: Path, what: str) -> Path:
    """``path`` if nothing is there yet and its parent directory exists (nothing is replaced)."""
    if path.exists():
        kind = "directory" if path.is_dir() else "file"
        raise CliError(f"{what} {path} already exists (a {kind}); give a new path")
    _parent_exists(path, what)
    return path


def output_directory(path: Path, what: str) -> Path:
    """``path`` if it is a directory or can be made one (its parent exists)."""
    if path.exists() and not path.is_dir():
        raise CliError(f"{what} {path} is a file; give a directory")
    if not path.exists():
        _parent_exists(path, what)
    return path


def redis_url(url: str, *, timeout_s: float = 1.0) -> str:
    """``url`` if a Redis answers there within ``timeout_s`` and its database is empty.

    The benchmarks flush the database they are given, so a database holding keys is refused.
    """
    import redis

    from btcpred.redisconn import connect

    try:
        client = connect(url, timeout_s=timeout_s)
    except ValueError as exc:
        raise CliError(f"--redis-url {url}: {exc}") from None
    try:
        with client:
            keys = client.dbsize()
    except redis.RedisError as exc:
        raise CliError(f"--redis-url {url}: no Redis answers ({exc})") from None
    if keys:
        raise CliError(
            f"--redis-url {url}: the database is not empty (DBSIZE {keys}); the bench flushes it, "
            "give an empty one"
        )
    return url
