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
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from btcpred.inference.connections import ConnectionRegistry
from btcpred.inference.outputs import GoneError, Poster
from btcpred.inference.service import rss_mb
from btcpred.inference.store import InferenceStore
from btcpred.settings import InferenceSettings

__all__ = ["HttpApi", "HttpResponse", "WebSocketApi"]


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """Status and JSON body (API Gateway proxy response via :meth:`to_proxy`)."""

    status: int
    body: dict[str, Any]

    def to_proxy(self) -> dict[str, Any]:
        """The Lambda proxy integration response."""
        return {
            "statusCode": self.status,
            "headers": {"content-type": "application/json", "cache-control": "no-store"},
            "body": orjson.dumps(self.body).decode(),
        }


class WebSocketApi:
    """The three WebSocket routes; see the module docstring."""

    def __init__(
        self,
        settings: InferenceSettings,
        registry: ConnectionRegistry,
        store: InferenceStore,
        token: str | None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.token = token

    def connect(self, connection_id: str, query: dict[str, str] | None, now_ms: int) -> int:
        """``$connect``: 200 stored, 401 bad token (or none configured), 400 bad symbol, 503
        registry down."""
        query = query or {}
        given = query.get("token", "")
        if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
            return 401
        symbol = query.get("symbol", self.settings.symbols[0]).upper()
        if symbol not in self.settings.symbols:
            return 400
        try:
            self.registry.add(connection_id, symbol, now_ms)
        except redis.RedisError:
            return 503
        return 200

    def disconnect(self, connection_id: str) -> int:
        """``$disconnect``: forget the connection (200 even when it was unknown)."""
        try:
            self.registry.remove([connection_id])
        except redis.RedisError:
            return 503  # it expires with its TTL
        return 200

    def message(self, connection_id: str, body: str | bytes | None, now_ms: int) -> list[bytes]:
        """``$default``: the replies to send back to the connection, in order."""
        raw = body.encode() if isinstance(body, str) else (body or b"")
        limit = self.settings.max_message_bytes
        if len(raw) > limit:
            return [_error(f"message of {len(raw)} bytes is larger than {limit}")]
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return [_error("message is not JSON")]
        if not isinstance(msg, dict) or not isinstance(msg.get("action"), str):
            return [_error('message must be a JSON object with an "action"')]
        action = msg["action"]
        if action == "ping":
            return [orjson.dumps({"type": "pong", "timestamp": now_ms})]
        if action != "subscribe":
            return [_error(f"unknown action {action!r}; use ping or subscribe")]
        symbol = msg.get("symbol")
        if not isinstance(symbol, str) or symbol.upper() not in self.settings.symbols:
            known = ", ".join(self.settings.symbols)
            return [_error(f"symbol must be one of {known}")]
        symbol = symbol.upper()
        try:
            self.registry.add(connection_id, symbol, now_ms)
            latest = self.store.latest_prediction(symbol)
        except redis.RedisError:
            return [_error("service temporarily unavailable; try again")]
        replies = [orjson.dumps({"type": "subscribed", "symbol": symbol})]
        if latest is not None:
            replies.append(latest.to_json())
        return replies

    def reply(self, poster: Poster, connection_id: str, replies: list[bytes]) -> None:
        """Send replies; a connection that is gone is forgotten."""
        for data in replies:
            try:
                poster.post(connection_id, data)
            except GoneError:
                self.disconnect(connection_id)
                return


def _error(text: str) -> bytes:
    return orjson.dumps({"type": "error", "error": text})


class HttpApi:
    """``GET /health`` and ``GET /prediction/latest``."""

    def __init__(self, settings: InferenceSettings, store: InferenceStore) -> None:
        self.settings = settings
        self.store = store

    def latest(self, symbol: str | None) -> HttpResponse:
        """The newest PredictionResult of ``symbol`` (default: the first configured)."""
        symbol = (symbol or self.settings.symbols[0]).upper()
        if symbol not in self.settings.symbols:
            return HttpResponse(404, {"error": f"unknown symbol {symbol}"})
        try:
            latest = self.store.latest_prediction(symbol)
        except redis.RedisError as exc:
            return HttpResponse(503, {"error": f"redis unreachable: {exc}"})
        if latest is None:
            return HttpResponse(503, {"error": f"no fresh prediction for {symbol}"})
        return HttpResponse(200, orjson.loads(latest.to_json()))

    def health(self, now_ms: int) -> HttpResponse:
        """200 when Redis answers and an active predictor published within three intervals."""
        body: dict[str, Any] = {"api_rss_mb": round(rss_mb(), 1)}
        try:
            self.store.client.ping()
            doc = self.store.health()
            ages = self._feature_ages(now_ms)
        except redis.RedisError as exc:
            body.update(status="unavailable", redis_reachable=False, error=str(exc))
            return HttpResponse(503, body)
        body.update(redis_reachable=True, stream_features_age_ms=ages)
        stale_after = 3 * self.settings.interval_s * 1000
        last = None if doc is None else doc.get("last_prediction_ms")
        if doc is None or not isinstance(last, int) or now_ms - last > stale_after:
            body.update(status="unavailable", error="no active predictor", predictor=doc)
            return HttpResponse(503, body)
        body.update(
            status="ok",
            model_version=doc.get("model_version"),
            mode=doc.get("mode"),
            fallback=doc.get("mode") != "stream",
            predictor_rss_mb=doc.get("rss_mb"),
            pending_predictions=doc.get("pending_predictions"),
            last_prediction_age_ms=now_ms - last,
            predictor=doc,
        )
        return HttpResponse(200, body)

    def _feature_ages(self, now_ms: int) -> dict[str, int | None]:
        stored = self.store.read(self.settings.symbols, 0, take_pending=False)
        return {
            symbol: None if found.latest is None else now_ms - found.latest.timestamp
            for symbol, found in stored.items()
        }
