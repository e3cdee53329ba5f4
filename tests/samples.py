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
