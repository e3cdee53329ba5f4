"""Unit tests of ``btcpred.sim.services`` that need no server binaries."""

from __future__ import annotations

import shutil
import socket
import stat
from pathlib import Path

import pytest

from btcpred.sim.services import (
    RedisServer,
    ServiceError,
    ServiceNotInstalledError,
    find_postgres_bindir,
    find_redis_server,
    free_port,
)


def _fake_executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_find_redis_server_without_it_on_path_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("redis-server") is None

    with pytest.raises(ServiceNotInstalledError, match="redis-server not found on PATH") as info:
        find_redis_server()

    assert "apt-get install -y redis-server" in str(info.value)
    assert isinstance(info.value, ServiceError)
    assert isinstance(info.value, RuntimeError)


def test_find_redis_server_returns_the_executable_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _fake_executable(tmp_path / "redis-server")
    monkeypatch.setenv("PATH", str(tmp_path))

    assert find_redis_server() == str(fake)


def test_find_postgres_bindir_picks_the_highest_version(tmp_path: Path) -> None:
    root = tmp_path / "postgresql"
    for version in ("9.6", "15", "16"):
        for tool in ("initdb", "pg_ctl"):
            _fake_executable(root / version / "bin" / tool)
    _fake_executable(root / "17" / "bin" / "initdb")  # incomplete install: no pg_ctl

    found = find_postgres_bindir(path=str(tmp_path / "empty"), versions_root=str(root))

    assert found == str(root / "16" / "bin")


def test_find_postgres_bindir_without_binaries_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(ServiceNotInstalledError, match="apt-get install -y postgresql"):
        find_postgres_bindir(path=str(tmp_path), versions_root=str(tmp_path / "none"))


def test_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()

    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_redis_server_that_exits_raises_with_its_log_tail(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL: bad config line 1' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = RedisServer(str(fake), start_timeout=5.0)

    with pytest.raises(ServiceError, match="exited with status 3") as info:
        server.start()

    assert "FATAL: bad config line 1" in str(info.value)
    assert server._dir is None  # the temp dir was cleaned up
