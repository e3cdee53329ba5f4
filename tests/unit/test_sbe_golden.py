"""Golden SBE frames written by hand from ``stream_1_0.xml`` (schema id 1, version 0, LE).

The expected bytes live in ``tests/sbe_golden_frames.py``: hex literals with one comment per
field, NOT produced by the encoder, carrying real BTCUSDT values from the recorded capture.

Each template is checked three ways: the encoder writes exactly the golden bytes, the decoder
turns the golden bytes into exactly the hand-built events, and every field sits at the offset
the schema gives it (checked on both the golden bytes and the encoder's output).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

import pytest

from btcpred.events import BestBidAsk, DepthDiff, Event, Trade
from btcpred.sbe import decode
from tests.sbe_golden_frames import (
    BBA_EVENT,
    DIFF_EVENT,
    GOLDEN_BBA,
    GOLDEN_DIFF,
    GOLDEN_SNAPSHOT,
    GOLDEN_TRADES,
    RECEIVE_NS,
    SNAPSHOT_EVENT,
    TRADES_EVENTS,
    encode_golden_bba,
    encode_golden_diff,
    encode_golden_snapshot,
    encode_golden_trades,
)


class Golden(NamedTuple):
    """One hand-written frame, how to encode it and what it decodes to."""

    frame: bytes
    encode: Callable[[], bytes]
    events: list[Event]
    block_length: int  # header.blockLength (the schema's root block size)
    template_id: int
    symbol_offset: int  # offset of the symbol's length byte


GOLDENS = {
    "trades": Golden(GOLDEN_TRADES, encode_golden_trades, TRADES_EVENTS, 18, 10000, 82),
    "best_bid_ask": Golden(GOLDEN_BBA, encode_golden_bba, [BBA_EVENT], 50, 10001, 58),
    "snapshot": Golden(GOLDEN_SNAPSHOT, encode_golden_snapshot, [SNAPSHOT_EVENT], 18, 10002, 82),
    "depth_diff": Golden(GOLDEN_DIFF, encode_golden_diff, [DIFF_EVENT], 26, 10003, 122),
}


@pytest.fixture(params=list(GOLDENS))
def golden(request: pytest.FixtureRequest) -> Golden:
    """Each of the four templates."""
    return GOLDENS[str(request.param)]


@pytest.fixture(params=["golden", "encoder"])
def source(request: pytest.FixtureRequest) -> str:
    """Run each layout test on the hand-written bytes and on the encoder's output."""
    return str(request.param)


def frame_from(source: str, template: str) -> bytes:
    """The golden bytes or the encoder's output for ``template``."""
    case = GOLDENS[template]
    return case.frame if source == "golden" else case.encode()


def i64(frame: bytes, offset: int) -> int:
    return int(struct.unpack_from("<q", frame, offset)[0])


def i8(frame: bytes, offset: int) -> int:
    return int(struct.unpack_from("<b", frame, offset)[0])


def u8(frame: bytes, offset: int) -> int:
    return int(struct.unpack_from("<B", frame, offset)[0])


def u16(frame: bytes, offset: int) -> int:
    return int(struct.unpack_from("<H", frame, offset)[0])


def u32(frame: bytes, offset: int) -> int:
    return int(struct.unpack_from("<I", frame, offset)[0])


# ----------------------------------------------------------------------------- whole frames


def test_encoder_writes_the_golden_bytes(golden: Golden) -> None:
    # Act
    frame = golden.encode()

    # Assert
    assert frame.hex() == golden.frame.hex()


def test_decode_golden_gives_the_hand_built_events(golden: Golden) -> None:
    # Act
    decoded = decode(golden.frame, receive_time_ns=RECEIVE_NS)

    # Assert
    assert decoded == golden.events


def test_decode_stamps_receive_time_on_every_event(golden: Golden) -> None:
    # Arrange
    receive_ns = 1_723_161_254_999_999_999

    # Act
    decoded = decode(golden.frame, receive_time_ns=receive_ns)

    # Assert
    assert len(decoded) == len(golden.events)
    assert [event.receive_time_ns for event in decoded] == [receive_ns] * len(golden.events)


