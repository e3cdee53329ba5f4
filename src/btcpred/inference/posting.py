"""Posting to one WebSocket connection through API Gateway's ``@connections`` API.

Light on purpose (no numpy, onnxruntime or fastavro): the WebSocket function replies through
it, and the predictor's broadcaster posts through it.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["GoneError", "ManagementApiPoster", "Poster"]


class GoneError(Exception):
    """The WebSocket connection no longer exists (API Gateway answered 410 Gone)."""


class Poster(Protocol):
    """Sends bytes to one WebSocket connection."""

    def post(self, connection_id: str, data: bytes) -> None:
        """Deliver, or raise :class:`GoneError` (connection gone) or another exception."""


class ManagementApiPoster:
    """:class:`Poster` on a boto3 ``apigatewaymanagementapi`` client (AWS or local stand-in)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def post(self, connection_id: str, data: bytes) -> None:
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
        except Exception as exc:
            response = getattr(exc, "response", None) or {}
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = response.get("Error", {}).get("Code")
            if status == 410 or code == "GoneException":
                raise GoneError(connection_id) from None
            raise
