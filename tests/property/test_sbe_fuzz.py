"""Deterministic fuzz test of the SBE decoder: malformed frames raise DecodeError, nothing else.

A fixed-seed ``random.Random`` mutates a corpus of valid frames of all four templates (version 0
and hypothetical version 1/2 frames with appended fields) with byte flips and overwrites,
truncations, insertions and deletions, extreme values in the header, group-header and symbol
length fields, and appended garbage. For every mutated frame ``decode`` must either return
events or raise :class:`DecodeError` whose offset lies inside the frame; any other exception is
a failure reported with the seed, the iteration and the frame's hex.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from collections.abc import Callable

from btcpred.events import BestBidAsk, DepthDiff, DepthSnapshot, Trade
from btcpred.sbe import (
    DecodeError,
    DecodeErrorReason,
    decode,
    encode_best_bid_ask,
    encode_depth_diff,
    encode_depth_snapshot,
    encode_events,
    encode_trades,
)

SEED = 20240808
ITERATIONS = 300_000
EXTREMES_16 = (0, 1, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
EXTREMES_32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
EVENT_TYPES = (Trade, BestBidAsk, DepthDiff, DepthSnapshot)

P, Q = 6183763000000, 2000000
LEVELS_20 = [(P + i * 1000000, Q * (i + 1)) for i in range(20)]
MAX = 2**63 - 1


def corpus() -> list[bytes]:
    """Valid frames of every template, sizes and versions the fuzzer starts from."""
    frames = [
        encode_trades("BTCUSDT", 1723161255343000, 1723161255342000, -8, -8, []),
        encode_trades("BTCUSDT", 1723161255343000, 1723161255342000, -8, -8, [(1, P, Q, True)]),
        encode_trades(
            "BTCUSDT",
            1723161255343000,
            1723161255342000,
            -8,
            -8,
            [(3735683259 + i, P, Q, i % 2 == 0) for i in range(5)],
        ),
        encode_trades("\u00e9\u20ac\U0001f680", -1, MAX, 127, -128, [(-MAX, MAX, 0, False)]),
        encode_best_bid_ask("BTCUSDT", 1723161255363000, 50093239212, -8, -8, (P, Q), (P + 1, Q)),
        encode_best_bid_ask("x" * 255, MAX, -MAX, 0, 0, (0, 0), (MAX, MAX)),
        encode_depth_snapshot("BTCUSDT", 1, 50093239212, -8, -8, LEVELS_20, LEVELS_20[:5]),
        encode_depth_snapshot("BTCUSDT", 1, 2, -8, -8, [], []),
        encode_depth_diff("BTCUSDT", 1, 50093239203, 50093239207, -8, -8, [(P, 0)], LEVELS_20[:4]),
        encode_depth_diff("ETHBTC", 1, 2, 3, -2, -3, [], [(1, 2)]),
        # Hypothetical newer versions: grown root blocks and entries, data after the symbol.
        encode_trades(
            "BTCUSDT",
            1,
            2,
            -8,
            -8,
            [(1, P, Q, True), (2, P, Q, False)],
            version=1,
            root_extra=b"\xde\xad\xbe\xef",
            entry_extra=b"\xaa\xbb\xcc",
        )
        + b"\x05hello",
        encode_best_bid_ask(
            "BTCUSDT", 1, 2, -8, -8, (P, Q), (P, Q), version=1, root_extra=b"\x01" * 9
        ),
        encode_depth_snapshot(
            "BTCUSDT", 1, 2, -8, -8, LEVELS_20[:3], LEVELS_20[:2], version=1, entry_extra=b"\x00"
        ),
        encode_depth_diff(
            "BTCUSDT",
            1,
            2,
            3,
            -8,
            -8,
            LEVELS_20[:2],
            LEVELS_20[:3],
            version=2,
            root_extra=b"\x10\x00\x01\x00",
            entry_extra=b"\xff" * 5,
        )
        + b"\x00\x00",
    ]
    return frames


def field_offsets(frame: bytes) -> list[tuple[int, str]]:
    """Offsets and formats of the header, group-header and symbol-length fields of ``frame``.

    Parsed here by hand from the schema (independently of the decoder); ``frame`` is valid.
    """
    block_length, template = struct.unpack_from("<HH", frame)
    fields = [(0, "<H"), (2, "<H"), (4, "<H"), (6, "<H")]
    pos = 8 + block_length
    if template == 10000:  # groupSizeEncoding: blockLength u16, numInGroup u32
        entry_length, count = struct.unpack_from("<HI", frame, pos)
        fields += [(pos, "<H"), (pos + 2, "<I")]
        pos += 6 + entry_length * count
    elif template in (10002, 10003):  # two groupSize16Encoding groups
        for _ in range(2):
            entry_length, count = struct.unpack_from("<HH", frame, pos)
            fields += [(pos, "<H"), (pos + 2, "<H")]
            pos += 4 + entry_length * count
    fields.append((pos, "<B"))  # symbol length
    return fields


# ------------------------------------------------------------------ mutations

Mutation = Callable[[random.Random, bytearray, list[tuple[int, str]]], None]


def flip_bit(rng: random.Random, frame: bytearray, fields: list[tuple[int, str]]) -> None:
    if frame:
        frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)


def overwrite_byte(rng: random.Random, frame: bytearray, fields: list[tuple[int, str]]) -> None:
    if frame:
        frame[rng.randrange(len(frame))] = rng.randrange(256)


def truncate(rng: random.Random, frame: bytearray, fields: list[tuple[int, str]]) -> None:
    del frame[rng.randrange(len(frame) + 1) :]


def insert_bytes(rng: random.Random, frame: bytearray, fields: list[tuple[int, str]]) -> None:
    at = rng.randrange(len(frame) + 1)
    frame[at:at] = rng.randbytes(rng.randint(1, 8))


def delete_bytes(rng: random.Random, frame: bytearray, fields: list[tuple[int, str]]) -> None:
    if frame:
        at = rng.randrange(len(frame))
        del frame[at : at + rng.randint(1, 8)]


def extreme_field(rng: random.Random, frame: bytearray, fields: list[tuple[int, str]]) -> None:
    """Overwrite a header, group-header or symbol-length field with an extreme value."""
    offset, fmt = rng.choice(fields)
    size = struct.calcsize(fmt)
    if offset + size > len(frame):
        return
    extremes = {"<B": (0, 1, 0x7F, 0xFF), "<H": EXTREMES_16, "<I": EXTREMES_32}[fmt]
    struct.pack_into(fmt, frame, offset, rng.choice(extremes))


def extreme_anywhere(rng: random.Random, frame: bytearray, fields: list[tuple[int, str]]) -> None:
    """Overwrite a u16 or u32 at a random offset with an extreme value."""
    fmt, extremes = rng.choice((("<H", EXTREMES_16), ("<I", EXTREMES_32)))
    size = struct.calcsize(fmt)
    if len(frame) >= size:
        struct.pack_into(fmt, frame, rng.randrange(len(frame) - size + 1), rng.choice(extremes))


def append_garbage(rng: random.Random, frame: bytearray, fields: list[tuple[int, str]]) -> None:
    frame += rng.randbytes(rng.randint(1, 64))


MUTATIONS: tuple[Mutation, ...] = (
    flip_bit,
    overwrite_byte,
    truncate,
    insert_bytes,
    delete_bytes,
    extreme_field,
    extreme_field,
    extreme_anywhere,
    append_garbage,
)


def mutate(rng: random.Random, valid: bytes, fields: list[tuple[int, str]]) -> bytes:
    frame = bytearray(valid)
    for mutation in rng.choices(MUTATIONS, k=rng.randint(1, 3)):
        mutation(rng, frame, fields)
    return bytes(frame)


# ------------------------------------------------------------------ the fuzz run


def check_one(frame: bytes, as_view: bool, outcomes: Counter[str]) -> str | None:
    """Decode one fuzzed frame; return a description of what went wrong, or None."""
    try:
        events = decode(memoryview(frame) if as_view else frame)
    except DecodeError as error:
        outcomes[error.reason.name] += 1
        if not 0 <= error.offset <= len(frame):
            return f"DecodeError offset {error.offset} outside 0..{len(frame)}: {error}"
        return None
    except Exception as exc:  # anything but DecodeError is a decoder bug
        return f"{type(exc).__name__}: {exc}"
    outcomes["decoded"] += 1
    if not isinstance(events, list) or not all(isinstance(e, EVENT_TYPES) for e in events):
        return f"decode returned {events!r}"
    # Whatever decodes is a valid event list: it re-encodes and decodes back to itself.
    again = [event for f in encode_events(events) for event in decode(f)]
    if again != events:
        return f"re-encoded events differ: {events!r} != {again!r}"
    return None


def run_fuzz(seed: int, iterations: int) -> tuple[Counter[str], list[str]]:
    rng = random.Random(seed)
    frames = corpus()
    fields = [field_offsets(frame) for frame in frames]
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    for iteration in range(iterations):
        index = rng.randrange(len(frames))
        fuzzed = mutate(rng, frames[index], fields[index])
        problem = check_one(fuzzed, as_view=iteration % 8 == 0, outcomes=outcomes)
        if problem is not None:
            failures.append(f"seed={seed} iteration={iteration} frame={fuzzed.hex()}: {problem}")
            if len(failures) >= 5:
                break
    return outcomes, failures


def test_corpus_frames_are_valid() -> None:
    # Act
    decoded = [decode(frame) for frame in corpus()]

    # Assert
    assert all(isinstance(events, list) for events in decoded)


def test_fuzzed_frames_decode_or_raise_decode_error_only() -> None:
    # Act
    outcomes, failures = run_fuzz(SEED, ITERATIONS)

    # Assert
    assert failures == []
    raised = sum(count for name, count in outcomes.items() if name != "decoded")
    assert outcomes["decoded"] > 0
    assert raised > 0
    assert outcomes["decoded"] + raised == ITERATIONS


def test_fuzzing_reaches_every_decode_error_reason() -> None:
    # Act: a shorter run of the same generator must already hit every reason
    outcomes, _ = run_fuzz(SEED + 1, 20_000)

    # Assert
    assert {reason.name for reason in DecodeErrorReason} <= set(outcomes)
