"""Events built by hand from real messages of the recorded capture (fixtures/binance).

Trade: {"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000",
"q":"0.02000000","T":1723161255342,"m":true,"M":true}, received at 1723161254087896568 ns.
Quote: {"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000",
"a":"61837.64000000","A":"1.54698000"}, received at 1723161254087891268 ns.
"""

from __future__ import annotations

from btcpred.events import BestBidAsk, Trade

TRADE_RECEIVED_NS = 1723161254087896568
TRADE = Trade(
    "BTCUSDT",
    1723161255343000,
    1723161255342000,
    3735683259,
    6183763000000,
    2000000,
    -8,
    -8,
    True,
    TRADE_RECEIVED_NS,
)
QUOTE = BestBidAsk(
    "BTCUSDT",
    1723161255363000,
    50093239212,
    -8,
    -8,
    6183763000000,
    378826000,
    6183764000000,
    154698000,
    1723161254087891268,
)


COMPLETE_FEATURES: dict[str, float | None] = {
    "price": 60_000.0,
    "volume": 12.5,
    "vwap": 59_990.0,
    "price_change_1m": 0.0004,
    "price_change_5m": -0.0012,
    "volume_avg_1m": 10.0,
    "trade_intensity": 6.0,
    "bid_ask_spread": 2e-6,
    "order_book_imbalance": 0.1,
    "rsi_5m": 55.0,
    "macd_signal": 3.5,
    "bollinger_position": 0.6,
}
"""A complete, plausible feature point (the twelve features, every one inside its range)."""
