"""Immutable market events: what every exchange message becomes at the boundary.

Every event carries the exchange's own time (``event_time_us``, microseconds since the Unix epoch,
UTC) and the local receive time (``receive_time_ns``, nanoseconds since the epoch; 0 when unknown)
side by side. Prices and quantities are exact: an integer mantissa and a decimal exponent
(``value = mantissa * 10**exponent``), exactly as Binance's SBE stream carries them. Float and
:class:`~decimal.Decimal` views are properties computed on demand.

The classes are :class:`msgspec.Struct` subclasses: frozen, hashable, compared field by field and
several times cheaper to create than frozen dataclasses, which matters at 10^5-10^6 events/s.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import TypeAlias

import msgspec

__all__ = [
    "BestBidAsk",
    "DecimalFormatError",
    "DepthDiff",
    "DepthSnapshot",
    "Event",
    "GAP_REASONS",
    "GAP_STREAMS",
    "Gap",
    "GapReason",
    "Level",
    "StreamItem",
    "Trade",
    "common_exponent",
    "format_decimal",
    "parse_decimal",
    "rescale",
    "to_decimal",
    "to_float",
]

Level: TypeAlias = tuple[int, int]
"""One order-book level: ``(price_mantissa, qty_mantissa)``; a qty of 0 removes the level."""


class DecimalFormatError(ValueError):
    """A decimal string is not of the form ``[-]digits[.digits][e[+-]digits]``."""


def to_float(mantissa: int, exponent: int) -> float:
    """Return ``mantissa * 10**exponent`` as the nearest float.

    Dividing by an exact power of ten rounds once, so ``to_float(6183763000000, -8)`` is exactly
    ``61837.63`` (multiplying by ``1e-8`` would not be).
    """
    if exponent < 0:
        scale: int = 10 ** (-exponent)
        return mantissa / scale
    return float(mantissa * 10**exponent)


def to_decimal(mantissa: int, exponent: int) -> Decimal:
    """Return ``mantissa * 10**exponent`` as an exact :class:`~decimal.Decimal`."""
    return Decimal(mantissa).scaleb(exponent)


def format_decimal(mantissa: int, exponent: int) -> str:
    """Format an exact decimal the way Binance does, keeping every digit of the exponent.

    ``format_decimal(6183763000000, -8) == "61837.63000000"``; positive exponents use scientific
    notation (``format_decimal(5, 2) == "5e2"``) so that :func:`parse_decimal` restores the same
    mantissa and exponent.
    """
    if exponent >= 0:
        return str(mantissa) if exponent == 0 else f"{mantissa}e{exponent}"
    sign = "-" if mantissa < 0 else ""
    digits = str(abs(mantissa)).rjust(-exponent + 1, "0")
    return f"{sign}{digits[:exponent]}.{digits[exponent:]}"


_DECIMAL_RE = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?")


def parse_decimal(text: str) -> tuple[int, int]:
    """Parse a decimal string into ``(mantissa, exponent)`` without rounding.

    The exponent is set by the digits written: ``"61837.63000000"`` → ``(6183763000000, -8)``,
    ``"5e2"`` → ``(5, 2)``. This is the inverse of :func:`format_decimal`.

    Raises
    ------
    DecimalFormatError
        If ``text`` is not a plain decimal number (no ``nan``, ``inf``, spaces or underscores).
    """
    whole, _, frac = text.partition(".")
    digits = whole + frac
    if whole and digits.isdigit() and digits.isascii():  # fast path: Binance's "61837.63000000"
        return int(digits), -len(frac)
    match = _DECIMAL_RE.fullmatch(text)
    if match is None:
        raise DecimalFormatError(f"not a decimal number: {text[:40]!r}")
    sign, whole, frac, exp = match.groups()
    frac = frac or ""
    mantissa = int(whole + frac)
    exponent = (int(exp) if exp else 0) - len(frac)
    return (-mantissa if sign == "-" else mantissa), exponent


def rescale(mantissa: int, exponent: int, target: int) -> int:
    """Express ``mantissa * 10**exponent`` as a mantissa at ``target``, exactly.

    Raises
    ------
    DecimalFormatError
        If the value has digits finer than ``target`` allows (it would have to be rounded).
    """
    if exponent >= target:
        factor: int = 10 ** (exponent - target)
        return mantissa * factor
    scale: int = 10 ** (target - exponent)
    if mantissa % scale:
        raise DecimalFormatError(f"value needs exponent {exponent}, finer than {target}")
    return mantissa // scale


def common_exponent(values: Sequence[tuple[int, int]], default: int) -> tuple[list[int], int]:
    """Bring ``(mantissa, exponent)`` decimals to one exponent (the smallest), exactly.

    ``default`` is the exponent returned for an empty sequence.
    """
    exponent = min((e for _, e in values), default=default)
    return [rescale(m, e, exponent) for m, e in values], exponent


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One executed trade.

    ``transact_time_us`` is the matching engine's time; ``event_time_us`` when the exchange sent
    the message. ``is_buyer_maker`` is true when the buyer's order rested on the book (the trade
    was a sell-initiated, "taker sells" trade).
    """

    symbol: str
    event_time_us: int
    transact_time_us: int
    trade_id: int
    price_mantissa: int
    qty_mantissa: int
    price_exponent: int
    qty_exponent: int
    is_buyer_maker: bool
    receive_time_ns: int = 0

    @property
    def price(self) -> float:
        """The trade price as a float."""
        return to_float(self.price_mantissa, self.price_exponent)

    @property
    def qty(self) -> float:
        """The traded base quantity as a float."""
        return to_float(self.qty_mantissa, self.qty_exponent)


