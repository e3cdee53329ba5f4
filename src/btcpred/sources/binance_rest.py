"""A small Binance spot REST client for market data (klines, tickers, server time).

Standard library only (``urllib.request``), so an AWS Lambda can use it at cold start without
extra dependencies. Proxies from the environment are ignored: requests go straight to
``base_url``.

Retry policy
------------
Timeouts, connection errors, HTTP 429/418 (rate limit / ban) and 5xx are retried, up to
``max_attempts`` attempts in all, sleeping ``min(max_backoff_s, backoff_s * 2**(n - 1))`` after
the n-th failed attempt (no jitter). On 429, 418 and 503 a ``Retry-After`` header (seconds) is
honoured: the client waits ``max(Retry-After, backoff)``, and if ``Retry-After`` exceeds
``max_backoff_s`` it fails at once with the error received (:class:`RateLimitedError` for
429/418, :class:`ServerError` for 503) instead of sleeping for minutes. HTTP 451, other 4xx and
malformed bodies are never retried.

When the attempts run out the **last error is re-raised as is** (there is no wrapper type), so
callers can always catch the specific class; every error carries ``attempts``, the number of
attempts made. Errors are classified by type and status, never by message text.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from email.message import Message

import msgspec

from btcpred.aggtrades import AggTrade, agg_trade_from_json
from btcpred.events import DepthSnapshot
from btcpred.klines import Kline, kline_from_row
from btcpred.sources.binance_json import MessageError, parse_payload

__all__ = [
    "INTERVALS",
    "BinanceRestClient",
    "BinanceRestError",
    "ClientError",
    "MalformedResponseError",
    "RateLimitedError",
    "RestConnectionError",
    "RestTimeoutError",
    "RestrictedLocationError",
    "ServerError",
    "Ticker24hr",
]

_MINUTE, _HOUR, _DAY = 60_000, 3_600_000, 86_400_000
INTERVALS: dict[str, int | None] = {
    "1s": 1_000,
    **{f"{n}m": n * _MINUTE for n in (1, 3, 5, 15, 30)},
    **{f"{n}h": n * _HOUR for n in (1, 2, 4, 6, 8, 12)},
    **{"1d": _DAY, "3d": 3 * _DAY, "1w": 7 * _DAY, "1M": None},
}
"""Binance's kline interval names and their length in ms (``None``: months vary)."""

_SYMBOL = re.compile(r"^[A-Z0-9_.-]{1,20}$")
_MAX_LIMIT = 1000
_MAX_COUNT = 1_000_000  # bars per recent_klines call (1000 requests)
_RETRY_AFTER_STATUSES = frozenset({418, 429, 503})


class BinanceRestError(Exception):
    """A REST request failed.

    Attributes
    ----------
    status
        HTTP status, or ``None`` when no response arrived.
    retryable
        Whether the request may succeed if repeated later.
    retry_after_s
        The ``Retry-After`` header in seconds, when the server sent one.
    attempts
        Attempts made before the error was raised.
    """

    retryable: bool = False

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        self.attempts = 1


class RestTimeoutError(BinanceRestError):
    """No complete answer within ``timeout_s`` (retryable)."""

    retryable = True


class RestConnectionError(BinanceRestError):
    """The connection failed or broke off: refused, reset, DNS (retryable)."""

    retryable = True


class RateLimitedError(BinanceRestError):
    """HTTP 429 (request weight exceeded) or 418 (IP banned); see ``retry_after_s``."""

    retryable = True


class ServerError(BinanceRestError):
    """HTTP 5xx (retryable)."""

    retryable = True


class RestrictedLocationError(BinanceRestError):
    """HTTP 451: Binance refuses this caller's location (permanent; deploy elsewhere)."""


class ClientError(BinanceRestError):
    """Another 4xx: the request is wrong (permanent). ``code``/``msg`` are Binance's."""

    def __init__(self, message: str, *, status: int, code: int | None, msg: str | None) -> None:
        super().__init__(message, status=status)
        self.code = code
        self.msg = msg


class MalformedResponseError(BinanceRestError):
    """The body is not JSON or not of the expected shape (permanent)."""


class Ticker24hr(msgspec.Struct, frozen=True, rename="camel"):
    """Rolling 24-hour statistics of one symbol (``GET /api/v3/ticker/24hr``).

    Prices in quote currency, volumes in base currency (``quote_volume`` in quote currency),
    ``count`` the number of trades; decoded from Binance's camelCase names.
    """

    symbol: str
    last_price: float
    bid_price: float
    bid_qty: float
    ask_price: float
    ask_qty: float
    volume: float
    quote_volume: float
    weighted_avg_price: float
    price_change_percent: float
    open_price: float
    high_price: float
    low_price: float
    open_time_ms: int = msgspec.field(name="openTime")
    close_time_ms: int = msgspec.field(name="closeTime")
    count: int


