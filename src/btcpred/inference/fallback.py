"""Features when the stream's are stale, and a price when the model cannot give one.

:func:`generate_fallback_features` turns Binance's rolling 24-hour ticker into the twelve
features with the seed's neutral defaults where a ticker has nothing to say: no recent change
(``price_change_1m = 0``), a 5-minute change spread evenly over the day, per-minute volumes and
trade rates averaged over the day, RSI 50, MACD signal 0 and a Bollinger position of 0.5
(mid-band). Spread and imbalance come from the ticker's best bid and ask.

:class:`RestFeatures` asks Binance for the ticker and honours ``Retry-After``.
:func:`linear_trend` is the model-failure fallback: a least-squares line through recent
(time, price) points, extrapolated over the horizon.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from btcpred.features import FeatureSnapshot
from btcpred.sources.binance_rest import BinanceRestClient, BinanceRestError, Ticker24hr

__all__ = ["DAY_MINUTES", "RestFeatures", "generate_fallback_features", "linear_trend"]

DAY_MINUTES = 1440


def generate_fallback_features(ticker: Ticker24hr, now_ms: int) -> FeatureSnapshot:
    """The seed's fallback features from a 24-hour ticker, stamped ``now_ms``.

    Raises
    ------
    ValueError
        The ticker has no positive last price.
    """
    price = ticker.last_price
    if not price > 0:
        raise ValueError(f"24hr ticker of {ticker.symbol} has no positive last price")
    per_minute = ticker.volume / DAY_MINUTES
    bid, ask = ticker.bid_price, ticker.ask_price
    spread = (ask - bid) / bid if bid > 0 and ask >= bid else None
    bid_notional, ask_notional = bid * ticker.bid_qty, ask * ticker.ask_qty
    depth = bid_notional + ask_notional
    imbalance = (bid_notional - ask_notional) / depth if depth > 0 else 0.0
    day_change = ticker.price_change_percent / 100.0
    vwap = ticker.weighted_avg_price if ticker.weighted_avg_price > 0 else price
    return FeatureSnapshot.build(
        ticker.symbol,
        now_ms,
        {
            "price": price,
            "volume": per_minute,
            "vwap": vwap,
            "price_change_1m": 0.0,
            "price_change_5m": day_change / (DAY_MINUTES / 5),
            "volume_avg_1m": per_minute,
            "trade_intensity": ticker.count / 86_400.0,
            "bid_ask_spread": spread,
            "order_book_imbalance": imbalance,
            "rsi_5m": 50.0,
            "macd_signal": 0.0,
            "bollinger_position": 0.5,
        },
    )


def linear_trend(points: Sequence[tuple[int, float]], horizon_ms: int) -> float:
    """Extrapolate a least-squares line through ``(time_ms, price)`` points by ``horizon_ms``.

    With fewer than two distinct times the last price is returned (no trend). The result is
    anchored at the last point: ``last_price + slope * horizon``.

    Raises
    ------
    ValueError
        No points.
    """
    if not points:
        raise ValueError("linear trend needs at least one price")
    last_t, last_p = points[-1]
    if len(points) < 2:
        return last_p
    t0 = points[0][0]
    xs = [(t - t0) / 1000.0 for t, _ in points]
    ys = [p for _, p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return last_p
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    predicted = last_p + slope * horizon_ms / 1000.0
    if not math.isfinite(predicted) or predicted <= 0:
        return last_p
    return predicted


class RestFeatures:
    """Fallback features from ``GET /api/v3/ticker/24hr``, honouring ``Retry-After``.

    After a 429/418 the symbol is not asked again until the server's ``Retry-After`` has
    passed; those ticks are skipped with the same error instead of hammering the API.
    """

    def __init__(self, client: BinanceRestClient) -> None:
        self.client = client
        self.blocked_until_ms = 0
        self._blocked_by: BinanceRestError | None = None

    def features(self, symbol: str, now_ms: int) -> FeatureSnapshot:
        """Features derived from the ticker now.

        Raises
        ------
        BinanceRestError
            The request failed or is held back by an earlier ``Retry-After``.
        """
        if now_ms < self.blocked_until_ms and self._blocked_by is not None:
            raise self._blocked_by
        try:
            ticker = self.client.ticker_24hr(symbol)
        except BinanceRestError as exc:
            if exc.retry_after_s is not None:
                self.blocked_until_ms = now_ms + int(exc.retry_after_s * 1000)
                self._blocked_by = exc
            raise
        try:
            return generate_fallback_features(ticker, now_ms)
        except ValueError as exc:
            raise BinanceRestError(f"unusable 24hr ticker: {exc}", status=200) from None
