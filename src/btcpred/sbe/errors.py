"""Typed errors of the SBE codec."""

from __future__ import annotations

from enum import Enum


class DecodeErrorReason(Enum):
    """Why a frame could not be decoded (stable names, usable as metric dimensions)."""

    TRUNCATED = "truncated"
    WRONG_SCHEMA = "wrong schema id"
    UNKNOWN_TEMPLATE = "unknown template id"
    BAD_BLOCK_LENGTH = "block length shorter than the schema's"
    GROUP_OVERFLOW = "group larger than the frame"
    BAD_ENUM = "invalid enum value"
    BAD_SYMBOL = "invalid symbol"
    TRAILING_BYTES = "trailing bytes after the message"


class DecodeError(ValueError):
    """A frame is not a valid message of the spot stream schema.

    Permanent: decoding the same bytes again fails the same way. ``reason`` says what is wrong,
    ``offset`` is the byte offset in the frame where the decoder found it.
    """

    def __init__(self, reason: DecodeErrorReason, offset: int, detail: str = "") -> None:
        self.reason = reason
        self.offset = offset
        self.detail = detail
        text = f"{reason.value} at byte {offset}"
        super().__init__(f"{text}: {detail}" if detail else text)


class EncodeError(ValueError):
    """Values that cannot be written as a message of the spot stream schema."""
