"""The ``btcpred`` command: everything a person runs goes through here.

This is an edge module: it may read the environment and the file system, print and exit; the
work itself is done by the core modules it calls.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from btcpred.cli_bench import add_bench_parser
from btcpred.cli_checks import (
    EXIT_USER_ERROR,
    CliError,
    error_line,
    input_file,
    klines_inputs,
    output_file,
    replaced_on_success,
    user_error_types,
)
from btcpred.cli_history import add_history_parsers
from btcpred.cli_ingest import add_ingest_parsers
from btcpred.cli_model import add_parsers
from btcpred.cli_poll import add_poll_parser
from btcpred.cli_simulate import add_simulate_parser
from btcpred.sources.capture import Capture, load_capture

if TYPE_CHECKING:
    from btcpred.klines import Kline
    from btcpred.local.pipeline import LocalAggregation
    from btcpred.model import OnnxModel

CAPTURE_GLOB = "btcusdt_ws_capture_*.gz"
WARMUP_GLOB = "btcusdt_1m_2024-08-08T18_*.csv.gz"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def _default_capture_dir() -> Path:
    """``fixtures/binance`` in the working directory, else in the source checkout."""
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = base / "fixtures" / "binance"
        if any(candidate.glob(CAPTURE_GLOB)):
            return candidate
    return Path.cwd() / "fixtures" / "binance"


def _default_warmup_klines() -> Path | None:
    for path in _default_capture_dir().glob(WARMUP_GLOB):
        return path
    return None


def _capture_files(paths: Sequence[Path] | None) -> list[Path]:
    """``--capture`` files (checked), else the fixture's."""
    files = list(paths) if paths else sorted(_default_capture_dir().glob(CAPTURE_GLOB))
    if not files:
        raise CliError(
            "no capture files found; pass --capture FILE (fixtures/binance/"
            f"{CAPTURE_GLOB} in the repository)"
        )
    return [input_file(path, "capture file") for path in files]


def _load(paths: Sequence[Path] | None) -> Capture:
    files = _capture_files(paths)
    capture = load_capture(files)
    if not capture.events:
        raise CliError(
            f"no market messages in {', '.join(map(str, files))} "
            f"({len(capture.rejected)} unreadable lines); is it a capture file?"
        )
    return capture


def _replay_model(args: argparse.Namespace) -> OnnxModel | None:
    """The model whose predictions the replay prints: ``--model``, else the shipped one."""
    from btcpred.cli_model import default_registry, open_model

    if args.no_model:
        return None
    if args.model is None and not Path(default_registry()).is_dir():
        print("predictions: none (no models/ registry here; pass --model PATH)", flush=True)
        return None
    model = open_model(args.model or default_registry())
    if model.metadata.window != 1:
        raise CliError(f"{model.version} is a sequence model; the replay serves one-point models")
    print(
        f"predictions: {model.version} (ONNX, one intra-op thread), the inference loop ticking "
        "every 1.5 s of market time against the same Redis",
        flush=True,
    )
    return model


def _local_aggregation(
    stack: contextlib.ExitStack,
    capture: Capture,
    klines: Sequence[Kline] | None,
    model: OnnxModel | None,
) -> LocalAggregation:
    """A private Redis (and a local Binance REST server for warm-up) behind the aggregator."""
    import redis

    from btcpred.local.pipeline import LocalAggregation
    from btcpred.sim.binance_rest import BinanceRestServer
    from btcpred.sim.services import RedisServer, ServiceNotInstalledError

    try:
        server = stack.enter_context(RedisServer())
    except ServiceNotInstalledError as exc:
        raise CliError(f"{exc}; run scripts/ensure-services.sh (make run does)") from None
    rest_url = None
    if klines is not None:
        start_ms = capture.events[0].event_time_us // 1000
        history = [k for k in klines if k.open_time_ms <= start_ms]
        rest = stack.enter_context(BinanceRestServer(history, now_ms=lambda: start_ms))
        rest_url = rest.url
    print(
        f"features: aggregator -> private Redis {server.url}; warm-up "
        f"{'from local Binance REST ' + rest_url if rest_url else 'none (cold start)'}",
        flush=True,
    )
    client = stack.enter_context(redis.Redis.from_url(server.url))
    return LocalAggregation(client, rest_url=rest_url, model=model)


def _replay_klines(args: argparse.Namespace) -> list[Kline] | None:
    """The warm-up klines of ``--klines``, else of the fixture when it is there (read whole up
    front: a bad file is reported before the capture loads)."""
    from btcpred.klines import read_klines

    if args.klines is not None:
        input_file(args.klines, "klines file")
    path = _default_warmup_klines() if args.klines is None else args.klines
    if args.no_features or path is None:
        return None
    return list(read_klines(path))


