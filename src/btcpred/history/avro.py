"""History objects as Avro container files: writing them, and checking one before loading it.

:func:`encode` writes rows with the history schema (deflate codec). :func:`scan` walks a
container's framing without decoding a row: the magic, the header, every block's count and
size and the sync marker after it, so a truncated or corrupted object is found before anything
is written anywhere, and the number of rows it must yield is known.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from btcpred.history.records import AVRO_SCHEMA

__all__ = ["Container", "ObjectFormatError", "encode", "scan"]

_MAGIC: Final = b"Obj\x01"
_CODECS: Final = frozenset({"null", "deflate"})


class ObjectFormatError(ValueError):
    """The bytes are not a complete Avro container of history rows; the message says why."""


@dataclass(frozen=True)
class Container:
    """What :func:`scan` found: the writer's schema, codec, blocks and rows."""

    schema: dict[str, Any]
    codec: str
    blocks: int
    rows: int


def encode(rows: Iterable[Mapping[str, Any]], *, codec: str = "deflate") -> bytes:
    """Rows (dicts in the history schema) as one Avro container file."""
    import fastavro  # the writer's only: the loader checks and decodes without it

    out = io.BytesIO()
    fastavro.writer(
        out, fastavro.parse_schema(AVRO_SCHEMA), rows, codec=codec, sync_interval=1 << 16
    )
    return out.getvalue()


class _Cursor:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def long(self) -> int:
        shift = result = 0
        while True:
            if self.pos >= len(self.data):
                raise ObjectFormatError(f"cut short at byte {self.pos} (inside a number)")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (result >> 1) ^ -(result & 1)
            shift += 7
            if shift > 63:
                raise ObjectFormatError(f"malformed number at byte {self.pos}")

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise ObjectFormatError(
                f"cut short: {size} bytes wanted at byte {self.pos} of {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk


def _header(cur: _Cursor) -> dict[str, bytes]:
    meta: dict[str, bytes] = {}
    while (count := cur.long()) != 0:
        if count < 0:
            count = -count
            cur.long()  # the block's byte size
        for _ in range(count):
            key = cur.take(cur.long()).decode("utf-8", "replace")
            meta[key] = cur.take(cur.long())
    return meta


def scan(data: bytes) -> Container:
    """Check a container's framing and return what it holds.

    Raises
    ------
    ObjectFormatError
        Not Avro, a header without a schema, an unsupported codec, a block cut short, a sync
        marker that does not match, or bytes after the last block.
    """
    if not data.startswith(_MAGIC):
        raise ObjectFormatError("not an Avro container file (no 'Obj\\x01' magic)")
    cur = _Cursor(data)
    cur.pos = len(_MAGIC)
    meta = _header(cur)
    sync = cur.take(16)
    try:
        schema = json.loads(meta["avro.schema"])
    except (KeyError, ValueError):
        raise ObjectFormatError("the header holds no readable schema") from None
    codec = meta.get("avro.codec", b"null").decode("ascii", "replace")
    if codec not in _CODECS:
        raise ObjectFormatError(f"codec {codec!r} is not one of {', '.join(sorted(_CODECS))}")
    blocks = rows = 0
    while cur.pos < len(data):
        count = cur.long()
        size = cur.long()
        if count < 0 or size < 0:
            raise ObjectFormatError(f"block {blocks + 1}: negative count or size")
        cur.take(size)
        if cur.take(16) != sync:
            raise ObjectFormatError(f"block {blocks + 1}: sync marker does not match")
        blocks, rows = blocks + 1, rows + count
    if not isinstance(schema, dict):
        raise ObjectFormatError("the header's schema is not a record")
    return Container(schema, codec, blocks, rows)