class BestBidAsk(msgspec.Struct, frozen=True, gc=False):
    """The best bid and ask of one symbol (Binance ``bestBidAsk`` / ``bookTicker``)."""

    symbol: str
    event_time_us: int
    update_id: int
    price_exponent: int
    qty_exponent: int
    bid_price_mantissa: int
    bid_qty_mantissa: int
    ask_price_mantissa: int
    ask_qty_mantissa: int
    receive_time_ns: int = 0

    @property
    def bid_price(self) -> float:
        """The best bid price as a float."""
        return to_float(self.bid_price_mantissa, self.price_exponent)

    @property
    def bid_qty(self) -> float:
        """The quantity at the best bid as a float."""
        return to_float(self.bid_qty_mantissa, self.qty_exponent)

    @property
    def ask_price(self) -> float:
        """The best ask price as a float."""
        return to_float(self.ask_price_mantissa, self.price_exponent)

    @property
    def ask_qty(self) -> float:
        """The quantity at the best ask as a float."""
        return to_float(self.ask_qty_mantissa, self.qty_exponent)


class DepthDiff(msgspec.Struct, frozen=True, gc=False):
    """An incremental order-book update covering book update ids ``first..last`` inclusive."""

    symbol: str
    event_time_us: int
    first_update_id: int
    last_update_id: int
    price_exponent: int
    qty_exponent: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    receive_time_ns: int = 0

    def float_bids(self) -> list[tuple[float, float]]:
        """The bid levels as ``(price, qty)`` floats."""
        return _float_levels(self.bids, self.price_exponent, self.qty_exponent)

    def float_asks(self) -> list[tuple[float, float]]:
        """The ask levels as ``(price, qty)`` floats."""
        return _float_levels(self.asks, self.price_exponent, self.qty_exponent)


class DepthSnapshot(msgspec.Struct, frozen=True, gc=False):
    """The top of the order book as of book update id ``last_update_id``."""

    symbol: str
    event_time_us: int
    last_update_id: int
    price_exponent: int
    qty_exponent: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    receive_time_ns: int = 0

    def float_bids(self) -> list[tuple[float, float]]:
        """The bid levels as ``(price, qty)`` floats."""
        return _float_levels(self.bids, self.price_exponent, self.qty_exponent)

    def float_asks(self) -> list[tuple[float, float]]:
        """The ask levels as ``(price, qty)`` floats."""
        return _float_levels(self.asks, self.price_exponent, self.qty_exponent)


def _float_levels(
    levels: tuple[Level, ...], price_exponent: int, qty_exponent: int
) -> list[tuple[float, float]]:
    return [(to_float(p, price_exponent), to_float(q, qty_exponent)) for p, q in levels]


Event: TypeAlias = Trade | BestBidAsk | DepthDiff | DepthSnapshot
"""Any market event."""

GapReason: TypeAlias = str
"""Why ids are missing: ``reconnect``, ``rotation``, ``sequence`` (the exchange skipped them on
a live connection), ``overflow`` (the ingestor's buffer shed them) or ``shutdown`` (not sent
before the process stopped). See docs/ingestor.md."""

GAP_REASONS = frozenset({"reconnect", "rotation", "sequence", "overflow", "shutdown"})
GAP_STREAMS = frozenset({"trade", "depth"})


class Gap(msgspec.Struct, frozen=True, gc=False):
    """Ids of one (symbol, stream) that never reached the stream: ``from_id..to_id`` inclusive.

    Not a market event: the ingestor's explicit record that data is missing, so a consumer
    never has to guess. ``stream`` is ``trade`` (trade ids) or ``depth`` (book update ids);
    ``event_time_us`` is the exchange time of the event that revealed the gap (or the local
    time when none did).
    """

    symbol: str
    event_time_us: int
    stream: str
    from_id: int
    to_id: int
    reason: GapReason
    receive_time_ns: int = 0

    @property
    def size(self) -> int:
        """How many ids are missing."""
        return self.to_id - self.from_id + 1


StreamItem: TypeAlias = Event | Gap
"""What goes on the Kinesis stream: a market event or an explicit gap."""
