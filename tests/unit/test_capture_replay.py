"""The recorded capture, the replay behind `make run`, and the SBE benchmark's cross-check."""

from __future__ import annotations

import gzip
import itertools
from collections import Counter
from pathlib import Path

import pytest

from btcpred.bench.sbe import BenchmarkMismatchError, run_sbe_bench
from btcpred.events import BestBidAsk, Trade
from btcpred.local.replay import replay
from btcpred.sources.capture import Capture, CaptureFormatError, load_capture

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "binance"
CAPTURE_FILES = sorted(FIXTURES.glob("btcusdt_ws_capture_*.gz"))


@pytest.fixture(scope="module")
def capture() -> Capture:
    return load_capture(CAPTURE_FILES)


@pytest.fixture
def small_capture_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.gz"
    with gzip.open(CAPTURE_FILES[0], "rb") as src, gzip.open(path, "wb") as dst:
        dst.writelines(itertools.islice(src, 400))
    return path


def test_capture_counts_match_its_documentation(capture: Capture) -> None:
    counts = Counter(type(event).__name__ for event in capture.events)

    # Figures from shared/data/binance/README.md, counted independently of this code.
    assert counts == {"Trade": 19904, "BestBidAsk": 73174, "DepthDiff": 6495, "DepthSnapshot": 1}
    assert capture.rejected == []


def test_capture_clock_offset_is_about_1_3_seconds(capture: Capture) -> None:
    # The capture host's clock runs about 1.3 s behind the exchange (data README).
    assert 1_200_000 <= capture.clock_offset_us <= 1_400_000


@pytest.mark.parametrize("damage", ["cut short", "not gzip"])
def test_an_unreadable_gzip_capture_is_a_typed_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "capture.gz"
    whole = CAPTURE_FILES[0].read_bytes()
    path.write_bytes(whole[:20_000] if damage == "cut short" else b"1 {}\n")

    with pytest.raises(CaptureFormatError, match=r"capture\.gz: cannot read it as gzip"):
        load_capture([path])


def test_capture_rejects_bad_lines_with_their_position(tmp_path: Path) -> None:
    path = tmp_path / "capture.txt"
    good = (
        b'1723161254087896568 {"stream":"btcusdt@trade","data":{"e":"trade","E":1,'
        b'"s":"BTCUSDT","t":1,"p":"1.0","q":"1.0","T":1,"m":true,"M":true}}'
    )
    path.write_bytes(good + b'\nnot-a-line\n1 {"e":"kline"}\n')

    loaded = load_capture([path])

    assert len(loaded.events) == 1
    assert [(r.line_number, r.head[:10]) for r in loaded.rejected] == [
        (2, b"not-a-line"),
        (3, b'1 {"e":"kl'),
    ]


def test_replay_round_trips_every_event(capture: Capture) -> None:
    lines: list[str] = []

    summary = replay(capture, speed=0, limit=5000, emit=lines.append)

    assert summary.mismatches == 0
    assert sum(summary.events.values()) == 5000
    assert summary.frames < 5000  # trades of one match share a frame
    assert summary.decode_rate > 0
    assert any(" trade " in line for line in lines)


def test_replay_prints_quotes_only_when_a_best_price_moves(capture: Capture) -> None:
    lines: list[str] = []
    quotes = [e for e in capture.events[:3000] if isinstance(e, BestBidAsk)]
    moves = sum(
        1
        for prev, cur in zip([None, *quotes], quotes, strict=False)
        if prev is None
        or (prev.bid_price_mantissa, prev.ask_price_mantissa)
        != (cur.bid_price_mantissa, cur.ask_price_mantissa)
    )

    summary = replay(capture, speed=0, limit=3000, emit=lines.append)

    assert summary.events["BestBidAsk"] == len(quotes)
    assert sum(" quote " in line for line in lines) == moves < len(quotes)


def test_replay_quiet_prints_nothing_per_event(capture: Capture) -> None:
    lines: list[str] = []

    replay(capture, speed=0, limit=100, emit=lines.append, quiet=True)

    assert lines == []


def test_sbe_bench_cross_checks_both_paths(small_capture_file: Path) -> None:
    small = load_capture([small_capture_file])

    result = run_sbe_bench(small, rounds=1)

    assert result.frames == len(small.events) == 400
    assert set(result.as_dict()) >= {"sbe_frames_per_s", "json_frames_per_s", "ratio"}


def test_sbe_bench_fails_when_the_paths_disagree(small_capture_file: Path) -> None:
    small = load_capture([small_capture_file])
    index = next(i for i, e in enumerate(small.events) if isinstance(e, Trade))
    broken = list(small.events)
    trade = broken[index]
    assert isinstance(trade, Trade)
    broken[index] = Trade(
        trade.symbol,
        trade.event_time_us,
        trade.transact_time_us,
        trade.trade_id,
        trade.price_mantissa + 1,
        trade.qty_mantissa,
        trade.price_exponent,
        trade.qty_exponent,
        trade.is_buyer_maker,
        trade.receive_time_ns,
    )

    with pytest.raises(BenchmarkMismatchError):
        run_sbe_bench(
            Capture(small.symbol, small.clock_offset_us, small.messages, broken), rounds=1
        )
