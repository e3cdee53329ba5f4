"""Frames of a hypothetical newer schema version (version 1) decode like version 0.

SBE lets a newer version append fields to the root block and to group entries (their
``blockLength`` grows) and append variable-length fields after the symbol. A version-0 decoder
must skip by the block lengths and ignore what follows the symbol, but only for newer versions:
bytes after the symbol of a version-0 frame are corruption.
"""

from __future__ import annotations

import struct

import msgspec
import pytest

from btcpred.events import Event
from btcpred.sbe import DecodeError, DecodeErrorReason, decode
from tests.sbe_golden_frames import (
    BBA_EVENT,
    DIFF_EVENT,
    GOLDEN_TRADES,
    SNAPSHOT_EVENT,
    TRADES_EVENTS,
    encode_golden_bba,
    encode_golden_diff,
    encode_golden_snapshot,
    encode_golden_trades,
)

R = DecodeErrorReason

TRADES_V0 = GOLDEN_TRADES  # the per-field breakdown is in tests/sbe_golden_frames.py
ROOT_EXTRA = bytes.fromhex("deadbeef")
ENTRY_EXTRA = bytes.fromhex("aabbcc")
TRADES_V1 = bytes.fromhex(
    "1600"  # @0  header.blockLength u16 = 18 + 4
    "1027"  # @2  header.templateId  u16 = 10000
    "0100"  # @4  header.schemaId    u16 = 1
    "0100"  # @6  header.version     u16 = 1
    "98f383be341f0600"  # @8  eventTime    i64 = 1723161255343000
    "b0ef83be341f0600"  # @16 transactTime i64 = 1723161255342000
    "f8"  # @24 priceExponent i8 = -8
    "f8"  # @25 qtyExponent   i8 = -8
    "deadbeef"  # @26 new root field(s) of version 1 (4 bytes)
    "1c00"  # @30 trades.blockLength u16 = 25 + 3
    "02000000"  # @32 trades.numInGroup u32 = 2
    "bb00aade00000000"  # @36 trades[0].id    = 3735683259
    "c03affc49f050000"  # @44 trades[0].price = 6183763000000
    "80841e0000000000"  # @52 trades[0].qty   = 2000000
    "01"  # @60 trades[0].isBuyerMaker = 1
    "aabbcc"  # @61 trades[0] new entry field(s) (3 bytes)
    "bc00aade00000000"  # @64 trades[1].id    = 3735683260
    "c03affc49f050000"  # @72 trades[1].price = 6183763000000
    "003e490000000000"  # @80 trades[1].qty   = 4800000
    "00"  # @88 trades[1].isBuyerMaker = 0
    "aabbcc"  # @89 trades[1] new entry field(s) (3 bytes)
    "07"  # @92 symbol.length u8 = 7
    "42544355534454"  # @93 symbol "BTCUSDT"
)
# A variable-length field a newer version might append after the symbol (varString8 "hello").
EXTRA_VAR_DATA = b"\x05hello"


def _without_receive_time(events: list[Event]) -> list[Event]:
    return [msgspec.structs.replace(event, receive_time_ns=0) for event in events]


EXPECTED_TRADES = _without_receive_time(TRADES_EVENTS)


EXPECTED = {
    "trades": EXPECTED_TRADES,
    "best_bid_ask": _without_receive_time([BBA_EVENT]),
    "snapshot": _without_receive_time([SNAPSHOT_EVENT]),
    "depth_diff": _without_receive_time([DIFF_EVENT]),
}
BUILDERS = {
    "trades": encode_golden_trades,
    "best_bid_ask": encode_golden_bba,
    "snapshot": encode_golden_snapshot,
    "depth_diff": encode_golden_diff,
}
# (root_extra, entry_extra) pairs: small, odd-sized, and large enough to look like groups.
EXTRAS = [
    pytest.param(b"\x01", b"\x02", id="1+1"),
    pytest.param(ROOT_EXTRA, ENTRY_EXTRA, id="4+3"),
    pytest.param(b"\x10\x00\xff\xff" * 8, b"\x19\x00" * 9, id="32+18-group-lookalikes"),
    pytest.param(b"\xab" * 300, b"", id="300+0"),
    pytest.param(b"", b"\xcd" * 200, id="0+200"),
]