def test_decode_without_receive_time_stamps_zero(golden: Golden) -> None:
    # Act
    decoded = decode(golden.frame)

    # Assert
    assert [event.receive_time_ns for event in decoded] == [0] * len(golden.events)


def test_btcusdt_best_bid_ask_frame_is_66_bytes() -> None:
    # Act
    frame = encode_golden_bba()

    # Assert
    assert len(GOLDEN_BBA) == 66
    assert len(frame) == 66


@pytest.mark.parametrize(
    ("frame", "size"),
    [
        pytest.param(GOLDEN_TRADES, 8 + 18 + 6 + 2 * 25 + 1 + 7, id="trades"),
        pytest.param(GOLDEN_SNAPSHOT, 8 + 18 + 4 + 16 + 4 + 2 * 16 + 1 + 7, id="snapshot"),
        pytest.param(GOLDEN_DIFF, 8 + 26 + 4 + 16 + 4 + 4 * 16 + 1 + 7, id="depth_diff"),
    ],
)
def test_golden_frame_sizes_follow_the_schema(frame: bytes, size: int) -> None:
    # Assert
    assert len(frame) == size


# ----------------------------------------------------------------------------- layout: header


def test_header_fields_at_offsets_0_2_4_6(golden: Golden, source: str) -> None:
    # Arrange
    frame = golden.frame if source == "golden" else golden.encode()

    # Assert
    assert u16(frame, 0) == golden.block_length  # blockLength
    assert u16(frame, 2) == golden.template_id  # templateId
    assert u16(frame, 4) == 1  # schemaId
    assert u16(frame, 6) == 0  # version


def test_symbol_is_a_length_byte_then_utf8_ending_the_frame(golden: Golden, source: str) -> None:
    # Arrange
    frame = golden.frame if source == "golden" else golden.encode()
    at = golden.symbol_offset

    # Assert
    assert u8(frame, at) == 7
    assert frame[at + 1 :] == b"BTCUSDT"
    assert len(frame) == at + 1 + 7


# ----------------------------------------------------------------------------- layout: trades


def test_trades_root_fields_at_their_offsets(source: str) -> None:
    # Arrange
    frame = frame_from(source, "trades")

    # Assert
    assert i64(frame, 8) == 1723161255343000  # eventTime
    assert i64(frame, 16) == 1723161255342000  # transactTime
    assert i8(frame, 24) == -8  # priceExponent
    assert i8(frame, 25) == -8  # qtyExponent


def test_trades_group_header_is_u16_block_length_25_and_u32_count(source: str) -> None:
    # Arrange
    frame = frame_from(source, "trades")

    # Assert
    assert u16(frame, 26) == 25  # groupSizeEncoding.blockLength
    assert u32(frame, 28) == 2  # groupSizeEncoding.numInGroup (uint32: 4 bytes)
    assert frame[28:32] == b"\x02\x00\x00\x00"


def test_trades_entries_are_25_bytes_from_offset_32(source: str) -> None:
    # Arrange
    frame = frame_from(source, "trades")

    # Assert
    assert (i64(frame, 32), i64(frame, 40), i64(frame, 48), u8(frame, 56)) == (
        3735683259,
        6183763000000,
        2000000,
        1,
    )
    assert (i64(frame, 57), i64(frame, 65), i64(frame, 73), u8(frame, 81)) == (
        3735683260,
        6183763000000,
        4800000,
        0,
    )


# ----------------------------------------------------------------------------- layout: bba


def test_best_bid_ask_root_fields_at_their_offsets(source: str) -> None:
    # Arrange
    frame = frame_from(source, "best_bid_ask")

    # Assert
    assert i64(frame, 8) == 1723161255363000  # eventTime
    assert i64(frame, 16) == 50093239212  # bookUpdateId
    assert i8(frame, 24) == -8  # priceExponent
    assert i8(frame, 25) == -8  # qtyExponent
    assert i64(frame, 26) == 6183763000000  # bidPrice
    assert i64(frame, 34) == 378826000  # bidQty
    assert i64(frame, 42) == 6183764000000  # askPrice
    assert i64(frame, 50) == 154698000  # askQty


