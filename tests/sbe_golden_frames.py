"""Golden SBE frames written by hand from ``stream_1_0.xml`` (schema id 1, version 0, LE).

The bytes are hex literals with one comment per field; they were NOT produced by the encoder.
Every frame carries real BTCUSDT values from the recorded capture of 2024-08-08
(``fixtures/binance/btcusdt_ws_capture_2024-08-08.gz``) in SBE units: times in microseconds,
prices and quantities as int64 mantissas with exponents -8 / -8. The ``encode_golden_*``
functions write the same values with the encoder, optionally as a newer schema version.
"""

from __future__ import annotations

from btcpred.events import BestBidAsk, DepthDiff, DepthSnapshot, Trade
from btcpred.sbe import (
    encode_best_bid_ask,
    encode_depth_diff,
    encode_depth_snapshot,
    encode_trades,
)

SYMBOL = "BTCUSDT"
# Local receive time of the captured trade (the capture line's nanosecond prefix).
RECEIVE_NS = 1723161254087896568

# --------------------------------------------------------------------------------------------
# Template 10000 TradesStreamEvent: two fills of one match.
# Fill 1 is trade 3735683259 from the capture; fill 2 borrows id/price/qty of the next captured
# trade (3735683260, 61837.63 x 0.048) with isBuyerMaker = False so both enum values appear.
# --------------------------------------------------------------------------------------------
GOLDEN_TRADES = bytes.fromhex(
    "1200"  # @0  header.blockLength u16 = 18
    "1027"  # @2  header.templateId  u16 = 10000
    "0100"  # @4  header.schemaId    u16 = 1
    "0000"  # @6  header.version     u16 = 0
    "98f383be341f0600"  # @8  eventTime    i64 = 1723161255343000
    "b0ef83be341f0600"  # @16 transactTime i64 = 1723161255342000
    "f8"  # @24 priceExponent i8 = -8
    "f8"  # @25 qtyExponent   i8 = -8
    "1900"  # @26 trades.blockLength u16 = 25
    "02000000"  # @28 trades.numInGroup u32 = 2
    "bb00aade00000000"  # @32 trades[0].id    i64 = 3735683259
    "c03affc49f050000"  # @40 trades[0].price i64 = 6183763000000 (61837.63)
    "80841e0000000000"  # @48 trades[0].qty   i64 = 2000000 (0.02)
    "01"  # @56 trades[0].isBuyerMaker u8 = 1
    "bc00aade00000000"  # @57 trades[1].id    i64 = 3735683260
    "c03affc49f050000"  # @65 trades[1].price i64 = 6183763000000 (61837.63)
    "003e490000000000"  # @73 trades[1].qty   i64 = 4800000 (0.048)
    "00"  # @81 trades[1].isBuyerMaker u8 = 0
    "07"  # @82 symbol.length u8 = 7
    "42544355534454"  # @83 symbol "BTCUSDT"
)
TRADES_EVENTS = [
    Trade(
        symbol="BTCUSDT",
        event_time_us=1723161255343000,
        transact_time_us=1723161255342000,
        trade_id=3735683259,
        price_mantissa=6183763000000,
        qty_mantissa=2000000,
        price_exponent=-8,
        qty_exponent=-8,
        is_buyer_maker=True,
        receive_time_ns=RECEIVE_NS,
    ),
    Trade(
        symbol="BTCUSDT",
        event_time_us=1723161255343000,
        transact_time_us=1723161255342000,
        trade_id=3735683260,
        price_mantissa=6183763000000,
        qty_mantissa=4800000,
        price_exponent=-8,
        qty_exponent=-8,
        is_buyer_maker=False,
        receive_time_ns=RECEIVE_NS,
    ),
]


def encode_golden_trades(
    version: int = 0, root_extra: bytes = b"", entry_extra: bytes = b""
) -> bytes:
    return encode_trades(
        SYMBOL,
        1723161255343000,
        1723161255342000,
        -8,
        -8,
        [(3735683259, 6183763000000, 2000000, True), (3735683260, 6183763000000, 4800000, False)],
        version=version,
        root_extra=root_extra,
        entry_extra=entry_extra,
    )