def decode_error(frame: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(frame)
    return info.value


# ------------------------------------------------------------------ hand-made version-1 frame


def test_hand_made_v1_trades_frame_decodes_to_the_v0_events() -> None:
    # Act
    decoded = decode(TRADES_V1)

    # Assert
    assert decoded == EXPECTED_TRADES


def test_hand_made_v0_and_v1_trades_frames_decode_alike() -> None:
    # Act
    v0, v1 = decode(TRADES_V0), decode(TRADES_V1)

    # Assert
    assert v1 == v0


def test_hand_made_v1_trades_frame_has_the_grown_block_lengths() -> None:
    # Assert: header.blockLength = 18 + N, version 1, group blockLength = 25 + M
    assert struct.unpack_from("<HHHH", TRADES_V1, 0) == (18 + 4, 10000, 1, 1)
    assert struct.unpack_from("<HI", TRADES_V1, 8 + 18 + 4) == (25 + 3, 2)
    assert len(TRADES_V1) == len(TRADES_V0) + 4 + 2 * 3


def test_encoder_v1_trades_frame_equals_the_hand_made_frame() -> None:
    # Act
    frame = encode_golden_trades(1, ROOT_EXTRA, ENTRY_EXTRA)

    # Assert
    assert frame.hex() == TRADES_V1.hex()


def test_hand_made_v1_trades_frame_with_extra_var_data_decodes() -> None:
    # Act
    decoded = decode(TRADES_V1 + EXTRA_VAR_DATA)

    # Assert
    assert decoded == EXPECTED_TRADES


def test_hand_made_v1_trades_frame_reads_is_buyer_maker_at_the_grown_stride() -> None:
    # Arrange: trades[1].isBuyerMaker sits at 36 + 28 + 24 = 88 in the version-1 frame
    frame = bytearray(TRADES_V1)
    frame[88] = 2

    # Act
    error = decode_error(bytes(frame))

    # Assert
    assert (error.reason, error.offset) == (R.BAD_ENUM, 88)


# ------------------------------------------------------------------ encoder-built frames


@pytest.mark.parametrize(("root_extra", "entry_extra"), EXTRAS)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_v1_frame_with_extra_fields_decodes_to_the_v0_events(
    name: str, root_extra: bytes, entry_extra: bytes
) -> None:
    # Arrange
    frame = BUILDERS[name](1, root_extra, entry_extra)

    # Act
    decoded = decode(frame)

    # Assert
    assert decoded == EXPECTED[name]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_v0_frame_decodes_to_the_expected_events(name: str) -> None:
    # Act
    decoded = decode(BUILDERS[name](0))

    # Assert
    assert decoded == EXPECTED[name]


@pytest.mark.parametrize("version", [1, 2, 0xFFFF])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_newer_version_frame_with_extra_var_data_after_the_symbol_decodes(
    name: str, version: int
) -> None:
    # Arrange
    frame = BUILDERS[name](version, ROOT_EXTRA, ENTRY_EXTRA) + EXTRA_VAR_DATA

    # Act
    decoded = decode(frame)

    # Assert
    assert decoded == EXPECTED[name]


@pytest.mark.parametrize(
    "trailing",
    [
        pytest.param(EXTRA_VAR_DATA, id="varString8"),
        pytest.param(b"\x00", id="one-zero-byte"),
        pytest.param(b"\xff" * 1000, id="1000-bytes"),
    ],
)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_v1_frame_ignores_any_bytes_after_the_symbol(name: str, trailing: bytes) -> None:
    # Act
    decoded = decode(BUILDERS[name](1) + trailing)

    # Assert
    assert decoded == EXPECTED[name]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_same_trailing_bytes_on_a_v0_frame_are_trailing_bytes(name: str) -> None:
    # Arrange
    frame = BUILDERS[name](0)

    # Act
    error = decode_error(frame + EXTRA_VAR_DATA)

    # Assert
    assert (error.reason, error.offset) == (R.TRAILING_BYTES, len(frame))


def test_v0_frame_with_v1_extra_var_data_is_trailing_bytes() -> None:
    # Arrange: the hand-made version-1 frame relabelled as version 0
    frame = bytearray(TRADES_V1 + EXTRA_VAR_DATA)
    struct.pack_into("<H", frame, 6, 0)

    # Act
    error = decode_error(bytes(frame))

    # Assert
    assert (error.reason, error.offset) == (R.TRAILING_BYTES, len(TRADES_V1))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_v1_frame_truncated_inside_the_symbol_is_truncated(name: str) -> None:
    # Arrange
    frame = BUILDERS[name](1, ROOT_EXTRA, ENTRY_EXTRA)
    symbol_at = len(frame) - 8

    # Act
    error = decode_error(frame[:-1])

    # Assert
    assert (error.reason, error.offset) == (R.TRUNCATED, symbol_at)


def test_v1_root_block_shorter_than_the_schema_is_bad_block_length() -> None:
    # Arrange: a newer version may only grow the root block
    frame = bytearray(TRADES_V1)
    struct.pack_into("<H", frame, 0, 17)

    # Act
    error = decode_error(bytes(frame))

    # Assert
    assert (error.reason, error.offset) == (R.BAD_BLOCK_LENGTH, 0)


def test_v1_entry_block_shorter_than_the_schema_is_bad_block_length() -> None:
    # Arrange: a newer version may only grow the entries
    frame = bytearray(TRADES_V1)
    struct.pack_into("<H", frame, 30, 24)

    # Act
    error = decode_error(bytes(frame))

    # Assert
    assert (error.reason, error.offset) == (R.BAD_BLOCK_LENGTH, 30)


def test_receive_time_is_stamped_on_v1_events() -> None:
    # Act
    decoded: list[Event] = decode(TRADES_V1 + EXTRA_VAR_DATA, receive_time_ns=42)

    # Assert
    assert [event.receive_time_ns for event in decoded] == [42, 42]