def _cmd_replay(args: argparse.Namespace) -> int:
    from btcpred.local.replay import replay

    _capture_files(args.capture)  # every argument is checked before the capture loads
    klines = _replay_klines(args)
    print(
        "btcpred replay: recorded Binance capture -> SBE frames -> decoder -> events "
        "-> Kinesis records -> aggregator -> Redis features -> ONNX prediction",
        flush=True,
    )
    model = None if args.no_features else _replay_model(args)
    capture = _load(args.capture)
    print(
        f"loaded {len(capture.events):,} messages; capture clock offset "
        f"{capture.clock_offset_us / 1e6:+.3f} s; speed {args.speed:g}x "
        "(quotes shown when a best price moves; features once per second of market time)",
        flush=True,
    )

    def emit(line: str) -> None:
        print(line, flush=True)

    with contextlib.ExitStack() as stack:
        local, on_events = None, None
        if not args.no_features:
            local = _local_aggregation(stack, capture, klines, model)
            on_events = local.formatted
        summary = replay(
            capture,
            speed=args.speed,
            limit=args.limit,
            emit=emit,
            quiet=args.quiet,
            on_events=on_events,
        )
        accuracy: list[str] = []
        if local is not None:
            final = local.lines(local.finish())  # the last, partial batch
            local.close()
            accuracy = local.accuracy_lines()
            if not args.quiet:
                for line in final:
                    emit(line)
    print("-" * 72)
    for line in [*summary.lines(), *accuracy]:
        print(line)
    return 1 if summary.mismatches else 0


def _cmd_features(args: argparse.Namespace) -> int:
    from btcpred.features import FeatureEngine
    from btcpred.features.batch import snapshots_from_klines, write_csv
    from btcpred.klines import read_klines

    paths = klines_inputs(args.klines)
    output = None if args.output is None else output_file(args.output, "--output")
    engine = FeatureEngine(args.symbol)
    klines = (kline for path in paths for kline in read_klines(path))
    snapshots = snapshots_from_klines(klines, engine)
    if output is None:
        for _ in write_csv(snapshots, sys.stdout):
            pass
        return 0
    rows = 0
    with replaced_on_success(output, "--output") as out:
        for rows in write_csv(snapshots, out):
            if rows % 20_000 == 0:
                print(f"features: {rows:,} bars", file=sys.stderr, flush=True)
    print(f"features: wrote {rows:,} rows to {output}", file=sys.stderr)
    return 0


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="btcpred", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    replay = sub.add_parser("replay", help="replay the recorded capture through the SBE codec")
    replay.add_argument(
        "--capture",
        type=Path,
        action="append",
        help="capture file (repeatable; default: fixtures/binance)",
    )
    replay.add_argument(
        "--speed",
        type=_non_negative_float,
        default=30.0,
        help="times faster than recorded; 0 = no pauses (default 30)",
    )
    replay.add_argument("--limit", type=_count(0), default=None, help="stop after N events")
    replay.add_argument("--quiet", action="store_true", help="print only the summary")
    replay.add_argument(
        "--no-features", action="store_true", help="codec only: no Redis, no aggregator"
    )
    replay.add_argument(
        "--klines",
        type=Path,
        help="1-minute klines the local REST server serves for warm-up (default: fixtures)",
    )
    replay.add_argument(
        "--model", help="model or registry location for predictions (default: ./models)"
    )
    replay.add_argument("--no-model", action="store_true", help="features only, no predictions")
    replay.set_defaults(func=_cmd_replay)

    features = sub.add_parser("features", help="features at each bar close of 1-minute klines")
    features.add_argument(
        "--klines",
        type=Path,
        action="append",
        required=True,
        help="kline CSV, 6- or 12-column, .gz or plain (repeatable, in time order)",
    )
    features.add_argument("--output", type=Path, help="CSV file to write (default: stdout)")
    features.add_argument("--symbol", default="BTCUSDT", help="symbol name (default BTCUSDT)")
    features.set_defaults(func=_cmd_features)

    add_bench_parser(sub, _count(1))
    add_parsers(sub, _count(1))
    add_ingest_parsers(sub)
    add_history_parsers(sub)
    add_poll_parser(sub)
    add_simulate_parser(sub, _load)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``btcpred`` command line."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if not isinstance(exc, user_error_types()):
            raise  # a bug: keep the traceback
        print(error_line(exc), file=sys.stderr)
        return EXIT_USER_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
