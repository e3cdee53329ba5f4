"""Tests of ``btcpred.klines``: the 6- and 12-column CSV forms, µs times, gzip, bad rows."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from btcpred.klines import Kline, KlineFormatError, kline_from_row, read_klines

FIXTURE = (
    Path(__file__).resolve().parents[2]
    / "fixtures/binance/btcusdt_1m_2024-08-08T18_2024-08-09T0010.csv.gz"
)
HEADER = "open_time_ms,open,high,low,close,volume\n"
# Real 12-column REST rows (2024-08-09 00:00 and 00:01 UTC); trade counts and quote volumes as
# Binance reports them.
ROW_12 = (
    "1723161600000,61686.00,61744.37,61630.88,61631.79,34.08180,"
    "1723161659999,2101993.6,1821,17.1,1054938.2,0"
)
ROW_12_NEXT = (
    "1723161660000,61631.79,61680.00,61600.00,61650.00,20.00000,"
    "1723161719999,1233000.0,900,10.0,616500.0,0"
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="ascii")
    return path


def test_real_fixture_has_370_contiguous_one_minute_bars() -> None:
    klines = list(read_klines(FIXTURE))

    assert len(klines) == 370
    assert klines[0] == Kline(
        1723140000000, 1723140059999, 59469.89, 59488.89, 59414.07, 59414.08, 14.89279
    )
    assert klines[-1].open_time_ms == 1723162140000  # 2024-08-09 00:09 UTC
    assert klines[-1].close == 61444.94
    assert all(
        b.open_time_ms - a.open_time_ms == 60_000 for a, b in zip(klines, klines[1:], strict=False)
    )
    assert all(k.close_time_ms == k.open_time_ms + 59_999 for k in klines)
    assert all(k.quote_volume is None and k.trades is None for k in klines)


def test_six_column_form_with_header_uses_the_interval_for_close_time(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.csv", HEADER + "1723161600000,1.0,3.0,0.5,2.0,7.25\n")

    (kline,) = read_klines(path, interval_ms=300_000)

    assert kline == Kline(1723161600000, 1723161899999, 1.0, 3.0, 0.5, 2.0, 7.25)


def test_twelve_column_form_keeps_close_time_quote_volume_and_trades(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.csv", f"{ROW_12}\n{ROW_12_NEXT}\n")

    first, second = read_klines(path)

    assert first == Kline(
        1723161600000,
        1723161659999,
        61686.0,
        61744.37,
        61630.88,
        61631.79,
        34.0818,
        2101993.6,
        1821,
    )
    assert second.trades == 900
    assert second.quote_volume == 1233000.0


def test_microsecond_times_are_converted_to_milliseconds(tmp_path: Path) -> None:
    row = ROW_12.replace("1723161600000", "1723161600000000").replace(
        "1723161659999", "1723161659999999"
    )
    path = _write(tmp_path / "k.csv", row + "\n")

    (kline,) = read_klines(path)

    assert (kline.open_time_ms, kline.close_time_ms) == (1723161600000, 1723161659999)


def test_gzip_file_reads_like_the_plain_one(tmp_path: Path) -> None:
    text = f"{ROW_12}\n{ROW_12_NEXT}\n"
    plain = _write(tmp_path / "k.csv", text)
    packed = tmp_path / "k.csv.gz"
    packed.write_bytes(gzip.compress(text.encode("ascii")))

    assert list(read_klines(packed)) == list(read_klines(plain))


def test_blank_lines_are_skipped_and_still_counted(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.csv", f"{ROW_12}\n\n{ROW_12_NEXT}\n\nnot,a,row\n")

    with pytest.raises(KlineFormatError, match=r"k\.csv:5: "):
        list(read_klines(path))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1723161660000,1.0,3.0,0.5,2.0", "expected 6 or 12 columns, got 5"),
        ("1723161660000,1.0,abc,0.5,2.0,1.0", "could not convert"),
        ("1723161660000,1.0,0.4,0.5,0.45,1.0", "inconsistent OHLC"),
        ("1723161660000,1.0,3.0,0.5,2.0,-1.0", "volume '-1.0' is not a finite non-negative"),
        ("1723161660000,1.0,3.0,0.5,nan,1.0", "close 'nan' is not a finite"),
        ("1723161660.5,1.0,3.0,0.5,2.0,1.0", "invalid literal for int"),
    ],
)
def test_malformed_six_column_row_names_file_and_line(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = _write(tmp_path / "bad.csv", HEADER + "1723161600000,1.0,3.0,0.5,2.0,7.25\n" + line)

    with pytest.raises(KlineFormatError, match=reason) as info:
        list(read_klines(path))

    assert str(info.value).startswith(f"{path}:3: ")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (ROW_12.replace(",1821,", ",-5,"), "negative trade count -5"),
        (ROW_12.replace("1723161659999", "1723161500000"), "close time 1723161500000 before"),
        (ROW_12.replace("2101993.6", "inf"), "quote volume 'inf'"),
    ],
)
def test_malformed_twelve_column_row_names_file_and_line(
    tmp_path: Path, row: str, reason: str
) -> None:
    path = _write(tmp_path / "bad.csv", row + "\n")

    with pytest.raises(KlineFormatError, match=reason) as info:
        list(read_klines(path))

    assert str(info.value).startswith(f"{path}:1: ")


def test_unexpected_header_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.csv", "open_time_ms,open,high,low,close,vol\n")

    with pytest.raises(KlineFormatError, match=r"k\.csv:1: unexpected header"):
        list(read_klines(path))


def test_non_ascii_bytes_are_a_format_error_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"  # a UTF-8 byte-order mark, as spreadsheet exports write it
    path.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"1723161600000,1,3,0.5,2,7\n")

    with pytest.raises(KlineFormatError) as info:
        list(read_klines(path))

    assert str(info.value).startswith(f"{path}:1: ")


@pytest.mark.parametrize("second_open", ["1723161600000", "1723161540000"])
def test_rows_out_of_order_or_repeated_are_rejected(tmp_path: Path, second_open: str) -> None:
    rows = "1723161600000,1,3,0.5,2,7\n" + f"{second_open},1,3,0.5,2,7\n"
    path = _write(tmp_path / "k.csv", HEADER + rows)

    with pytest.raises(KlineFormatError, match=r"k\.csv:3: open time not after the previous row"):
        list(read_klines(path))


def test_kline_from_row_takes_rest_json_values() -> None:
    row: list[object] = [1723161600000, "61686.00", "61744.37", "61630.88", "61631.79"]
    row += ["34.08180", 1723161659999, "2101993.6", 1821, "17.1", "1054938.2", "0"]

    kline = kline_from_row(row, 60_000)

    assert kline.trades == 1821
    assert kline.quote_volume == 2101993.6
    assert kline.close_time_ms == 1723161659999


@pytest.mark.parametrize("text", ["", HEADER, "\n\n"])
def test_a_file_without_klines_is_an_error(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path / "k.csv", text)

    with pytest.raises(KlineFormatError, match=r"k\.csv: no klines"):
        list(read_klines(path))


def test_a_cut_short_gzip_file_is_a_kline_format_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(FIXTURE.read_bytes()[:5_000])

    with pytest.raises(KlineFormatError, match=r"cut\.csv\.gz: cannot read it as gzip"):
        list(read_klines(path))


def test_a_gz_file_that_is_not_gzip_is_a_kline_format_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.csv.gz", HEADER + "1723161600000,1.0,3.0,0.5,2.0,7.25\n")

    with pytest.raises(KlineFormatError, match=r"plain\.csv\.gz: cannot read it as gzip"):
        list(read_klines(path))