# --------------------------------------------------------------------------------------------
# Template 10001 BestBidAskStreamEvent: bookTicker u=50093239212 (event time chosen: the JSON
# bookTicker carries none).
# --------------------------------------------------------------------------------------------
GOLDEN_BBA = bytes.fromhex(
    "3200"  # @0  header.blockLength u16 = 50
    "1127"  # @2  header.templateId  u16 = 10001
    "0100"  # @4  header.schemaId    u16 = 1
    "0000"  # @6  header.version     u16 = 0
    "b84184be341f0600"  # @8  eventTime    i64 = 1723161255363000
    "ac2bcaa90b000000"  # @16 bookUpdateId i64 = 50093239212
    "f8"  # @24 priceExponent i8 = -8
    "f8"  # @25 qtyExponent   i8 = -8
    "c03affc49f050000"  # @26 bidPrice i64 = 6183763000000 (61837.63)
    "106d941600000000"  # @34 bidQty   i64 = 378826000 (3.78826)
    "007d0ec59f050000"  # @42 askPrice i64 = 6183764000000 (61837.64)
    "1081380900000000"  # @50 askQty   i64 = 154698000 (1.54698)
    "07"  # @58 symbol.length u8 = 7
    "42544355534454"  # @59 symbol "BTCUSDT"
)
BBA_EVENT = BestBidAsk(
    symbol="BTCUSDT",
    event_time_us=1723161255363000,
    update_id=50093239212,
    price_exponent=-8,
    qty_exponent=-8,
    bid_price_mantissa=6183763000000,
    bid_qty_mantissa=378826000,
    ask_price_mantissa=6183764000000,
    ask_qty_mantissa=154698000,
    receive_time_ns=RECEIVE_NS,
)


def encode_golden_bba(version: int = 0, root_extra: bytes = b"", entry_extra: bytes = b"") -> bytes:
    # The best bid/ask message has no group: entry_extra does not apply.
    return encode_best_bid_ask(
        SYMBOL,
        1723161255363000,
        50093239212,
        -8,
        -8,
        (6183763000000, 378826000),
        (6183764000000, 154698000),
        version=version,
        root_extra=root_extra,
    )


# --------------------------------------------------------------------------------------------
# Template 10002 DepthSnapshotStreamEvent: a small book (1 bid, 2 asks) around the bookTicker.
# --------------------------------------------------------------------------------------------
GOLDEN_SNAPSHOT = bytes.fromhex(
    "1200"  # @0  header.blockLength u16 = 18
    "1227"  # @2  header.templateId  u16 = 10002
    "0100"  # @4  header.schemaId    u16 = 1
    "0000"  # @6  header.version     u16 = 0
    "40d284be341f0600"  # @8  eventTime    i64 = 1723161255400000
    "ac2bcaa90b000000"  # @16 bookUpdateId i64 = 50093239212
    "f8"  # @24 priceExponent i8 = -8
    "f8"  # @25 qtyExponent   i8 = -8
    "1000"  # @26 bids.blockLength u16 = 16
    "0100"  # @28 bids.numInGroup  u16 = 1
    "c03affc49f050000"  # @30 bids[0].price i64 = 6183763000000 (61837.63)
    "106d941600000000"  # @38 bids[0].qty   i64 = 378826000 (3.78826)
    "1000"  # @46 asks.blockLength u16 = 16
    "0200"  # @48 asks.numInGroup  u16 = 2
    "007d0ec59f050000"  # @50 asks[0].price i64 = 6183764000000 (61837.64)
    "1081380900000000"  # @58 asks[0].qty   i64 = 154698000 (1.54698)
    "40bf1dc59f050000"  # @66 asks[1].price i64 = 6183765000000 (61837.65)
    "00e1f50500000000"  # @74 asks[1].qty   i64 = 100000000 (1.0)
    "07"  # @82 symbol.length u8 = 7
    "42544355534454"  # @83 symbol "BTCUSDT"
)
SNAPSHOT_EVENT = DepthSnapshot(
    symbol="BTCUSDT",
    event_time_us=1723161255400000,
    last_update_id=50093239212,
    price_exponent=-8,
    qty_exponent=-8,
    bids=((6183763000000, 378826000),),
    asks=((6183764000000, 154698000), (6183765000000, 100000000)),
    receive_time_ns=RECEIVE_NS,
)


