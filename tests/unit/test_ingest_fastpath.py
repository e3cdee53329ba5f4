"""The ingestor's fused quote/trade path gives exactly what the general path gives.

Reference: the general path (``sbe.decode`` → ``Sequencer.check`` → ``Packer.pack`` →
``IngestBuffer.offer``), itself tested against the record format's reference encoder.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest

from btcpred.events import BestBidAsk, Trade
from btcpred.ingest.connection import StreamConnection
from btcpred.ingest.service import Ingestor
from btcpred.sbe import encode_event, encode_events
from btcpred.settings.ingest import IngestSettings
from btcpred.sources.capture import Capture

NOW_NS = 1_723_161_600_123_456_789


def _ingestor(fast: bool, buffer_bytes: int) -> tuple[Ingestor, StreamConnection]:
    settings = IngestSettings(stream_name="s", api_key="k", buffer_bytes=buffer_bytes)
    ingestor = Ingestor(
        settings,
        None,  # type: ignore[arg-type]  # nothing is put in this test
        clock_ns=lambda: NOW_NS,
        fast_path=fast,
    )
    conn = StreamConnection(
        1, "ws://unused", ingestor._sink, api_key=None, text_is_data=False, on_shutdown=print
    )
    return ingestor, conn


def _with_version(frame: bytes, version: int) -> bytes:
    return frame[:6] + struct.pack("<H", version) + frame[8:]


def _frames(capture: Capture) -> list[tuple[str, bytes]]:
    """The capture as single-event frames with faults injected; ("break", b"") marks where
    a reconnect is expected."""
    rng = random.Random(7)
    frames: list[tuple[str, bytes]] = []
    events = capture.events
    for i, event in enumerate(events):
        frame = encode_event(event)
        roll = rng.random()
        if roll < 0.01 and isinstance(event, Trade):
            continue  # a lost trade: a gap
        frames.append(("frame", frame))
        if roll > 0.99:
            frames.append(("frame", frame))  # a redelivery: a duplicate
        elif 0.985 < roll <= 0.99:
            frames.append(("frame", _with_version(frame, 1)))  # newer version: general path
        elif 0.98 < roll <= 0.985:
            frames.append(("frame", frame[:-1]))  # truncated: malformed
        if i % 20_000 == 10_000:
            frames.append(("break", b""))
    trades = [e for e in events if isinstance(e, Trade)][:2000]
    frames.extend(("frame", f) for f in encode_events(trades))  # old ids, some multi-trade frames
    return frames


def _state(ingestor: Ingestor) -> dict[str, Any]:
    buffer, seq, stats = ingestor.buffer, ingestor.sequencer, ingestor.stats
    return {
        "queues": {s: list(q) for s, q in buffer.queues.items()},
        "buffer": (
            buffer.bytes,
            buffer.items,
            buffer.shed_quotes,
            buffer.shed_events,
            buffer.overflow_gaps,
            buffer.pending_gaps(),
            buffer.queued_bytes("BTCUSDT"),
        ),
        "sequencer": (seq.marks, seq.reasons, seq.duplicates, seq.gaps, seq.gap_ids),
        "stats": (stats.frames, stats.events, stats.malformed_frames),
    }


@pytest.mark.parametrize("buffer_bytes", [1 << 30, 256 * 1024], ids=["roomy", "shedding"])
def test_the_fast_path_fills_the_buffer_exactly_as_the_general_path(
    capture: Capture, buffer_bytes: int
) -> None:
    frames = _frames(capture)
    states = []
    for fast in (True, False):
        ingestor, conn = _ingestor(fast, buffer_bytes)
        for recv, (what, frame) in enumerate(frames):
            if what == "break":
                ingestor.sequencer.expect_break("reconnect", set(ingestor._expected))
            else:
                ingestor._sink(conn, frame, True, NOW_NS + recv)
        states.append(_state(ingestor))
    assert states[0] == states[1]
    assert states[0]["sequencer"][3] > 0  # the gaps were seen
    assert states[0]["sequencer"][2] > 0  # and the duplicates


def test_quotes_and_single_trades_take_the_fast_path(capture: Capture) -> None:
    ingestor, _ = _ingestor(True, 1 << 30)
    fast = ingestor._fast
    assert fast is not None
    trades = [e for e in capture.events if isinstance(e, Trade)][:2]
    quote = next(e for e in capture.events if isinstance(e, BestBidAsk))
    ingestor.sequencer.check(trades[0])  # the first trade of a stream goes the general way

    taken = [fast.take(encode_event(e), NOW_NS) for e in (quote, trades[1])]

    assert taken == [True, True]
    assert ingestor.stats.events == 2
    assert [s.kind for s in ingestor.buffer.queues["BTCUSDT"]] == [1, 0]


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f[:-1],
        lambda f: f + b"\0",
        lambda f: _with_version(f, 1),
        lambda f: f[:8],
        lambda f: f[:-8] + bytes([6]) + b"\xff" * 6,
    ],
    ids=["truncated", "trailing", "newer-version", "header-only", "bad-utf8"],
)
def test_an_unusual_quote_frame_is_left_to_the_general_path(capture: Capture, damage: Any) -> None:
    ingestor, _ = _ingestor(True, 1 << 30)
    fast = ingestor._fast
    assert fast is not None
    quote = next(e for e in capture.events if isinstance(e, BestBidAsk))

    taken = fast.take(damage(encode_event(quote)), NOW_NS)

    assert not taken
    assert ingestor.sequencer.marks == {}
    assert ingestor.buffer.items == 0
