"""Start throwaway Redis and PostgreSQL servers on free loopback ports.

Everything lives in a fresh temporary directory that ``stop()`` removes; nothing is persisted
and no system service is touched. Callers pass all configuration explicitly.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

REDIS_INSTALL_HINT = (
    "redis-server not found on PATH; install it with `apt-get install -y redis-server`"
)
POSTGRES_INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, via `pg_config --bindir` "
    "or in /usr/lib/postgresql/*/bin; install them with `apt-get install -y postgresql`"
)
_PG_TOOLS = ("initdb", "pg_ctl")
_INITDB_OPTS = ("-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C")


class ServiceError(RuntimeError):
    """A local service could not be started or stopped."""


class ServiceNotInstalledError(ServiceError):
    """A server binary is missing; the message says what to install."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that the kernel reported free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def terminate(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Stop a child process: SIGTERM, then SIGKILL after ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def find_redis_server(path: str | None = None) -> str:
    """Return the absolute path of ``redis-server``.

    Parameters
    ----------
    path
        Search path in ``PATH`` format; ``None`` uses the process's ``PATH``.

    Raises
    ------
    ServiceNotInstalledError
        If ``redis-server`` is not on the search path.
    """
    found = shutil.which("redis-server", path=path)
    if found is None:
        raise ServiceNotInstalledError(REDIS_INSTALL_HINT)
    return found


def _has_pg_tools(bindir: Path) -> bool:
    return all(os.access(bindir / tool, os.X_OK) for tool in _PG_TOOLS)


def _version_key(bindir: Path) -> tuple[int, ...]:
    parts = bindir.parent.name.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)


def find_postgres_bindir(
    path: str | None = None, versions_root: str = "/usr/lib/postgresql"
) -> str:
    """Return a directory holding the PostgreSQL server tools ``initdb`` and ``pg_ctl``.

    Tried in order: ``PATH``, ``pg_config --bindir``, the highest ``<versions_root>/*/bin``.

    Parameters
    ----------
    path
        Search path in ``PATH`` format; ``None`` uses the process's ``PATH``.
    versions_root
        Directory of per-version installs (``<root>/<version>/bin``).

    Raises
    ------
    ServiceNotInstalledError
        If no directory holds both tools.
    """
    initdb = shutil.which("initdb", path=path)
    if initdb is not None:  # prefer the real bindir behind a symlink: it also has createdb
        for bindir in (Path(initdb).resolve().parent, Path(initdb).parent):
            if _has_pg_tools(bindir):
                return str(bindir)
    pg_config = shutil.which("pg_config", path=path)
    if pg_config is not None:
        out = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=30
        )
        found = Path(out.stdout.strip())
        if out.returncode == 0 and found.is_absolute() and _has_pg_tools(found):
            return str(found)
    candidates = [d for d in Path(versions_root).glob("*/bin") if _has_pg_tools(d)]
    if not candidates:
        raise ServiceNotInstalledError(POSTGRES_INSTALL_HINT)
    return str(max(candidates, key=_version_key))


