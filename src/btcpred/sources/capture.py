"""Recorded Binance JSON WebSocket captures (one ``<receive time ns> <json>`` line per message).

The fixture in ``fixtures/binance`` holds the combined streams ``btcusdt@trade``,
``btcusdt@bookTicker`` and ``btcusdt@depth@100ms`` plus one REST depth snapshot. Loading a
capture estimates the capture host's clock offset from the messages that carry an exchange time
(the median of ``E - receive time``) and uses it to give exchange-time estimates to the messages
that carry none (book tickers, the snapshot). Lines that are not valid messages are counted with
their line number and first bytes, never silently dropped.
"""

from __future__ import annotations

import gzip
import statistics
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from btcpred.events import Event
from btcpred.sources.binance_json import MessageError, parse_payload

__all__ = ["Capture", "CaptureFormatError", "CapturedMessage", "RejectedLine", "load_capture"]


class CaptureFormatError(ValueError):
    """A capture file cannot be read at all (a ``.gz`` that is not gzip or is cut short).

    Single lines that are not messages are not this error: they are kept as
    :class:`RejectedLine`.
    """


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    """One recorded message: when it arrived and its JSON payload without the stream envelope."""

    receive_time_ns: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """A capture line that is not a valid message, kept for the report."""

    path: str
    line_number: int
    reason: str
    head: bytes


@dataclass(frozen=True)
class Capture:
    """A loaded capture: the messages, the events parsed from them (same order) and rejects."""

    symbol: str
    clock_offset_us: int
    messages: list[CapturedMessage]
    events: list[Event]
    rejected: list[RejectedLine] = field(default_factory=list)


def _lines(paths: Iterable[Path]) -> Iterator[tuple[str, int, bytes]]:
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rb") as stream:
                for number, line in enumerate(stream, start=1):
                    if line.strip():
                        yield str(path), number, line.rstrip(b"\r\n")
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise CaptureFormatError(f"{path}: cannot read it as gzip ({exc})") from None


def _split(line: bytes) -> tuple[int, object]:
    stamp, _, body = line.partition(b" ")
    try:
        receive_time_ns = int(stamp)
        obj = orjson.loads(body)
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise MessageError(f"not '<ns> <json>': {exc}") from None
    if isinstance(obj, dict) and "stream" in obj and "data" in obj:
        obj = obj["data"]
    return receive_time_ns, obj


def _clock_offset_us(parsed: list[tuple[int, object]]) -> int:
    """Median of exchange event time minus local receive time, in microseconds."""
    offsets = [
        obj["E"] * 1000 - recv // 1000
        for recv, obj in parsed
        if isinstance(obj, dict) and type(obj.get("E")) is int
    ]
    return int(statistics.median(offsets)) if offsets else 0


def load_capture(paths: Iterable[Path], *, symbol: str = "BTCUSDT") -> Capture:
    """Load capture files (plain or gzip) in the order given.

    Parameters
    ----------
    paths
        Capture files; consecutive files of one recording, oldest first.
    symbol
        The symbol of the REST depth snapshot, which does not name it.

    Raises
    ------
    CaptureFormatError
        A file is not gzip or is cut short (unreadable lines are kept in ``rejected``).
    """
    parsed: list[tuple[int, object]] = []
    origins: list[tuple[str, int, bytes]] = []
    rejected: list[RejectedLine] = []
    for path, number, line in _lines(paths):
        try:
            parsed.append(_split(line))
            origins.append((path, number, line))
        except MessageError as exc:
            rejected.append(RejectedLine(path, number, str(exc), line[:80]))
    offset = _clock_offset_us(parsed)
    messages: list[CapturedMessage] = []
    events: list[Event] = []
    for (recv, obj), (path, number, line) in zip(parsed, origins, strict=True):
        try:
            event = parse_payload(obj, recv, symbol=symbol, clock_offset_us=offset)
        except MessageError as exc:
            rejected.append(RejectedLine(path, number, str(exc), line[:80]))
            continue
        messages.append(CapturedMessage(recv, orjson.dumps(obj)))
        events.append(event)
    return Capture(symbol, offset, messages, events, rejected)
