"""Replay a recorded capture through the SBE codec and show it as a live stream.

The capture's JSON messages become events, the events become SBE frames exactly as Binance's SBE
stream would carry them (the fills of one match share a trades frame), and the frames are decoded
again and checked against the original events. The decoded events are printed paced by their
recorded receive times (``speed`` times faster than real time), followed by a summary.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from btcpred.events import BestBidAsk, DepthDiff, Event, Trade
from btcpred.sbe import decode, encode_group, frame_groups
from btcpred.sources.capture import Capture

__all__ = ["ReplaySummary", "format_event", "replay"]


@dataclass
class ReplaySummary:
    """What a replay did: counts per event type, frames, bytes, decode time and mismatches."""

    frames: int = 0
    frame_bytes: int = 0
    events: Counter[str] = field(default_factory=Counter)
    decode_seconds: float = 0.0
    mismatches: int = 0
    rejected_lines: int = 0

    @property
    def decode_rate(self) -> float:
        """Frames decoded per second of decoding time."""
        return self.frames / self.decode_seconds if self.decode_seconds else 0.0

    def lines(self) -> list[str]:
        """The summary as printable lines."""
        counts = ", ".join(f"{name} {count:,}" for name, count in sorted(self.events.items()))
        return [
            f"frames decoded   {self.frames:,} ({self.frame_bytes:,} bytes of SBE)",
            f"events           {sum(self.events.values()):,}: {counts}",
            f"decode rate      {self.decode_rate:,.0f} frames/s "
            f"({self.decode_seconds * 1e3:.1f} ms decoding in all)",
            f"round trip       {self.mismatches} events differ from the capture",
            f"rejected lines   {self.rejected_lines}",
        ]


def _clock(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1e6, tz=UTC).strftime("%H:%M:%S.%f")[:-3]


def format_event(event: Event) -> str:
    """One human-readable line for an event."""
    stamp = _clock(event.event_time_us)
    if isinstance(event, Trade):
        side = "SELL" if event.is_buyer_maker else "BUY "
        return (
            f"{stamp}  trade  {event.symbol} {side} {event.qty:>10.5f} @ {event.price:,.2f}"
            f"  id {event.trade_id}"
        )
    if isinstance(event, BestBidAsk):
        spread = event.ask_price - event.bid_price
        return (
            f"{stamp}  quote  {event.symbol} bid {event.bid_price:,.2f} x {event.bid_qty:.5f}"
            f" | ask {event.ask_price:,.2f} x {event.ask_qty:.5f}  spread {spread:.2f}"
        )
    if isinstance(event, DepthDiff):
        return (
            f"{stamp}  depth  {event.symbol} {len(event.bids)} bid / {len(event.asks)} ask levels"
            f" changed  ids {event.first_update_id}..{event.last_update_id}"
        )
    return (
        f"{stamp}  book   {event.symbol} snapshot {len(event.bids)} bids / {len(event.asks)} asks"
        f"  id {event.last_update_id}"
    )


def _without_receive_time(event: Event) -> tuple[object, ...]:
    # receive_time_ns is the last field of every event; a frame carrying several trades has the
    # receive time of its first one.
    return tuple(getattr(event, name) for name in event.__struct_fields__[:-1])


def _interesting(event: Event, last_quote: dict[str, tuple[int, int]]) -> bool:
    """Trades, depth and snapshots always; quotes only when a best price moves."""
    if not isinstance(event, BestBidAsk):
        return True
    prices = (event.bid_price_mantissa, event.ask_price_mantissa)
    if last_quote.get(event.symbol) == prices:
        return False
    last_quote[event.symbol] = prices
    return True


def replay(
    capture: Capture,
    *,
    speed: float,
    limit: int | None,
    emit: Callable[[str], None],
    quiet: bool = False,
    on_events: Callable[[list[Event]], list[str]] | None = None,
) -> ReplaySummary:
    """Replay ``capture`` through encode → decode, emitting lines; return the summary.

    Parameters
    ----------
    speed
        Pace relative to the recording (30 = thirty times faster); 0 replays without pauses.
    limit
        Stop after this many events (``None``: all of them).
    emit
        Where output lines go (``print`` in the CLI, a list's ``append`` in tests).
    quiet
        Emit nothing per event, only let the caller print the summary.
    on_events
        Called with each frame's decoded events; the lines it returns are emitted after them
        (the local stack's features).
    """
    events = capture.events if limit is None else capture.events[:limit]
    summary = ReplaySummary(rejected_lines=len(capture.rejected))
    last_quote: dict[str, tuple[int, int]] = {}
    start_wall = time.monotonic()
    start_recv = events[0].receive_time_ns if events else 0
    for expected in frame_groups(events):
        frame = encode_group(expected)
        recv = expected[0].receive_time_ns
        if speed > 0:
            delay = (recv - start_recv) / 1e9 / speed - (time.monotonic() - start_wall)
            if delay > 0:
                time.sleep(delay)
        began = time.perf_counter()
        decoded = decode(frame, recv)
        summary.decode_seconds += time.perf_counter() - began
        summary.frames += 1
        summary.frame_bytes += len(frame)
        if [_without_receive_time(e) for e in decoded] != [
            _without_receive_time(e) for e in expected
        ]:
            summary.mismatches += max(len(decoded), len(expected))
        for event in decoded:
            summary.events[type(event).__name__] += 1
            if not quiet and _interesting(event, last_quote):
                emit(format_event(event))
        if on_events is not None:
            for line in on_events(decoded):
                if not quiet:
                    emit(line)
    return summary
