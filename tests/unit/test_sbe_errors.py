"""Malformed SBE frames: every :class:`DecodeErrorReason`, its exact offset, and EncodeError.

Frames are made by hand: copies of the golden frames (hex, one region per line; see
``test_sbe_golden.py`` for the per-field breakdown) with single fields patched at the offsets the
schema gives them.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import pytest

from btcpred.sbe import (
    DecodeError,
    DecodeErrorReason,
    EncodeError,
    decode,
    encode_best_bid_ask,
    encode_depth_diff,
    encode_depth_snapshot,
    encode_trades,
)
from tests.sbe_golden_frames import GOLDEN_BBA, GOLDEN_DIFF, GOLDEN_SNAPSHOT, GOLDEN_TRADES

R = DecodeErrorReason

# The golden frames (per-field layout in tests/sbe_golden_frames.py). Offsets used below:
# trades (90 bytes): group header @26 (blockLength u16, numInGroup u32), entries @32 and @57
# (isBuyerMaker at +24), symbol @82. Best bid/ask (66 bytes): symbol @58. Snapshot (90 bytes):
# bids group header @26, asks @46, symbol @82. Depth diff (130 bytes): bids @34, asks @54,
# symbol @122.
TRADES, BBA, SNAPSHOT, DIFF = GOLDEN_TRADES, GOLDEN_BBA, GOLDEN_SNAPSHOT, GOLDEN_DIFF
GOLDENS = {"trades": TRADES, "best_bid_ask": BBA, "snapshot": SNAPSHOT, "depth_diff": DIFF}


def patch(frame: bytes, offset: int, fmt: str, value: int) -> bytes:
    """``frame`` with the little-endian field ``fmt`` at ``offset`` overwritten by ``value``."""
    out = bytearray(frame)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def decode_error(frame: bytes | bytearray | memoryview) -> DecodeError:
    """The DecodeError that decoding ``frame`` raises."""
    with pytest.raises(DecodeError) as info:
        decode(frame)
    return info.value


# ------------------------------------------------------------------ one frame per reason

REASON_CASES = {
    R.TRUNCATED: (BBA[:7], 0),  # 7 bytes: the header needs 8
    R.WRONG_SCHEMA: (patch(TRADES, 4, "<H", 2), 4),  # schemaId 2
    R.UNKNOWN_TEMPLATE: (patch(TRADES, 2, "<H", 10004), 2),  # templateId 10004
    R.BAD_BLOCK_LENGTH: (patch(TRADES, 0, "<H", 17), 0),  # root blockLength 17 < 18
    R.GROUP_OVERFLOW: (patch(TRADES, 28, "<I", 3), 28),  # 3 trades announced, 2 present
    R.BAD_ENUM: (patch(TRADES, 81, "<B", 2), 81),  # trades[1].isBuyerMaker = 2
    R.BAD_SYMBOL: (TRADES[:82] + b"\x00", 82),  # symbol length 0
    R.TRAILING_BYTES: (BBA + b"\x00", 66),  # one byte after the symbol, version 0
}


@pytest.mark.parametrize("reason", list(REASON_CASES), ids=lambda reason: reason.name)
def test_each_reason_is_raised_with_its_exact_offset(reason: DecodeErrorReason) -> None:
    # Arrange
    frame, offset = REASON_CASES[reason]

    # Act
    error = decode_error(frame)

    # Assert
    assert (error.reason, error.offset) == (reason, offset)


def test_every_reason_has_a_hand_made_frame() -> None:
    # Assert
    assert set(REASON_CASES) == set(DecodeErrorReason)


def test_decode_error_is_a_value_error() -> None:
    # Act
    with pytest.raises(ValueError, match="wrong schema id at byte 4") as info:
        decode(patch(TRADES, 4, "<H", 0))

    # Assert
    assert isinstance(info.value, DecodeError)


def test_header_only_frame_is_truncated_at_the_root_block() -> None:
    # Act
    error = decode_error(BBA[:8])

    # Assert
    assert (error.reason, error.offset) == (R.TRUNCATED, 8)


def test_empty_frame_is_truncated_at_zero() -> None:
    # Act
    error = decode_error(b"")

    # Assert
    assert (error.reason, error.offset) == (R.TRUNCATED, 0)


@pytest.mark.parametrize("template", [0, 9999, 10004, 0xFFFF])
def test_unknown_template_ids_are_rejected_at_offset_2(template: int) -> None:
    # Act
    error = decode_error(patch(BBA, 2, "<H", template))

    # Assert
    assert (error.reason, error.offset) == (R.UNKNOWN_TEMPLATE, 2)


@pytest.mark.parametrize(
    ("frame", "block_length"),
    [
        pytest.param(BBA, 49, id="best_bid_ask"),
        pytest.param(SNAPSHOT, 17, id="snapshot"),
        pytest.param(DIFF, 25, id="depth_diff"),
        pytest.param(TRADES, 0, id="trades-zero"),
    ],
)
def test_short_root_block_length_is_bad_block_length_at_0(frame: bytes, block_length: int) -> None:
    # Act
    error = decode_error(patch(frame, 0, "<H", block_length))

    # Assert
    assert (error.reason, error.offset) == (R.BAD_BLOCK_LENGTH, 0)


@pytest.mark.parametrize(
    ("frame", "field_at", "entry_length"),
    [
        pytest.param(TRADES, 26, 24, id="trades-24"),
        pytest.param(TRADES, 26, 0, id="trades-0"),
        pytest.param(SNAPSHOT, 26, 15, id="snapshot-bids"),
        pytest.param(DIFF, 34, 0, id="diff-bids"),
        pytest.param(DIFF, 54, 8, id="diff-asks"),
    ],
)
def test_short_entry_block_length_is_bad_block_length_at_the_field(
    frame: bytes, field_at: int, entry_length: int
) -> None:
    # Act: the decoder reports the offset of the group header's blockLength field
    error = decode_error(patch(frame, field_at, "<H", entry_length))

    # Assert
    assert (error.reason, error.offset) == (R.BAD_BLOCK_LENGTH, field_at)


@pytest.mark.parametrize(
    ("frame", "count_at", "fmt", "count"),
    [
        pytest.param(SNAPSHOT, 28, "<H", 4, id="snapshot-bids"),
        pytest.param(SNAPSHOT, 48, "<H", 3, id="snapshot-asks"),
        pytest.param(DIFF, 36, "<H", 9, id="diff-bids"),
        pytest.param(DIFF, 56, "<H", 5, id="diff-asks"),
    ],
)
def test_level_count_beyond_the_frame_is_group_overflow_at_the_count(
    frame: bytes, count_at: int, fmt: str, count: int
) -> None:
    # Act
    error = decode_error(patch(frame, count_at, fmt, count))

    # Assert
    assert (error.reason, error.offset) == (R.GROUP_OVERFLOW, count_at)


@pytest.mark.parametrize(
    ("offset", "value"),
    [pytest.param(56, 2, id="first-entry-2"), pytest.param(81, 0xFF, id="second-entry-255")],
)
def test_is_buyer_maker_above_one_is_bad_enum_at_its_byte(offset: int, value: int) -> None:
    # Act
    error = decode_error(patch(TRADES, offset, "<B", value))

    # Assert
    assert (error.reason, error.offset) == (R.BAD_ENUM, offset)


def test_invalid_utf8_symbol_is_bad_symbol_at_the_bad_byte() -> None:
    # Arrange: "BTC\xffSDT"; the 0xFF is at 83 + 3
    frame = TRADES[:82] + b"\x07BTC\xffSDT"

    # Act
    error = decode_error(frame)

    # Assert
    assert (error.reason, error.offset) == (R.BAD_SYMBOL, 86)


def test_empty_symbol_is_bad_symbol_at_the_length_byte() -> None:
    # Act
    error = decode_error(BBA[:58] + b"\x00")

    # Assert
    assert (error.reason, error.offset) == (R.BAD_SYMBOL, 58)


@pytest.mark.parametrize("name", list(GOLDENS))
def test_trailing_bytes_on_version_0_are_rejected_at_the_symbol_end(name: str) -> None:
    # Arrange
    frame = GOLDENS[name]

    # Act
    error = decode_error(frame + b"\x03abc")

    # Assert
    assert (error.reason, error.offset) == (R.TRAILING_BYTES, len(frame))


# ------------------------------------------------------------------ truncation

# For each golden frame: (first prefix length, reason, offset) breakpoints; a prefix of length n
# fails like the last breakpoint whose first length is <= n.
TRUNCATION_TABLES = {
    "trades": [
        (0, R.TRUNCATED, 0),  # header
        (8, R.TRUNCATED, 8),  # root block
        (26, R.TRUNCATED, 26),  # group header
        (32, R.GROUP_OVERFLOW, 28),  # entries (offset: the numInGroup field)
        (82, R.TRUNCATED, 82),  # symbol length and bytes
    ],
    "best_bid_ask": [
        (0, R.TRUNCATED, 0),
        (8, R.TRUNCATED, 8),
        (58, R.TRUNCATED, 58),
    ],
    "snapshot": [
        (0, R.TRUNCATED, 0),
        (8, R.TRUNCATED, 8),
        (26, R.TRUNCATED, 26),  # bids group header
        (30, R.GROUP_OVERFLOW, 28),  # bids entries
        (46, R.TRUNCATED, 46),  # asks group header
        (50, R.GROUP_OVERFLOW, 48),  # asks entries
        (82, R.TRUNCATED, 82),  # symbol
    ],
    "depth_diff": [
        (0, R.TRUNCATED, 0),
        (8, R.TRUNCATED, 8),
        (34, R.TRUNCATED, 34),
        (38, R.GROUP_OVERFLOW, 36),
        (54, R.TRUNCATED, 54),
        (58, R.GROUP_OVERFLOW, 56),
        (122, R.TRUNCATED, 122),
    ],
}


def expected_truncation(name: str, length: int) -> tuple[DecodeErrorReason, int]:
    reason, offset = R.TRUNCATED, 0
    for start, start_reason, start_offset in TRUNCATION_TABLES[name]:
        if start <= length:
            reason, offset = start_reason, start_offset
    return reason, offset


@pytest.mark.parametrize("name", list(GOLDENS))
def test_every_truncation_raises_decode_error_and_nothing_else(name: str) -> None:
    # Arrange
    frame = GOLDENS[name]
    outcomes: dict[int, str] = {}

    # Act
    for length in range(len(frame)):
        try:
            events = decode(frame[:length])
        except DecodeError:
            continue
        except Exception as exc:  # anything but DecodeError is the failure
            outcomes[length] = f"{type(exc).__name__}: {exc}"
        else:
            outcomes[length] = f"decoded {events!r}"

    # Assert
    assert outcomes == {}


@pytest.mark.parametrize("name", list(GOLDENS))
def test_every_truncation_names_the_part_that_is_cut(name: str) -> None:
    # Arrange
    frame = GOLDENS[name]

    # Act
    actual = {}
    for length in range(len(frame)):
        error = decode_error(frame[:length])
        actual[length] = (error.reason, error.offset)

    # Assert
    assert actual == {n: expected_truncation(name, n) for n in range(len(frame))}


# ------------------------------------------------------------------ forged group counts


def test_forged_trade_count_2_pow_32_minus_1_overflows_quickly() -> None:
    # Arrange
    frame = patch(TRADES, 28, "<I", 2**32 - 1)

    # Act
    started = time.perf_counter()
    error = decode_error(frame)
    elapsed = time.perf_counter() - started

    # Assert
    assert (error.reason, error.offset) == (R.GROUP_OVERFLOW, 28)
    assert elapsed < 0.1


@pytest.mark.parametrize(
    ("frame", "count_at"),
    [
        pytest.param(SNAPSHOT, 28, id="snapshot-bids"),
        pytest.param(SNAPSHOT, 48, id="snapshot-asks"),
        pytest.param(DIFF, 36, id="diff-bids"),
        pytest.param(DIFF, 56, id="diff-asks"),
    ],
)
def test_forged_level_count_65535_overflows_quickly(frame: bytes, count_at: int) -> None:
    # Arrange
    forged = patch(frame, count_at, "<H", 0xFFFF)

    # Act
    started = time.perf_counter()
    error = decode_error(forged)
    elapsed = time.perf_counter() - started

    # Assert
    assert (error.reason, error.offset) == (R.GROUP_OVERFLOW, count_at)
    assert elapsed < 0.1


def test_forged_trade_count_with_huge_entry_length_overflows() -> None:
    # Arrange: 0xFFFF-byte entries, 0xFFFFFFFF of them
    frame = patch(patch(TRADES, 26, "<H", 0xFFFF), 28, "<I", 0xFFFFFFFF)

    # Act
    error = decode_error(frame)

    # Assert
    assert (error.reason, error.offset) == (R.GROUP_OVERFLOW, 28)


# ------------------------------------------------------------------ buffer types


@pytest.mark.parametrize("name", list(GOLDENS))
def test_memoryview_decodes_like_bytes(name: str) -> None:
    # Arrange
    frame = GOLDENS[name]

    # Act
    from_view = decode(memoryview(frame), receive_time_ns=7)

    # Assert
    assert from_view == decode(frame, receive_time_ns=7)


@pytest.mark.parametrize("name", list(GOLDENS))
def test_memoryview_slice_of_a_larger_buffer_decodes_like_bytes(name: str) -> None:
    # Arrange
    frame = GOLDENS[name]
    view = memoryview(b"\xee" * 5 + frame + b"\xee" * 3)[5 : 5 + len(frame)]

    # Act
    from_view = decode(view)

    # Assert
    assert from_view == decode(frame)


@pytest.mark.parametrize("name", list(GOLDENS))
def test_bytearray_decodes_like_bytes(name: str) -> None:
    # Arrange
    frame = GOLDENS[name]

    # Act
    from_bytearray = decode(bytearray(frame))

    # Assert
    assert from_bytearray == decode(frame)


@pytest.mark.parametrize("reason", list(REASON_CASES), ids=lambda reason: reason.name)
def test_memoryview_fails_like_bytes(reason: DecodeErrorReason) -> None:
    # Arrange
    frame, offset = REASON_CASES[reason]

    # Act
    error = decode_error(memoryview(frame))

    # Assert
    assert (error.reason, error.offset) == (reason, offset)


# ------------------------------------------------------------------ EncodeError


def test_encode_error_is_a_value_error() -> None:
    # Assert
    assert issubclass(EncodeError, ValueError)


@pytest.mark.parametrize(
    "symbol",
    [
        pytest.param("B" * 256, id="256-ascii"),
        pytest.param("\u00e9" * 128, id="128-chars-256-bytes"),
        pytest.param("", id="empty"),
    ],
)
def test_symbol_outside_1_to_255_utf8_bytes_is_an_encode_error(symbol: str) -> None:
    # Act / Assert
    with pytest.raises(EncodeError, match="symbol"):
        encode_best_bid_ask(symbol, 1, 2, -8, -8, (3, 4), (5, 6))


def test_255_byte_symbol_is_accepted() -> None:
    # Arrange
    symbol = "\u00e9" * 127 + "B"  # 254 + 1 bytes

    # Act
    (event,) = decode(encode_best_bid_ask(symbol, 1, 2, -8, -8, (3, 4), (5, 6)))

    # Assert
    assert event.symbol == symbol


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_out_of_range_int64_trade_price_is_an_encode_error(value: int) -> None:
    # Act / Assert
    with pytest.raises(EncodeError, match="price"):
        encode_trades("BTCUSDT", 1, 2, -8, -8, [(3, value, 5, True)])


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"event_time_us": 2**63}, id="event_time"),
        pytest.param({"update_id": -(2**63) - 1}, id="update_id"),
        pytest.param({"bid": (2**64, 1)}, id="bid_price"),
        pytest.param({"ask": (1, 2**63)}, id="ask_qty"),
    ],
)
def test_out_of_range_int64_best_bid_ask_field_is_an_encode_error(
    kwargs: dict[str, object],
) -> None:
    # Arrange
    args: dict[str, object] = {
        "symbol": "BTCUSDT",
        "event_time_us": 1,
        "update_id": 2,
        "price_exponent": -8,
        "qty_exponent": -8,
        "bid": (3, 4),
        "ask": (5, 6),
    }
    args.update(kwargs)

    # Act / Assert
    with pytest.raises(EncodeError):
        encode_best_bid_ask(**args)  # type: ignore[arg-type]


def test_out_of_range_int64_level_is_an_encode_error() -> None:
    # Act / Assert
    with pytest.raises(EncodeError, match="level"):
        encode_depth_diff("BTCUSDT", 1, 2, 3, -8, -8, [(1, 2**63)], [])


def test_out_of_range_int64_update_id_is_an_encode_error() -> None:
    # Act / Assert
    with pytest.raises(EncodeError, match="update_id"):
        encode_depth_snapshot("BTCUSDT", 1, 2**63, -8, -8, [], [])


@pytest.mark.parametrize("exponent", [128, -129])
def test_exponent_outside_int8_is_an_encode_error(exponent: int) -> None:
    # Act / Assert
    with pytest.raises(EncodeError, match="exponent"):
        encode_trades("BTCUSDT", 1, 2, exponent, -8, [(3, 4, 5, False)])


def test_qty_exponent_128_is_an_encode_error() -> None:
    # Act / Assert
    with pytest.raises(EncodeError, match="qty_exponent"):
        encode_depth_snapshot("BTCUSDT", 1, 2, -8, 128, [], [])


def test_more_than_65535_levels_is_an_encode_error() -> None:
    # Arrange
    levels = [(1, 1)] * 65536

    # Act / Assert
    with pytest.raises(EncodeError, match="65536 levels"):
        encode_depth_snapshot("BTCUSDT", 1, 2, -8, -8, levels, [])


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: encode_trades("BTCUSDT", 1, 1, -8, -8, [], version=0x10000), id="ver"),
        pytest.param(
            lambda: encode_trades("BTCUSDT", 1, 1, -8, -8, [], root_extra=bytes(0xFFFF)), id="root"
        ),
        pytest.param(
            lambda: encode_depth_diff(
                "X", 1, 1, 2, -8, -8, [(1, 1)], [], entry_extra=bytes(0xFFFF)
            ),
            id="level",
        ),
    ],
)
def test_header_fields_out_of_uint16_range_are_encode_errors(build: Callable[[], bytes]) -> None:
    with pytest.raises(EncodeError):
        build()
