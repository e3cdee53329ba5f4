"""A local stand-in for API Gateway's WebSocket management API (``@connections``).

It answers what ``boto3.client("apigatewaymanagementapi", endpoint_url=server.url)`` sends:
``POST /@connections/{id}`` stores the message, ``GET`` describes the connection, ``DELETE``
closes it; an unknown connection gets 410 Gone with ``GoneException``, as API Gateway answers.
Tests and the benchmark use it for broadcasts; ``delay_s`` makes a connection slow.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import orjson

from btcpred.sim.services import Service

__all__ = ["ManagementApiServer"]


class ManagementApiServer(Service):
    """Serves ``@connections`` on 127.0.0.1 (port 0 = any free port)."""

    def __init__(self, port: int = 0, *, stage: str = "local") -> None:
        self.stage = stage
        self._lock = threading.Lock()
        self.connections: set[str] = set()
        self.received: dict[str, list[bytes]] = defaultdict(list)
        self.delay_s: dict[str, float] = {}
        self.failing: set[str] = set()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.api = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint URL to give boto3 (``http://127.0.0.1:{port}/{stage}``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/{self.stage}"

    def connect(self, *connection_ids: str) -> None:
        """Open connections."""
        with self._lock:
            self.connections.update(connection_ids)

    def messages(self, connection_id: str) -> list[bytes]:
        """What a connection has received, oldest first."""
        with self._lock:
            return list(self.received.get(connection_id, ()))

    def start(self) -> Self:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """One request → (status, body, headers)."""
        _, sep, tail = path.partition("/@connections/")
        cid = urllib.parse.unquote(tail.split("?", 1)[0])
        if not sep or not cid:
            return 404, b'{"message":"Not Found"}', {}
        with self._lock:
            known = cid in self.connections
            delay = self.delay_s.get(cid, 0.0)
            failing = cid in self.failing
        if delay:
            time.sleep(delay)
        if not known:
            return 410, b'{"message":"Gone"}', {"x-amzn-ErrorType": "GoneException"}
        if failing:
            return 500, b'{"message":"Internal server error"}', {}
        if method == "POST":
            with self._lock:
                self.received[cid].append(body)
            return 200, b"", {}
        if method == "DELETE":
            with self._lock:
                self.connections.discard(cid)
            return 204, b"", {}
        info = {"connectedAt": "2026-01-01T00:00:00Z", "identity": {"sourceIp": "127.0.0.1"}}
        return 200, orjson.dumps(info), {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    api: ManagementApiServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        """Quiet."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, out, headers = self.server.api.handle(self.command, self.path, body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_POST = do_GET = do_DELETE = _serve
