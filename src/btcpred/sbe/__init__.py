"""Binance spot SBE market-data stream codec (``stream_1_0.xml``, schema id 1, version 0).

``decode(frame)`` turns one binary WebSocket frame into typed events; the ``encode_*`` functions
build frames (for the exchange simulator, the replay and the tests). The wire format and the
decoder's policies are described in ``docs/sbe.md``.
"""

from btcpred.sbe.decoder import decode
from btcpred.sbe.encoder import (
    TradeEntry,
    encode_best_bid_ask,
    encode_depth_diff,
    encode_depth_snapshot,
    encode_event,
    encode_events,
    encode_group,
    encode_trades,
    frame_groups,
)
from btcpred.sbe.errors import DecodeError, DecodeErrorReason, EncodeError
from btcpred.sbe.schema import SCHEMA_ID, SCHEMA_VERSION, TemplateId

__all__ = [
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "DecodeError",
    "DecodeErrorReason",
    "EncodeError",
    "TemplateId",
    "TradeEntry",
    "decode",
    "encode_best_bid_ask",
    "encode_depth_diff",
    "encode_depth_snapshot",
    "encode_event",
    "encode_events",
    "encode_group",
    "encode_trades",
    "frame_groups",
]
