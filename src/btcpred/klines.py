"""Finished time bars (klines) and the CSV forms they come in.

A :class:`Kline` is one finished bar as Binance reports it: open time and close time in
milliseconds since the Unix epoch (UTC; ``close_time_ms = open_time_ms + interval - 1``), OHLC
prices, base volume, and the optional quote volume and trade count that only Binance's full
12-column form carries. Two CSV forms are read:

* Binance's kline dump / REST form, 12 columns without a header::

    1723161600000,61686.00,61744.37,61630.88,61631.79,34.08180,1723161659999,2101993.6,1821,...

* the 6-column form with a header used by the project's data sets::

    open_time_ms,open,high,low,close,volume
    1723161600000,61686.0,61744.37,61630.88,61631.79,34.0818

Spot dumps from 2025 on carry microsecond times; they are recognised by size and converted.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path

import msgspec

__all__ = [
    "Kline",
    "KlineFormatError",
    "kline_from_row",
    "read_klines",
]

_SIX_COLUMN_HEADER = ["open_time_ms", "open", "high", "low", "close", "volume"]
_MICROSECOND_TIMES = 10**14  # an epoch time above this is in µs (ms reach it in year 5138)


class KlineFormatError(ValueError):
    """A kline row or file is malformed, empty or cut short; the message names the file (and
    line)."""


class Kline(msgspec.Struct, frozen=True, gc=False):
    """One finished bar. Prices in quote currency, volumes in base currency."""

    open_time_ms: int
    close_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float | None = None
    """Σ price·qty over the bar; only in the 12-column form (makes VWAP exact)."""
    trades: int | None = None
    """Number of trades in the bar; only in the 12-column form."""


def _ms(value: str) -> int:
    number = int(value)
    return number // 1000 if number >= _MICROSECOND_TIMES else number


def _price(value: str, name: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} {value!r} is not a finite non-negative number")
    return number


def kline_from_row(row: Sequence[object], interval_ms: int = 60_000) -> Kline:
    """Build a :class:`Kline` from a 6- or 12-column row (strings or numbers, as REST sends).

    Raises
    ------
    ValueError
        Wrong column count, non-numeric fields, negative or non-finite values, high < low.
    """
    if len(row) not in (6, 12):
        raise ValueError(f"expected 6 or 12 columns, got {len(row)}")
    cells = [str(cell) for cell in row]
    open_time = _ms(cells[0])
    o, h, low, c, v = (_price(cells[i], n) for i, n in enumerate(_SIX_COLUMN_HEADER[1:], 1))
    if h < low or not low <= o <= h or not low <= c <= h:
        raise ValueError(f"inconsistent OHLC {o}/{h}/{low}/{c}")
    if len(cells) == 6:
        return Kline(open_time, open_time + interval_ms - 1, o, h, low, c, v)
    trades = int(cells[8])
    if trades < 0:
        raise ValueError(f"negative trade count {trades}")
    close_time = _ms(cells[6])
    if close_time < open_time:
        raise ValueError(f"close time {close_time} before open time {open_time}")
    quote = _price(cells[7], "quote volume")
    return Kline(open_time, close_time, o, h, low, c, v, quote, trades)


def _open_text(path: Path) -> io.TextIOBase:
    # Non-ASCII bytes become U+FFFD, which no number parses: the row then fails with file:line
    # (strict decoding raised a bare UnicodeDecodeError naming neither).
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="ascii", errors="replace", newline="")


def read_klines(path: Path, interval_ms: int = 60_000) -> Iterator[Kline]:
    """Yield the klines of a CSV file (``.gz`` or plain) in file order.

    The form is told from the first line: the 6-column header, or 12 numeric columns. Rows must
    be in strictly increasing open time.

    Raises
    ------
    KlineFormatError
        A malformed row or header, or rows out of order (the message names file and line); a
        file with no klines (empty, or a header only); a ``.gz`` file that is not gzip or is cut
        short.
    """
    try:
        with _open_text(path) as handle:
            count = yield from _parse(path, csv.reader(handle), interval_ms)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise KlineFormatError(f"{path}: cannot read it as gzip ({exc})") from None
    if count == 0:
        raise KlineFormatError(f"{path}: no klines (the file is empty or holds only a header)")


def _parse(
    path: Path, reader: Iterator[list[str]], interval_ms: int
) -> Generator[Kline, None, int]:
    """The rows of :func:`read_klines`; returns how many klines it yielded."""
    previous, count = -1, 0
    for line_no, row in enumerate(reader, 1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if line_no == 1 and row[0].strip().lower() == "open_time_ms":
            if [cell.strip().lower() for cell in row] != _SIX_COLUMN_HEADER:
                raise KlineFormatError(f"{path}:1: unexpected header {row}")
            continue
        try:
            kline = kline_from_row(row, interval_ms)
        except ValueError as exc:
            raise KlineFormatError(f"{path}:{line_no}: {exc}") from None
        if kline.open_time_ms <= previous:
            raise KlineFormatError(f"{path}:{line_no}: open time not after the previous row")
        previous, count = kline.open_time_ms, count + 1
        yield kline
    return count
