"""``btcpred bench sbe``: SBE frame decoding against orjson parsing of the same messages.

The stream is the recorded capture (book tickers, trades, depth diffs and the snapshot in their
recorded proportions and order). Each JSON message gets one SBE frame carrying the same event, so
both sides turn the same number of messages into the same typed events and frames per second
compare directly; ``ratio`` is SBE frames/s over JSON frames/s. Every round's output is checked:
the two sides must produce equal event lists or the benchmark fails.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

from btcpred.events import Event
from btcpred.sbe import decode, encode_event
from btcpred.sources.binance_json import parse_message
from btcpred.sources.capture import Capture

__all__ = ["BenchmarkMismatchError", "SbeBenchResult", "run_sbe_bench"]


class BenchmarkMismatchError(RuntimeError):
    """The two decoding paths disagreed: the measured figures would be meaningless."""


@dataclass(frozen=True)
class SbeBenchResult:
    """Best-round throughput of both paths over the same messages."""

    frames: int
    rounds: int
    sbe_seconds: float
    json_seconds: float

    @property
    def sbe_frames_per_s(self) -> float:
        """SBE frames decoded per second (best round)."""
        return self.frames / self.sbe_seconds

    @property
    def json_frames_per_s(self) -> float:
        """JSON messages parsed per second (best round)."""
        return self.frames / self.json_seconds

    def as_dict(self) -> dict[str, float | int]:
        """The ``--json`` object."""
        return {
            "sbe_frames_per_s": round(self.sbe_frames_per_s),
            "json_frames_per_s": round(self.json_frames_per_s),
            "ratio": round(self.sbe_frames_per_s / self.json_frames_per_s, 3),
            "frames": self.frames,
            "rounds": self.rounds,
        }


def _best_round(run: Callable[[], list[Event]], rounds: int) -> tuple[float, list[Event]]:
    best = float("inf")
    events: list[Event] = []
    for _ in range(rounds):
        gc.collect()
        began = time.perf_counter()
        events = run()
        best = min(best, time.perf_counter() - began)
    return best, events


def run_sbe_bench(capture: Capture, *, rounds: int = 5) -> SbeBenchResult:
    """Measure both paths over ``capture``; raise if their events differ."""
    messages = capture.messages
    frames = [
        (encode_event(event), msg.receive_time_ns)
        for event, msg in zip(capture.events, messages, strict=True)
    ]
    symbol, offset = capture.symbol, capture.clock_offset_us

    def run_sbe() -> list[Event]:
        out: list[Event] = []
        extend = out.extend
        for frame, recv in frames:
            extend(decode(frame, recv))
        return out

    def run_json() -> list[Event]:
        out: list[Event] = []
        append = out.append
        for msg in messages:
            append(
                parse_message(
                    msg.payload, msg.receive_time_ns, symbol=symbol, clock_offset_us=offset
                )
            )
        return out

    sbe_seconds, sbe_events = _best_round(run_sbe, rounds)
    json_seconds, json_events = _best_round(run_json, rounds)
    if sbe_events != json_events or len(sbe_events) != len(frames):
        raise BenchmarkMismatchError("SBE and JSON paths produced different events")
    return SbeBenchResult(len(frames), rounds, sbe_seconds, json_seconds)