class _Price(msgspec.Struct):
    price: float


def _retry_after(headers: Message | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        seconds = float(str(value)) if value is not None else -1.0
    except ValueError:  # the HTTP-date form: not used by Binance, ignored
        return None
    return seconds if seconds >= 0 else None


def _error_from_status(status: int, body: bytes, headers: Message | None) -> BinanceRestError:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    parsed = parsed if isinstance(parsed, dict) else {}
    code = parsed.get("code") if isinstance(parsed.get("code"), int) else None
    msg = parsed.get("msg") if isinstance(parsed.get("msg"), str) else None
    detail = f"HTTP {status}" + (f" {{code: {code}, msg: {msg!r}}}" if parsed else "")
    retry_after = _retry_after(headers) if status in _RETRY_AFTER_STATUSES else None
    if status in (418, 429):
        return RateLimitedError(detail, status=status, retry_after_s=retry_after)
    if status == 451:
        return RestrictedLocationError(detail, status=status)
    if status >= 500:
        return ServerError(detail, status=status, retry_after_s=retry_after)
    if 400 <= status < 500:
        return ClientError(detail, status=status, code=code, msg=msg)
    return MalformedResponseError(f"unexpected {detail}", status=status)


def _read_error_body(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read()
    except (OSError, http.client.HTTPException):
        return b""


def _check(symbol: str, interval: str | None = None, **times: int | None) -> None:
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise ValueError(f"symbol {symbol!r} is not an upper-case Binance symbol like 'BTCUSDT'")
    if interval is not None and interval not in INTERVALS:
        raise ValueError(f"interval {interval!r} is not one of {', '.join(INTERVALS)}")
    for name, value in times.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(
                f"{name} must be a non-negative int (ms since the epoch), got {value!r}"
            )


def _check_agg_window(
    symbol: str, from_id: int | None, start: int | None, end: int | None, limit: int
) -> None:
    _check(symbol, start_time_ms=start, end_time_ms=end, from_id=from_id)
    _check_count("limit", limit, _MAX_LIMIT)
    if from_id is not None and (start is not None or end is not None):
        raise ValueError("agg_trades takes from_id or a time window, not both")
    if start is not None and end is not None and not 0 <= end - start < 3_600_000:
        raise ValueError("the aggTrades time window must be under one hour")


def _check_count(name: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValueError(f"{name} must be an int in 1..{maximum}, got {value!r}")


class BinanceRestClient:
    """Binance spot market-data REST client with retries; see the module docstring.

    Parameters
    ----------
    base_url
        ``https://data-api.binance.vision`` (market data only), ``https://api.binance.com``
        or a local :class:`btcpred.sim.binance_rest.BinanceRestServer`'s ``url``.
    timeout_s
        Socket timeout per attempt (connect, and each read).
    max_attempts
        Attempts per request in all (1 = no retry).
    backoff_s, max_backoff_s
        First backoff and its cap; the backoff doubles after each failed attempt.
    sleep
        Called with the seconds to wait between attempts (tests pass a recorder).
    """

    def __init__(
        self,
        base_url: str = "https://data-api.binance.vision",
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 4,
        backoff_s: float = 0.25,
        max_backoff_s: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"base_url {base_url!r} is not an http(s) URL")
        if timeout_s <= 0 or max_attempts < 1 or not 0 <= backoff_s <= max_backoff_s:
            raise ValueError(
                "need timeout_s > 0, max_attempts >= 1, 0 <= backoff_s <= max_backoff_s"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self.used_weight_1m: int | None = None
        """The request weight used in the current minute, from the last answer's
        ``X-MBX-USED-WEIGHT-1M`` header (``None`` until a server sends one)."""
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _attempt(self, url: str) -> object:
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            url, headers={"Accept": "application/json", "User-Agent": "btcpred/0.1"}
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                self._note_weight(response.headers)
                body: bytes = response.read()
        except urllib.error.HTTPError as exc:
            self._note_weight(exc.headers)
            raise _error_from_status(exc.code, _read_error_body(exc), exc.headers) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise RestTimeoutError(f"connect timed out after {self.timeout_s}s") from exc
            raise RestConnectionError(f"connection failed: {exc.reason}") from exc
        except TimeoutError as exc:
            raise RestTimeoutError(f"no answer within {self.timeout_s}s") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise RestConnectionError(f"connection broke off: {exc!r}") from exc
        try:
            return json.loads(body)
        except ValueError:
            raise MalformedResponseError(f"body is not JSON: {body[:80]!r}", status=200) from None

    def _note_weight(self, headers: Message | None) -> None:
        value = headers.get("X-MBX-USED-WEIGHT-1M") if headers is not None else None
        if value is not None and str(value).strip().isdigit():
            self.used_weight_1m = int(str(value).strip())

    def _delay(self, error: BinanceRestError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up at once."""
        backoff = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        if error.retry_after_s is None:
            return backoff
        if error.retry_after_s > self.max_backoff_s:
            return None
        return max(error.retry_after_s, backoff)

    def get(self, path: str, params: Mapping[str, str | int]) -> object:
        """GET ``base_url + path`` with retries and return the decoded JSON body.

        Raises
        ------
        BinanceRestError
            A subclass naming the failure (the last one when the attempts run out).
        """
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._attempt(url)
            except BinanceRestError as error:
                error.attempts = attempt
                delay = self._delay(error, attempt) if error.retryable else None
                if delay is None or attempt == self.max_attempts:
                    raise
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def server_time_ms(self) -> int:
        """Return Binance's clock (``GET /api/v3/time``) in ms since the epoch."""
        body = self.get("/api/v3/time", {})
        if not isinstance(body, dict) or not isinstance(body.get("serverTime"), int):
            raise MalformedResponseError(f"unexpected /api/v3/time body {body!r:.80}", status=200)
        return int(body["serverTime"])

    def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        limit: int = 500,
    ) -> list[Kline]:
        """Return up to ``limit`` bars whose open time is within [start, end], oldest first.

        With only ``end_time_ms``, Binance returns the last ``limit`` bars opened at or before
        it; with neither, the latest ones. The newest bar may still be forming (partial).

        Raises
        ------
        ValueError
            Bad symbol, interval, times or ``limit`` (1..1000).
        BinanceRestError
            The request failed; :class:`MalformedResponseError` for rows that are not klines.
        """
        _check(symbol, interval, start_time_ms=start_time_ms, end_time_ms=end_time_ms)
        _check_count("limit", limit, _MAX_LIMIT)
        if start_time_ms is not None and end_time_ms is not None and start_time_ms > end_time_ms:
            raise ValueError("start_time_ms is after end_time_ms")
        params: dict[str, str | int] = {"symbol": symbol, "interval": interval, "limit": limit}
        if start_time_ms is not None:
            params["startTime"] = start_time_ms
        if end_time_ms is not None:
            params["endTime"] = end_time_ms
        return _parse_klines(self.get("/api/v3/klines", params), INTERVALS[interval] or 0)

    def recent_klines(
        self, symbol: str, interval: str, count: int, *, end_time_ms: int | None = None
    ) -> list[Kline]:
        """Return the last ``count`` finished bars, oldest first, paging 1000 bars per request.

        A bar is finished when ``close_time_ms <= end``, where ``end`` is ``end_time_ms`` or,
        when it is ``None``, Binance's server time (one extra request). A ``end_time_ms`` in
        the future is taken as given: pass server time or earlier. Fewer than ``count`` bars
        come back only when the history starts later.

        Raises
        ------
        ValueError
            Bad arguments (``count`` must be in 1..1,000,000), or the interval ``1M``.
        BinanceRestError
            A request failed, or pages overlap or go backwards (malformed).
        """
        _check(symbol, interval, end_time_ms=end_time_ms)
        _check_count("count", count, _MAX_COUNT)
        interval_ms = INTERVALS[interval]
        if interval_ms is None:
            raise ValueError("recent_klines needs a fixed-length interval, not '1M'")
        end = self.server_time_ms() if end_time_ms is None else end_time_ms
        cursor = end - interval_ms + 1  # the latest open time whose bar has closed by `end`
        pages: list[list[Kline]] = []
        remaining = count
        while remaining > 0 and cursor >= 0:
            limit = min(_MAX_LIMIT, remaining)
            raw = self.klines(symbol, interval, end_time_ms=cursor, limit=limit)
            if raw and raw[0].open_time_ms > cursor:
                raise MalformedResponseError("klines opened after the endTime asked", status=200)
            pages.append([k for k in raw if k.close_time_ms <= end][-remaining:])
            remaining -= len(pages[-1])
            if len(raw) < limit:
                break
            cursor = raw[0].open_time_ms - 1
        bars = [kline for page in reversed(pages) for kline in page]
        if any(a.open_time_ms >= b.open_time_ms for a, b in zip(bars, bars[1:], strict=False)):
            raise MalformedResponseError("kline pages overlap or are out of order", status=200)
        return bars

    def agg_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        limit: int = 1000,
    ) -> list[AggTrade]:
        """``GET /api/v3/aggTrades`` (weight 4): up to ``limit`` aggregate trades, oldest first.

        Either ``from_id`` (trades with an id at or after it) or a time window (Binance requires
        ``end - start`` under one hour when both are sent), never both.

        Raises
        ------
        ValueError
            Bad symbol, ids, times or ``limit`` (1..1000), or ``from_id`` with times.
        BinanceRestError
            The request failed; :class:`MalformedResponseError` for a body that is not trades.
        """
        _check_agg_window(symbol, from_id, start_time_ms, end_time_ms, limit)
        params: dict[str, str | int] = {"symbol": symbol, "limit": limit}
        for name, value in (
            ("fromId", from_id),
            ("startTime", start_time_ms),
            ("endTime", end_time_ms),
        ):
            if value is not None:
                params[name] = value
        body = self.get("/api/v3/aggTrades", params)
        if not isinstance(body, list):
            raise MalformedResponseError(f"aggTrades body is not a list: {body!r:.80}", status=200)
        trades: list[AggTrade] = []
        for index, item in enumerate(body):
            if not isinstance(item, dict):
                raise MalformedResponseError(f"aggTrade {index} is not an object", status=200)
            try:
                trades.append(agg_trade_from_json(item))
            except ValueError as exc:
                raise MalformedResponseError(f"aggTrade {index}: {exc}", status=200) from None
        if any(a.agg_id >= b.agg_id for a, b in zip(trades, trades[1:], strict=False)):
            raise MalformedResponseError("aggTrades out of order", status=200)
        return trades

    def ticker_24hr(self, symbol: str) -> Ticker24hr:
        """Return the rolling 24-hour statistics of ``symbol``.

        Raises
        ------
        ValueError
            Bad symbol.
        BinanceRestError
            The request failed or the body lacks a field.
        """
        _check(symbol)
        body = self.get("/api/v3/ticker/24hr", {"symbol": symbol})
        try:
            return msgspec.convert(body, Ticker24hr, strict=False)
        except msgspec.ValidationError as exc:
            raise MalformedResponseError(f"unexpected 24hr ticker: {exc}", status=200) from None

    def depth_snapshot(self, symbol: str, limit: int = 5000) -> DepthSnapshot:
        """``GET /api/v3/depth``: the order book's top ``limit`` levels per side (weight 250 at
        5000), as a :class:`~btcpred.events.DepthSnapshot` stamped with the local time.

        Raises
        ------
        BinanceRestError
            As :meth:`get`; :class:`MalformedResponseError` for a body that is not a book.
        """
        _check(symbol)
        _check_count("limit", limit, 5000)
        recv_ns = time.time_ns()
        body = self.get("/api/v3/depth", {"symbol": symbol, "limit": limit})
        try:
            event = parse_payload(body, recv_ns, symbol=symbol)
        except MessageError as exc:
            raise MalformedResponseError(f"depth: {exc}", status=200) from None
        if not isinstance(event, DepthSnapshot):
            raise MalformedResponseError("depth: not a snapshot", status=200)
        return event

    def ticker_price(self, symbol: str) -> float:
        """Return the last trade price of ``symbol`` (``GET /api/v3/ticker/price``).

        Raises
        ------
        ValueError
            Bad symbol.
        BinanceRestError
            The request failed or the body has no price.
        """
        _check(symbol)
        body = self.get("/api/v3/ticker/price", {"symbol": symbol})
        try:
            return msgspec.convert(body, _Price, strict=False).price
        except msgspec.ValidationError as exc:
            raise MalformedResponseError(f"unexpected price ticker: {exc}", status=200) from None


def _parse_klines(body: object, interval_ms: int) -> list[Kline]:
    if not isinstance(body, list):
        raise MalformedResponseError(f"klines body is not a list: {body!r:.80}", status=200)
    klines: list[Kline] = []
    for index, row in enumerate(body):
        if not isinstance(row, list) or len(row) != 12:
            raise MalformedResponseError(f"kline {index} is not a 12-element array", status=200)
        try:
            klines.append(kline_from_row(row, interval_ms))
        except ValueError as exc:
            raise MalformedResponseError(f"kline {index}: {exc}", status=200) from None
    return klines
