"""What WebSocket and HTTP clients see: the ``$connect``/``$disconnect``/``$default`` routes
and ``GET /health``, ``GET /prediction/latest``. The Lambda handlers only translate events.

WebSocket protocol (JSON text frames):

* connect with ``?token=…`` (checked in constant time against the configured secret) and,
  optionally, ``&symbol=ETHUSDT``; the connection is stored for ``CONNECTION_TTL_SECONDS``;
* every tick the predictor sends each connection its symbol's PredictionResult (the seed's
  JSON object, no envelope);
* ``{"action": "ping"}`` → ``{"type": "pong", "timestamp": ms}``;
* ``{"action": "subscribe", "symbol": "BTCUSDT"}`` → ``{"type": "subscribed", …}`` followed at
  once by the latest PredictionResult when there is one (API Gateway cannot deliver
  anything during ``$connect`` itself, so this is how a client gets a prediction without
  waiting for the next tick);
* anything else → ``{"type": "error", "error": "…"}``; the connection stays open.

Clients never see internal detail: a store failure is logged here with its exception and
answered with a fixed text (``503``/``service temporarily unavailable``); no reply echoes
client input. Light on purpose: no numpy, onnxruntime or fastavro in this import graph.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from btcpred.inference.connections import ConnectionRegistry
from btcpred.inference.errors import InferenceStoreError
from btcpred.inference.posting import GoneError, Poster
from btcpred.inference.process import rss_mb
from btcpred.inference.store import InferenceStore
from btcpred.settings import HttpSettings, WebSocketSettings

__all__ = ["HttpApi", "HttpResponse", "WebSocketApi", "client_text", "decode_body"]

logger = logging.getLogger(__name__)
UNAVAILABLE = "service temporarily unavailable; try again"


def client_text(value: object) -> str | None:
    """A client-supplied string as UTF-8-safe text, or None when it is not a string.

    Lone surrogates (``"\\ud800"``, which JSON allows and Python keeps) cannot be encoded; they
    make the value unusable rather than raising later.
    """
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def decode_body(body: object, is_base64: bool) -> bytes | None:
    """The raw bytes of a WebSocket/HTTP event body (None when it cannot be decoded)."""
    if body is None:
        return b""
    if isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode("utf-8", "surrogatepass")  # a lone surrogate: not valid UTF-8 below
    else:
        return None
    if is_base64:
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return None
    return raw


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """Status and JSON body (API Gateway proxy response via :meth:`to_proxy`)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def to_proxy(self) -> dict[str, Any]:
        """The Lambda proxy integration response."""
        headers = {"content-type": "application/json", "cache-control": "no-store"}
        return {
            "statusCode": self.status,
            "headers": headers | self.headers,
            "body": orjson.dumps(self.body).decode(),
        }


