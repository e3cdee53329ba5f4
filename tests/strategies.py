"""Hypothesis strategies for market events over the full range the SBE schema allows."""

from __future__ import annotations

from hypothesis import strategies as st

from btcpred.events import BestBidAsk, DepthDiff, DepthSnapshot, Trade

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
int8 = st.integers(min_value=-128, max_value=127)
symbols = st.text(min_size=1, max_size=20).filter(lambda s: 1 <= len(s.encode()) <= 255)
levels = st.lists(st.tuples(int64, int64), max_size=20).map(tuple)
receive_times = st.integers(min_value=0, max_value=2**63 - 1)

trades = st.builds(
    Trade, symbols, int64, int64, int64, int64, int64, int8, int8, st.booleans(), receive_times
)
best_bid_asks = st.builds(
    BestBidAsk, symbols, int64, int64, int8, int8, int64, int64, int64, int64, receive_times
)
depth_diffs = st.builds(
    DepthDiff, symbols, int64, int64, int64, int8, int8, levels, levels, receive_times
)
depth_snapshots = st.builds(
    DepthSnapshot, symbols, int64, int64, int8, int8, levels, levels, receive_times
)
events = st.one_of(trades, best_bid_asks, depth_diffs, depth_snapshots)
