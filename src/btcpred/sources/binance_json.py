"""Binance's JSON market-data messages (WebSocket streams and the REST depth snapshot) as events.

Handles the payloads of ``<symbol>@trade``, ``<symbol>@bookTicker`` and ``<symbol>@depth``
streams, optionally wrapped in the combined-stream envelope ``{"stream": ..., "data": {...}}``,
and the REST ``GET /api/v3/depth`` answer. Sample trade payload::

    {"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000",
     "q":"0.02000000","T":1723161255342,"m":true,"M":true}

Times in the JSON streams are milliseconds unless the connection asked for microseconds
(``time_unit_us=1``). A spot ``bookTicker`` and the REST snapshot carry no exchange time: their
``event_time_us`` is the local receive time shifted by ``clock_offset_us`` (the estimated exchange
clock minus the local clock), so that they sort correctly among events that do carry one.
"""

from __future__ import annotations

from typing import Any

import orjson

from btcpred.events import (
    BestBidAsk,
    DecimalFormatError,
    DepthDiff,
    DepthSnapshot,
    Event,
    Level,
    Trade,
    common_exponent,
    parse_decimal,
)

__all__ = ["MessageError", "parse_message", "parse_payload"]

_DEFAULT_EXPONENT = -8
"""Exponent of a depth update without any level (no string to read it from): Binance's usual."""


class MessageError(ValueError):
    """A JSON message is malformed or of a kind this parser does not know (permanent)."""


def parse_message(
    raw: bytes | str,
    receive_time_ns: int = 0,
    *,
    symbol: str | None = None,
    clock_offset_us: int = 0,
    time_unit_us: int = 1000,
) -> Event:
    """Parse one raw JSON message into an event; see :func:`parse_payload` for the arguments."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"invalid JSON: {exc}") from None
    if isinstance(obj, dict) and "data" in obj and "stream" in obj:
        obj = obj["data"]
    return parse_payload(
        obj,
        receive_time_ns,
        symbol=symbol,
        clock_offset_us=clock_offset_us,
        time_unit_us=time_unit_us,
    )


def parse_payload(
    obj: Any,
    receive_time_ns: int = 0,
    *,
    symbol: str | None = None,
    clock_offset_us: int = 0,
    time_unit_us: int = 1000,
) -> Event:
    """Turn one decoded JSON payload into an event.

    Parameters
    ----------
    obj
        The payload (a dict as ``orjson.loads`` returns it).
    receive_time_ns
        Local receive time, nanoseconds since the epoch.
    symbol
        The symbol for payloads that do not name it (the REST depth snapshot).
    clock_offset_us
        Exchange clock minus local clock, for payloads without an exchange time.
    time_unit_us
        Microseconds per time unit of the payload: 1000 for milliseconds, 1 for microseconds.

    Raises
    ------
    MessageError
        A field is missing, of the wrong type or not a decimal, or the payload kind is unknown.
    """
    if not isinstance(obj, dict):
        raise MessageError(f"payload is a {type(obj).__name__}, not an object")
    try:
        kind = obj.get("e")
        if kind == "trade":
            return _trade(obj, receive_time_ns, time_unit_us)
        if kind == "depthUpdate":
            return _depth_diff(obj, receive_time_ns, time_unit_us)
        local_us = receive_time_ns // 1000 + clock_offset_us
        if kind is None and "u" in obj and "b" in obj:
            return _book_ticker(obj, receive_time_ns, local_us)
        if kind is None and "lastUpdateId" in obj:
            if symbol is None:
                raise MessageError("a depth snapshot needs the symbol passed in")
            return _depth_snapshot(obj, symbol, receive_time_ns, local_us)
    except (KeyError, IndexError, TypeError, AttributeError, DecimalFormatError) as exc:
        raise MessageError(f"malformed {kind or 'message'}: {type(exc).__name__}: {exc}") from None
    raise MessageError(f"unknown message kind: {str(kind)[:40]!r}")


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _str(value: Any) -> str:
    if type(value) is not str or not value:
        raise TypeError(f"expected a non-empty string, got {type(value).__name__}")
    return value


def _trade(obj: dict[str, Any], recv: int, unit: int) -> Trade:
    price, price_exp = parse_decimal(obj["p"])
    qty, qty_exp = parse_decimal(obj["q"])
    maker = obj["m"]
    if type(maker) is not bool:
        raise TypeError("m must be a boolean")
    return Trade(
        _str(obj["s"]),
        _int(obj["E"]) * unit,
        _int(obj["T"]) * unit,
        _int(obj["t"]),
        price,
        qty,
        price_exp,
        qty_exp,
        maker,
        recv,
    )


def _book_ticker(obj: dict[str, Any], recv: int, event_time_us: int) -> BestBidAsk:
    (bid, ask), price_exp = common_exponent(
        [parse_decimal(obj["b"]), parse_decimal(obj["a"])], _DEFAULT_EXPONENT
    )
    (bid_qty, ask_qty), qty_exp = common_exponent(
        [parse_decimal(obj["B"]), parse_decimal(obj["A"])], _DEFAULT_EXPONENT
    )
    return BestBidAsk(
        _str(obj["s"]),
        event_time_us,
        _int(obj["u"]),
        price_exp,
        qty_exp,
        bid,
        bid_qty,
        ask,
        ask_qty,
        recv,
    )


def _book(
    obj: dict[str, Any], bid_key: str, ask_key: str
) -> tuple[tuple[Level, ...], tuple[Level, ...], int, int]:
    """Parse bid and ask levels, all brought to one price and one quantity exponent."""
    bids_raw = obj[bid_key]
    asks_raw = obj[ask_key]
    levels = [*bids_raw, *asks_raw]
    prices, price_exp = common_exponent(
        [parse_decimal(level[0]) for level in levels], _DEFAULT_EXPONENT
    )
    qtys, qty_exp = common_exponent(
        [parse_decimal(level[1]) for level in levels], _DEFAULT_EXPONENT
    )
    pairs = tuple(zip(prices, qtys, strict=True))
    split = len(bids_raw)
    return pairs[:split], pairs[split:], price_exp, qty_exp


def _depth_diff(obj: dict[str, Any], recv: int, unit: int) -> DepthDiff:
    bids, asks, price_exp, qty_exp = _book(obj, "b", "a")
    return DepthDiff(
        _str(obj["s"]),
        _int(obj["E"]) * unit,
        _int(obj["U"]),
        _int(obj["u"]),
        price_exp,
        qty_exp,
        bids,
        asks,
        recv,
    )


def _depth_snapshot(
    obj: dict[str, Any], symbol: str, recv: int, event_time_us: int
) -> DepthSnapshot:
    bids, asks, price_exp, qty_exp = _book(obj, "bids", "asks")
    return DepthSnapshot(
        symbol, event_time_us, _int(obj["lastUpdateId"]), price_exp, qty_exp, bids, asks, recv
    )