def free_cluster_port(low: int = 20_000, high: int = 30_000) -> int:
    """A free port ``p`` in ``[low, high)`` whose cluster bus port ``p + 10000`` is free too.

    Redis Cluster nodes talk to each other on their port plus 10,000, so a node's port must be
    at most 55,535; :func:`free_port` can hand out higher ones.

    Raises
    ------
    ServiceError
        No such pair was free after many tries.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(low, high)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise ServiceError(f"no free port pair in [{low}, {high}) for a Redis Cluster node")


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<no log at {log}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _redis_pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Service:
    """Context-manager plumbing shared by the local servers: ``with X() as x`` starts and stops."""

    def start(self) -> Self:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RedisServer(Service):
    """A throwaway ``redis-server`` on a free 127.0.0.1 port with persistence off.

    Parameters
    ----------
    executable
        Path of ``redis-server``; ``None`` uses :func:`find_redis_server`.
    start_timeout
        Seconds to wait for the server to answer ``PING``.
    """

    def __init__(
        self,
        executable: str | None = None,
        *,
        start_timeout: float = 10.0,
        extra_args: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        self._executable = executable
        self._timeout = start_timeout
        self._extra_args = extra_args
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Redis URL of database 0, e.g. ``redis://127.0.0.1:6390/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        """Start the server, wait until it answers ``PING`` and return ``self``.

        Raises
        ------
        ServiceError
            If the process exits or stays silent until the deadline (message ends with its log).
        """
        executable = self._executable or find_redis_server()
        self._dir = Path(tempfile.mkdtemp(prefix="btcpred-redis-"))
        self.port = self._port or free_port()
        log = self._dir / "redis.log"
        argv = [executable, "--port", str(self.port), "--dir", str(self._dir)]
        argv += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *self._extra_args]
        try:
            with log.open("wb") as out:
                self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
                )
            self._wait_ready(self._proc, log)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceError(
                    f"redis-server exited with status {proc.returncode}; log:\n" + _log_tail(log)
                )
            if _redis_pings(self.port):
                return
            time.sleep(0.05)
        raise ServiceError(
            f"redis-server did not answer PING within {self._timeout}s; log:\n" + _log_tail(log)
        )

    def stop(self) -> None:
        """Terminate the server (SIGTERM, SIGKILL after 10 s) and remove its directory."""
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class RedisClusterServer(Service):
    """A throwaway Redis Cluster: ``nodes`` masters on free 127.0.0.1 ports, no replicas.

    Each node is a :class:`RedisServer` with ``--cluster-enabled yes``; ``redis-cli --cluster
    create`` assigns the 16,384 slots, and :meth:`start` returns once every node reports
    ``cluster_state:ok``. Clients must be cluster clients (``btcpred.redisconn.connect(url,
    cluster=True)``): a plain client gets ``MOVED`` for two thirds of the keys.
    """

    def __init__(
        self, executable: str | None = None, *, nodes: int = 3, start_timeout: float = 30.0
    ) -> None:
        if nodes < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        self._executable = executable
        self._count = nodes
        self._timeout = start_timeout
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        """URL of the first node (a cluster client discovers the others from it)."""
        return self.nodes[0].url

    def start(self) -> Self:
        """Start the nodes, create the cluster, wait until it is ok, and return ``self``.

        Raises
        ------
        ServiceNotInstalledError
            ``redis-server`` or ``redis-cli`` is missing.
        ServiceError
            A node did not start or the cluster did not form before the deadline.
        """
        executable = self._executable or find_redis_server()
        cli = shutil.which("redis-cli") or str(Path(executable).with_name("redis-cli"))
        if not os.access(cli, os.X_OK):
            raise ServiceNotInstalledError(REDIS_INSTALL_HINT.replace("redis-server", "redis-cli"))
        args = ("--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
        try:
            for _ in range(self._count):
                node = RedisServer(executable, extra_args=args, port=free_cluster_port())
                self.nodes.append(node)
                node.start()
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            argv = [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0"]
            out = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [*argv, "--cluster-yes"], capture_output=True, text=True, timeout=60, check=False
            )
            if out.returncode != 0:
                raise ServiceError(f"redis-cli --cluster create failed:\n{out.stdout}{out.stderr}")
            self._wait_ok(cli)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, cli: str) -> None:
        deadline = time.monotonic() + self._timeout
        pending = list(self.nodes)
        while pending and time.monotonic() < deadline:
            info = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [cli, "-p", str(pending[0].port), "cluster", "info"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
            if "cluster_state:ok" in info:
                pending.pop(0)
            else:
                time.sleep(0.1)
        if pending:
            raise ServiceError(f"the Redis Cluster did not reach state ok in {self._timeout}s")

    def stop(self) -> None:
        """Stop every node and remove their directories."""
        for node in self.nodes:
            node.stop()
        self.nodes = []


class PostgresServer(Service):
    """A throwaway PostgreSQL cluster on a free 127.0.0.1 port with one empty database.

    As root, the cluster belongs to ``os_user`` and its tools run via ``runuser``, because
    ``initdb`` and ``pg_ctl`` refuse to run as root.

    Parameters
    ----------
    bindir
        Directory with ``initdb``, ``pg_ctl``, ``createdb``; ``None``: :func:`find_postgres_bindir`.
    database
        Name of the database created after start.
    start_timeout
        Seconds ``pg_ctl`` waits for the server to accept connections.
    os_user
        OS account that owns the cluster when running as root.
    base_dir
        Parent of the temp directory (``os_user`` must traverse it); ``None``: e.g. ``/tmp``.
    tls
        Serve TLS only (a throwaway self-signed certificate made with ``openssl``; plain
        connections are refused by ``pg_hba.conf``), as RDS with ``rds.force_ssl`` does.
    """

    def __init__(
        self,
        bindir: str | None = None,
        *,
        database: str = "btcpred_test",
        start_timeout: int = 30,
        os_user: str = "postgres",
        base_dir: str | None = None,
        tls: bool = False,
    ) -> None:
        self._tls = tls
        self._bindir = Path(bindir) if bindir else None
        self._database = database
        self._timeout = start_timeout
        self._os_user = os_user
        self._base_dir = base_dir
        self._dir: Path | None = None
        self._prefix: list[str] = []
        self.port = 0

    @property
    def data_dir(self) -> Path | None:
        """The cluster's data directory (``None`` before :meth:`start`)."""
        return None if self._dir is None else self._dir / "data"

    @property
    def url(self) -> str:
        """libpq URL, e.g. ``postgresql://postgres@127.0.0.1:5439/btcpred_test``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self._database}"

    def start(self) -> Self:
        """Create and start the cluster, create the database and return ``self``.

        Raises
        ------
        ServiceError
            If a step fails (message ends with the tool's output and the server log).
        """
        bindir = self._bindir = self._bindir or Path(find_postgres_bindir())
        self._dir = Path(tempfile.mkdtemp(prefix="btcpred-pg-", dir=self._base_dir))
        data, log = self._dir / "data", self._dir / "log"
        try:
            self._prefix = self._run_as_prefix(self._dir)
            self._run([str(bindir / "initdb"), "-D", str(data), *_INITDB_OPTS], "initdb")
            self.port = free_port()
            opts = f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            if self._tls:
                self._make_tls(data)
                opts += " -c ssl=on"
            pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w"]
            self._run([*pg_ctl, "-t", str(self._timeout), "-o", opts, "start"], "pg_ctl start", log)
            createdb = bindir / "createdb"
            if not os.access(createdb, os.X_OK):
                createdb = Path(shutil.which("createdb") or "createdb")
            where = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
            self._run([str(createdb), *where, self._database], "createdb", log)
        except BaseException:
            self.stop()
            raise
        return self

    def _make_tls(self, data: Path) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise ServiceNotInstalledError(
                "openssl not found; install it with `apt-get install -y openssl`"
            )
        key, cert = data / "server.key", data / "server.crt"
        self._run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            "openssl req",
        )
        self._run(["chmod", "600", str(key)], "chmod server.key")
        hba = data / "pg_hba.conf"
        self._run(
            [
                "sh",
                "-c",
                f"printf 'local all all trust\\nhostssl all all 127.0.0.1/32 trust\\n"
                f"hostnossl all all 0.0.0.0/0 reject\\n' > {hba}",
            ],
            "pg_hba.conf",
        )

    def _run_as_prefix(self, directory: Path) -> list[str]:
        if os.geteuid() != 0:
            return []
        runuser = shutil.which("runuser")
        if runuser is None:
            raise ServiceNotInstalledError(
                "runuser not found; install it with `apt-get install -y util-linux`"
            )
        try:
            account = pwd.getpwnam(self._os_user)
        except KeyError:
            raise ServiceNotInstalledError(
                f"OS user {self._os_user!r} not found; install PostgreSQL with "
                "`apt-get install -y postgresql` (it creates the user)"
            ) from None
        os.chown(directory, account.pw_uid, account.pw_gid)
        return [runuser, "-u", self._os_user, "--"]

    def _run(self, argv: list[str], what: str, log: Path | None = None) -> None:
        try:
            out = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [*self._prefix, *argv],
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
                timeout=self._timeout + 60,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"{what} timed out after {exc.timeout}s") from exc
        if out.returncode != 0:
            detail = (out.stdout + out.stderr).strip()
            tail = f"\nserver log:\n{_log_tail(log)}" if log is not None else ""
            raise ServiceError(f"{what} failed with status {out.returncode}:\n{detail}{tail}")

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``) and remove its directory."""
        if self._dir is None:
            return
        data = self._dir / "data"
        try:
            if (data / "postmaster.pid").exists() and self._bindir is not None:
                pg_ctl = [str(self._bindir / "pg_ctl"), "-D", str(data), "-w", "stop"]
                try:
                    self._run([*pg_ctl, "-m", "fast"], "pg_ctl stop")
                except ServiceError:
                    self._run([*pg_ctl, "-m", "immediate"], "pg_ctl stop")
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