def encode_golden_snapshot(
    version: int = 0, root_extra: bytes = b"", entry_extra: bytes = b""
) -> bytes:
    return encode_depth_snapshot(
        SYMBOL,
        1723161255400000,
        50093239212,
        -8,
        -8,
        [(6183763000000, 378826000)],
        [(6183764000000, 154698000), (6183765000000, 100000000)],
        version=version,
        root_extra=root_extra,
        entry_extra=entry_extra,
    )


# --------------------------------------------------------------------------------------------
# Template 10003 DepthDiffStreamEvent: the captured depthUpdate U=50093239203 u=50093239207.
# --------------------------------------------------------------------------------------------
GOLDEN_DIFF = bytes.fromhex(
    "1a00"  # @0  header.blockLength u16 = 26
    "1327"  # @2  header.templateId  u16 = 10003
    "0100"  # @4  header.schemaId    u16 = 1
    "0000"  # @6  header.version     u16 = 0
    "e06a83be341f0600"  # @8  eventTime         i64 = 1723161255308000
    "a32bcaa90b000000"  # @16 firstBookUpdateId i64 = 50093239203
    "a72bcaa90b000000"  # @24 lastBookUpdateId  i64 = 50093239207
    "f8"  # @32 priceExponent i8 = -8
    "f8"  # @33 qtyExponent   i8 = -8
    "1000"  # @34 bids.blockLength u16 = 16
    "0100"  # @36 bids.numInGroup  u16 = 1
    "c048eaca0f050000"  # @38 bids[0].price i64 = 5565387000000 (55653.87)
    "0000000000000000"  # @46 bids[0].qty   i64 = 0 (remove level)
    "1000"  # @54 asks.blockLength u16 = 16
    "0400"  # @56 asks.numInGroup  u16 = 4
    "00d770c79f050000"  # @58  asks[0].price i64 = 6183804000000 (61838.04)
    "e058ed0100000000"  # @66  asks[0].qty   i64 = 32332000 (0.32332)
    "80d7c0ec9f050000"  # @74  asks[1].price i64 = 6184430000000 (61844.30)
    "b8d6640200000000"  # @82  asks[1].qty   i64 = 40163000 (0.40163)
    "80d63b59a0050000"  # @90  asks[2].price i64 = 6186250000000 (61862.50)
    "78954c0000000000"  # @98  asks[2].qty   i64 = 5019000 (0.05019)
    "c0184b59a0050000"  # @106 asks[3].price i64 = 6186251000000 (61862.51)
    "0000000000000000"  # @114 asks[3].qty   i64 = 0 (remove level)
    "07"  # @122 symbol.length u8 = 7
    "42544355534454"  # @123 symbol "BTCUSDT"
)
DIFF_EVENT = DepthDiff(
    symbol="BTCUSDT",
    event_time_us=1723161255308000,
    first_update_id=50093239203,
    last_update_id=50093239207,
    price_exponent=-8,
    qty_exponent=-8,
    bids=((5565387000000, 0),),
    asks=(
        (6183804000000, 32332000),
        (6184430000000, 40163000),
        (6186250000000, 5019000),
        (6186251000000, 0),
    ),
    receive_time_ns=RECEIVE_NS,
)


def encode_golden_diff(
    version: int = 0, root_extra: bytes = b"", entry_extra: bytes = b""
) -> bytes:
    return encode_depth_diff(
        SYMBOL,
        1723161255308000,
        50093239203,
        50093239207,
        -8,
        -8,
        [(5565387000000, 0)],
        [
            (6183804000000, 32332000),
            (6184430000000, 40163000),
            (6186250000000, 5019000),
            (6186251000000, 0),
        ],
        version=version,
        root_extra=root_extra,
        entry_extra=entry_extra,
    )