# ----------------------------------------------------------------------------- layout: snapshot


def test_snapshot_root_fields_at_their_offsets(source: str) -> None:
    # Arrange
    frame = frame_from(source, "snapshot")

    # Assert
    assert i64(frame, 8) == 1723161255400000  # eventTime
    assert i64(frame, 16) == 50093239212  # bookUpdateId
    assert i8(frame, 24) == -8  # priceExponent
    assert i8(frame, 25) == -8  # qtyExponent


def test_snapshot_level_groups_are_u16_block_length_16_and_u16_count(source: str) -> None:
    # Arrange
    frame = frame_from(source, "snapshot")

    # Assert
    assert (u16(frame, 26), u16(frame, 28)) == (16, 1)  # bids groupSize16Encoding
    assert (i64(frame, 30), i64(frame, 38)) == (6183763000000, 378826000)  # bids[0] at 26 + 4
    assert (u16(frame, 46), u16(frame, 48)) == (16, 2)  # asks groupSize16Encoding
    assert (i64(frame, 50), i64(frame, 58)) == (6183764000000, 154698000)  # asks[0]
    assert (i64(frame, 66), i64(frame, 74)) == (6183765000000, 100000000)  # asks[1]


# ----------------------------------------------------------------------------- layout: diff


def test_depth_diff_root_fields_at_their_offsets(source: str) -> None:
    # Arrange
    frame = frame_from(source, "depth_diff")

    # Assert
    assert i64(frame, 8) == 1723161255308000  # eventTime
    assert i64(frame, 16) == 50093239203  # firstBookUpdateId
    assert i64(frame, 24) == 50093239207  # lastBookUpdateId
    assert i8(frame, 32) == -8  # priceExponent
    assert i8(frame, 33) == -8  # qtyExponent


def test_depth_diff_level_groups_are_u16_block_length_16_and_u16_count(source: str) -> None:
    # Arrange
    frame = frame_from(source, "depth_diff")

    # Assert
    assert (u16(frame, 34), u16(frame, 36)) == (16, 1)  # bids groupSize16Encoding
    assert (i64(frame, 38), i64(frame, 46)) == (5565387000000, 0)  # bids[0] at 34 + 4
    assert (u16(frame, 54), u16(frame, 56)) == (16, 4)  # asks groupSize16Encoding
    asks = [(i64(frame, at), i64(frame, at + 8)) for at in (58, 74, 90, 106)]
    assert asks == [
        (6183804000000, 32332000),
        (6184430000000, 40163000),
        (6186250000000, 5019000),
        (6186251000000, 0),
    ]


# ----------------------------------------------------------------------------- float views


def test_trade_float_views_match_the_captured_strings() -> None:
    # Act
    first = decode(GOLDEN_TRADES)[0]

    # Assert
    assert isinstance(first, Trade)
    assert first.price == 61837.63
    assert first.qty == 0.02


def test_best_bid_ask_float_views_match_the_captured_strings() -> None:
    # Act
    (event,) = decode(GOLDEN_BBA)

    # Assert
    assert isinstance(event, BestBidAsk)
    assert event.bid_price == 61837.63
    assert event.bid_qty == 3.78826
    assert event.ask_price == 61837.64
    assert event.ask_qty == 1.54698


def test_depth_diff_float_views_match_the_captured_strings() -> None:
    # Act
    (event,) = decode(GOLDEN_DIFF)

    # Assert
    assert isinstance(event, DepthDiff)
    assert event.float_bids() == [(55653.87, 0.0)]
    assert event.float_asks() == [
        (61838.04, 0.32332),
        (61844.30, 0.40163),
        (61862.50, 0.05019),
        (61862.51, 0.0),
    ]
