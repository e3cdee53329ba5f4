"""The naive reference aggregator for ``btcpred bench aggregator``, written the seed's way.

It keeps every trade of the last two hours in a pandas DataFrame and, per batch, recomputes all
twelve features from scratch: window sums by boolean masks, 1- and 5-minute bars by
``resample``, MACD/RSI by ``ewm`` and Bollinger bands by ``rolling`` — then writes the JSON
document to Redis. It exists only as the yardstick for the engine; its indicator seeding is
pandas', not TA-Lib's, so its values are close to but not equal to the engine's.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pandas as pd
import redis

from btcpred.keys import RedisKeys

__all__ = ["NaiveAggregator"]

_KEEP_US = 2 * 3600 * 1_000_000


class NaiveAggregator:
    """Recompute-everything aggregator for one symbol (see the module docstring)."""

    def __init__(
        self, client: redis.Redis, symbol: str = "BTCUSDT", keys: RedisKeys | None = None
    ) -> None:
        self.client, self.symbol = client, symbol
        self.key = (keys or RedisKeys()).features_latest(symbol)
        self.trades = pd.DataFrame({"time": [], "price": [], "qty": []})
        self.quote: tuple[float, float, float, float] | None = None

    def handle(self, event: dict[str, Any]) -> None:
        """Process one Lambda Kinesis event."""
        rows = []
        for record in event["Records"]:
            payload = json.loads(base64.b64decode(record["kinesis"]["data"]))
            for msg in payload if isinstance(payload, list) else [payload]:
                if msg["message_type"] == "trade":
                    rows.append((msg["transact_time"], float(msg["price"]), float(msg["quantity"])))
                elif msg["message_type"] == "bestbidask":
                    self.quote = tuple(  # type: ignore[assignment]
                        float(msg[k])
                        for k in ("bid_price", "bid_quantity", "ask_price", "ask_quantity")
                    )
        if rows:
            new = pd.DataFrame(rows, columns=["time", "price", "qty"])
            self.trades = pd.concat([self.trades, new], ignore_index=True)
        if self.trades.empty:
            return
        now = self.trades["time"].iloc[-1]
        self.trades = self.trades[self.trades["time"] > now - _KEEP_US]
        doc = self._features(now)
        self.client.set(self.key, json.dumps(doc), ex=300)

    def _features(self, now: float) -> dict[str, Any]:
        df = self.trades
        price = float(df["price"].iloc[-1])
        last_1m = df[df["time"] > now - 60e6]
        last_5m = df[df["time"] > now - 300e6]
        volume = float(last_1m["qty"].sum())
        vwap = float((last_1m["price"] * last_1m["qty"]).sum() / volume) if volume else price
        before_1m = df[df["time"] <= now - 60e6]["price"]
        before_5m = df[df["time"] <= now - 300e6]["price"]
        series = pd.Series(df["price"].to_numpy(), index=pd.to_datetime(df["time"], unit="us"))
        c1 = series.resample("1min").last().ffill()
        c5 = series.resample("5min").last().ffill()
        macd = c1.ewm(span=12, adjust=False).mean() - c1.ewm(span=26, adjust=False).mean()
        signal = macd.ewm(span=9, adjust=False).mean()
        mid, sd = c1.rolling(20).mean(), c1.rolling(20).std(ddof=0)
        delta = c5.diff()
        gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
        loss = (-delta.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean()
        rsi = 100 * gain / (gain + loss)
        upper, lower = mid + 2 * sd, mid - 2 * sd
        doc: dict[str, Any] = {
            "symbol": self.symbol,
            "timestamp": int(now // 1000),
            "price": price,
            "volume": volume,
            "vwap": vwap,
            "price_change_1m": price / before_1m.iloc[-1] - 1 if len(before_1m) else None,
            "price_change_5m": price / before_5m.iloc[-1] - 1 if len(before_5m) else None,
            "volume_avg_1m": float(last_5m["qty"].sum()) / 5,
            "trade_intensity": len(last_1m) / 60,
            "rsi_5m": float(rsi.iloc[-1]),
            "macd_signal": float(signal.iloc[-1]),
            "bollinger_position": float(
                (price - lower.iloc[-1]) / (upper.iloc[-1] - lower.iloc[-1])
            ),
        }
        if self.quote is not None:
            bid, bid_qty, ask, ask_qty = self.quote
            doc["bid_ask_spread"] = (ask - bid) / bid
            doc["order_book_imbalance"] = (bid * bid_qty - ask * ask_qty) / (
                bid * bid_qty + ask * ask_qty
            )
        return doc