class WebSocketApi:
    """The three WebSocket routes; see the module docstring."""

    def __init__(
        self,
        settings: WebSocketSettings,
        registry: ConnectionRegistry,
        store: InferenceStore,
        token: str | None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.token = token

    def connect(self, connection_id: str, query: object, now_ms: int) -> int:
        """``$connect``: 200 stored, 401 bad token (or none configured), 400 bad symbol, 503
        registry down."""
        params = query if isinstance(query, dict) else {}
        given = client_text(params.get("token")) or ""
        if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
            return 401
        symbol = client_text(params.get("symbol", self.settings.symbols[0]))
        if symbol is None or symbol.upper() not in self.settings.symbols:
            return 400
        try:
            self.registry.add(connection_id, symbol.upper(), now_ms)
        except InferenceStoreError as exc:
            logger.warning("$connect %s: registry unavailable: %s", connection_id, exc)
            return 503
        return 200

    def disconnect(self, connection_id: str) -> int:
        """``$disconnect``: forget the connection (200 even when it was unknown)."""
        try:
            self.registry.remove([connection_id])
        except InferenceStoreError as exc:
            logger.warning("$disconnect %s: registry unavailable: %s", connection_id, exc)
            return 503  # it expires with its TTL
        return 200

    def message(
        self, connection_id: str, body: object, now_ms: int, *, is_base64: bool = False
    ) -> list[bytes]:
        """``$default``: the replies to send back to the connection, in order."""
        raw = decode_body(body, is_base64)
        if raw is None:
            return [_error("message body could not be decoded")]
        limit = self.settings.max_message_bytes
        if len(raw) > limit:
            return [_error(f"message of {len(raw)} bytes is larger than {limit}")]
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return [_error("message is not JSON")]
        action = msg.get("action") if isinstance(msg, dict) else None
        if action == "ping":
            return [orjson.dumps({"type": "pong", "timestamp": now_ms})]
        if action != "subscribe":
            return [_error('message must be a JSON object with "action": "ping" or "subscribe"')]
        return self._subscribe(connection_id, client_text(msg.get("symbol")), now_ms)

    def _subscribe(self, connection_id: str, symbol: str | None, now_ms: int) -> list[bytes]:
        if symbol is None or symbol.upper() not in self.settings.symbols:
            return [_error(f"symbol must be one of {', '.join(self.settings.symbols)}")]
        symbol = symbol.upper()
        try:
            self.registry.add(connection_id, symbol, now_ms)
            latest = self.store.latest_prediction(symbol)
        except InferenceStoreError as exc:
            logger.warning("subscribe %s: store unavailable: %s", connection_id, exc)
            return [_error(UNAVAILABLE)]
        replies = [orjson.dumps({"type": "subscribed", "symbol": symbol})]
        if latest is not None:
            replies.append(latest.to_json())
        return replies

    def reply(self, poster: Poster, connection_id: str, replies: list[bytes]) -> None:
        """Send replies; a connection that is gone is forgotten, and a reply that fails
        otherwise (throttled, forbidden, unreachable endpoint) is logged and given up: the
        client's message was handled, so the route still answers 200."""
        for data in replies:
            try:
                poster.post(connection_id, data)
            except GoneError:
                self.disconnect(connection_id)
                return
            except Exception as exc:  # noqa: BLE001 - any management-API failure, logged
                logger.warning("reply to %s failed: %s: %s", connection_id, type(exc).__name__, exc)
                return


def _error(text: str) -> bytes:
    return orjson.dumps({"type": "error", "error": text})


class HttpApi:
    """``GET /health`` and ``GET /prediction/latest``, routed by :meth:`route`."""

    def __init__(self, settings: HttpSettings, store: InferenceStore) -> None:
        self.settings = settings
        self.store = store

    def route(
        self, method: object, path: object, stage: object, query: object, now_ms: int
    ) -> HttpResponse:
        """Answer one request: ``path`` as API Gateway gives it (``rawPath``, which carries
        ``/{stage}`` on a named stage), a trailing slash ignored."""
        route = _route_path(client_text(path) or "/", client_text(stage))
        if route not in ("/health", "/prediction/latest"):
            return HttpResponse(404, {"error": "no such route; use /health or /prediction/latest"})
        if method != "GET":
            return HttpResponse(405, {"error": "only GET is allowed"}, {"allow": "GET"})
        if route == "/health":
            return self.health(now_ms)
        params = query if isinstance(query, dict) else {}
        return self.latest(params.get("symbol"))

    def latest(self, symbol: object) -> HttpResponse:
        """The newest PredictionResult of ``symbol`` (default: the first configured)."""
        name = self.settings.symbols[0] if symbol is None else client_text(symbol)
        if name is None or name.upper() not in self.settings.symbols:
            return HttpResponse(404, {"error": "unknown symbol", "symbols": self.settings.symbols})
        try:
            latest = self.store.latest_prediction(name.upper())
        except InferenceStoreError as exc:
            logger.warning("GET /prediction/latest: store unavailable: %s", exc)
            return HttpResponse(503, {"error": UNAVAILABLE})
        if latest is None:
            return HttpResponse(503, {"error": "no fresh prediction", "symbol": name.upper()})
        return HttpResponse(200, orjson.loads(latest.to_json()))

    def health(self, now_ms: int) -> HttpResponse:
        """200 when Redis answers and an active predictor published within three intervals."""
        body: dict[str, Any] = {"api_rss_mb": round(rss_mb(), 1)}
        try:
            doc = self.store.health()
            ages = self._feature_ages(now_ms)
        except InferenceStoreError as exc:
            logger.warning("GET /health: store unavailable: %s", exc)
            body.update(status="unavailable", redis_reachable=False, reason="store unreachable")
            return HttpResponse(503, body)
        body.update(redis_reachable=True, stream_features_age_ms=ages)
        stale_after = 3 * self.settings.interval_s * 1000
        last = None if doc is None else doc.get("last_prediction_ms")
        if doc is None or not isinstance(last, int) or now_ms - last > stale_after:
            body.update(status="unavailable", reason="no active predictor")
            return HttpResponse(503, body)
        body.update(
            status="ok",
            model_version=_public(doc.get("model_version")),
            mode=_public(doc.get("mode")),
            fallback=doc.get("mode") != "stream",
            predictor_rss_mb=_number(doc.get("rss_mb")),
            pending_predictions=_number(doc.get("pending_predictions")),
            last_prediction_age_ms=now_ms - last,
        )
        return HttpResponse(200, body)

    def _feature_ages(self, now_ms: int) -> dict[str, int | None]:
        stored = self.store.read(self.settings.symbols, 0, take_pending=False)
        return {
            symbol: None if found.latest is None else now_ms - found.latest.timestamp
            for symbol, found in stored.items()
        }


def _route_path(path: str, stage: str | None) -> str:
    if stage and stage != "$default" and (path == f"/{stage}" or path.startswith(f"/{stage}/")):
        path = path[len(stage) + 1 :] or "/"
    return path.rstrip("/") or "/"


def _public(value: object) -> str | None:
    """A short identifier from the predictor's document (model version, mode), else None."""
    return value if isinstance(value, str) and len(value) <= 64 else None


def _number(value: object) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None
