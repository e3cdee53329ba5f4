"""``btcpred bench <name>``: the benchmark subcommands (figures in docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from btcpred.cli_checks import CliError, redis_url

if TYPE_CHECKING:
    from btcpred.features import FeatureSnapshot
    from btcpred.sources.capture import Capture

__all__ = ["add_bench_parser"]

_REPO_ROOT = Path(__file__).resolve().parents[2]


def _load(paths: list[Path] | None) -> Capture:
    from btcpred.cli import _load as load  # the capture helpers the replay uses too

    return load(paths)


def _default_warmup_klines() -> Path | None:
    from btcpred.cli import _default_warmup_klines as find

    return find()


def _bench_imports(args: argparse.Namespace) -> dict[str, Any]:
    from btcpred.bench.imports import as_json, run_imports_bench

    lambdas = _REPO_ROOT / "lambdas"
    if not (lambdas / "api" / "handler.py").is_file():
        raise CliError(f"no Lambda handlers under {lambdas} (a source checkout is needed)")
    rounds = args.rounds or 5

    def say(line: str) -> None:
        if not args.json:
            print(f"bench imports: {line}", file=sys.stderr, flush=True)

    say(f"{rounds} fresh interpreters per function, python -X importtime")
    figures = run_imports_bench(lambdas, rounds=rounds, progress=say)
    if not args.json:
        for f in figures:
            heavy = ", ".join(f.heavy) or "none"
            print(
                f"{f.function:<11} {f.import_ms_p50:>8} ms  {f.modules:>4} modules  heavy: {heavy}"
            )
    return as_json(figures)


def _bench_sbe(args: argparse.Namespace, capture: Capture, cpu: int | None) -> dict[str, Any]:
    from btcpred.bench.sbe import run_sbe_bench

    if not args.json:
        print(
            f"bench sbe: {len(capture.events):,} messages, {args.rounds} rounds, cpu {cpu}",
            file=sys.stderr,
        )
    data: dict[str, Any] = run_sbe_bench(capture, rounds=args.rounds).as_dict()
    if not args.json:
        print(f"SBE decode   {data['sbe_frames_per_s']:>12,} frames/s")
        print(f"JSON parse   {data['json_frames_per_s']:>12,} frames/s (orjson)")
        print(f"ratio        {data['ratio']:>12}x")
    return data


def _bench_aggregator(args: argparse.Namespace, capture: Capture) -> dict[str, Any]:
    from btcpred.bench.aggregator import run_aggregator_bench
    from btcpred.sim.services import RedisServer

    def say(line: str) -> None:
        if not args.json:
            print(f"bench aggregator: {line}", file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(RedisServer()).url
        say(f"redis {url}, one CPU per side")
        result = run_aggregator_bench(capture, url, rounds=args.rounds, progress=say)
    data: dict[str, Any] = result.as_dict()
    if not args.json:
        print(f"handler      {data['events_per_s']:>12,} events/s (Powertools + engine + Redis)")
        print(f"reference    {data['reference_events_per_s']:>12,} events/s (pandas recompute)")
        print(f"ratio        {data['ratio']:>12}x")
        print(f"peak RSS     {data['peak_rss_mb']:>12} MB (handler process)")
    return data


def _bench_model(args: argparse.Namespace) -> dict[str, Any]:
    from btcpred.bench.model import run_model_bench
    from btcpred.cli_model import default_registry, open_model
    from btcpred.features import FeatureEngine
    from btcpred.features.batch import snapshots_from_klines
    from btcpred.klines import read_klines

    model = open_model(args.model or default_registry())
    warmup = _default_warmup_klines()
    if warmup is None:
        raise CliError("the fixture klines (fixtures/binance) are missing")
    *_, snap = snapshots_from_klines(read_klines(warmup), FeatureEngine("BTCUSDT"))
    if not args.json:
        print(f"bench model: {model.version}, one intra-op thread, 20,000 runs", file=sys.stderr)
    data: dict[str, Any] = run_model_bench(
        model.raw_onnx, model.metadata, list(snap.values())
    ).as_dict()
    if not args.json:
        print(f"single row   p50 {data['p50_us']:>8} us   p99 {data['p99_us']:>8} us")
        print(
            f"predict()    p50 {data['predict_p50_us']:>8} us   p99 {data['predict_p99_us']:>8} us"
        )
        print(f"session load {data['session_load_ms']:>8} ms")
    return data


def _warm_point() -> FeatureSnapshot:
    """A real, fully warm feature point: the capture's stream features (trades and quotes), with
    the indicators the 11-minute capture cannot warm (RSI, MACD, Bollinger) from the fixture's
    1-minute klines before it."""
    from btcpred.events import BestBidAsk, Trade
    from btcpred.features import FEATURE_NAMES, FeatureEngine, FeatureSnapshot
    from btcpred.features.batch import snapshots_from_klines
    from btcpred.klines import read_klines

    capture = _load(None)
    engine = FeatureEngine("BTCUSDT")
    for event in capture.events:
        if isinstance(event, Trade):
            engine.on_trade(event)
        elif isinstance(event, BestBidAsk):
            engine.on_quote(event)
    stream = engine.snapshot()
    warmup = _default_warmup_klines()
    if warmup is None:
        raise CliError("the fixture klines (fixtures/binance) are missing")
    start_ms = capture.events[0].event_time_us // 1000
    klines = [k for k in read_klines(warmup) if k.close_time_ms < start_ms]
    *_, bars = snapshots_from_klines(klines, FeatureEngine("BTCUSDT"))
    values = {
        name: stream_value if stream_value is not None else bar_value
        for name, stream_value, bar_value in zip(
            FEATURE_NAMES, stream.values(), bars.values(), strict=True
        )
    }
    return FeatureSnapshot.build("BTCUSDT", stream.timestamp, values)


def _bench_inference(args: argparse.Namespace) -> dict[str, Any]:
    from btcpred.bench.inference import run_inference_bench
    from btcpred.cli_model import default_registry, open_model
    from btcpred.sim.services import RedisServer

    def say(line: str) -> None:
        if not args.json:
            print(f"bench inference: {line}", file=sys.stderr, flush=True)

    location = args.model or default_registry()
    model = open_model(location)
    snap = _warm_point()
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(RedisServer()).url
        say(f"{model.version}, redis {url}")
        data: dict[str, Any] = run_inference_bench(
            location, model.metadata.name, snap, url, progress=say
        ).as_dict()
    if not args.json:
        print(f"tick         p50 {data['tick_p50_ms']:>8} ms   p99 {data['tick_p99_ms']:>8} ms")
        print(f"model        p99 {data['model_p99_us']:>8} us (session.run, one row)")
        print(f"RSS              {data['rss_mb']:>8} MB (predictor process)")
        print(f"broadcast    p99 {data['broadcast_100_p99_ms']} ms (100 connections)")
    return data


def _bench_ingest(args: argparse.Namespace) -> dict[str, Any]:
    from btcpred.bench.ingest import run_ingest_bench
    from btcpred.cli import _capture_files
    from btcpred.sim.kinesis import MotoKinesisServer

    def say(line: str) -> None:
        if not args.json:
            print(f"bench ingest: {line}", file=sys.stderr, flush=True)

    files = _capture_files(args.capture)
    with contextlib.ExitStack() as stack:
        endpoint = args.kinesis_endpoint or stack.enter_context(MotoKinesisServer()).url
        say(f"Kinesis at {endpoint}; simulator and Kinesis on the other CPU")
        result = run_ingest_bench(
            files, endpoint, laps=args.rounds or 3, realtime_s=args.realtime_s, progress=say
        )
    data: dict[str, Any] = result.as_dict()
    if not args.json:
        print(f"throughput   {data['events_per_s']:>12,} events/s wall ({data['events']:,} events)")
        print(f"             {data['events_per_cpu_s']:>12,} events per CPU second (ingestor)")
        print(f"recorded     {data['records_per_market_s']:>12} records per market second")
        print(f"latency      p50 {data['latency_p50_ms']} ms   p99 {data['latency_p99_ms']} ms")
        print(f"lost trades  {data['lost_trades']:>12}")
    return data


def _bench_loader(args: argparse.Namespace) -> dict[str, Any]:
    from btcpred.bench.loader import one_polars_thread

    one_polars_thread()  # before polars is first imported
    import psycopg2

    from btcpred.bench import pin_to_one_cpu
    from btcpred.bench.loader import (
        agg_trades_from_trades,
        pin_postgres,
        run_loader_bench,
        tile_agg_trades,
    )
    from btcpred.events import Trade
    from btcpred.klines import read_klines
    from btcpred.sim.services import PostgresServer

    def say(line: str) -> None:
        if not args.json:
            print(f"bench loader: {line}", file=sys.stderr, flush=True)

    fixtures = _REPO_ROOT / "fixtures" / "binance"
    paths = args.klines or sorted(fixtures.glob("btcusdt_1m_*.csv.gz"))
    if not paths:
        raise CliError("no kline files; pass --klines FILE")
    klines = [k for path in paths for k in read_klines(path)]
    klines = sorted({k.open_time_ms: k for k in klines}.values(), key=lambda k: k.open_time_ms)
    capture = _load(args.capture)
    base = agg_trades_from_trades([e for e in capture.events if isinstance(e, Trade)])
    trades = tile_agg_trades(base, args.agg_trades)
    names = ", ".join(p.name for p in paths)
    say(f"klines from {names}; {len(base):,} aggTrades from the capture, tiled")
    with contextlib.ExitStack() as stack:
        url = args.database
        if url is None:
            server = stack.enter_context(PostgresServer(database="btcpred_bench"))
            url = server.url
            if server.data_dir is not None:
                pin_postgres(server.data_dir)
        pin_to_one_cpu()
        say(f"PostgreSQL at {url.split('@')[-1]}, this process on one CPU, PostgreSQL on the rest")
        result = run_loader_bench(
            lambda: psycopg2.connect(url), klines, trades, naive_rows=args.naive_rows, progress=say
        )
    data: dict[str, Any] = result.as_dict()
    if not args.json:
        d = data
        print(
            f"loader       {d['rows_per_s']:>10,} rows/s ({d['rows']:,} in {d['objects']} objects)"
        )
        print(
            f"  klines     {d['kline_rows_per_s']:>10,} rows/s ({d['kline_objects']} day objects)"
        )
        print(
            f"  aggTrades  {d['agg_trade_rows_per_s']:>10,} rows/s "
            f"({d['agg_trade_objects']} hour objects)"
        )
        print(f"naive INSERT {d['naive_rows_per_s']:>10,} rows/s ({d['naive_rows']:,} rows)")
        print(f"ratio        {data['ratio_to_naive']:>10}x")
    return data


def _cmd_bench(args: argparse.Namespace) -> int:
    from btcpred.bench import pin_to_one_cpu

    if args.redis_url is not None and args.name in ("aggregator", "inference"):
        redis_url(args.redis_url)  # before the capture loads and the bench processes start
    if args.name in ("imports", "ingest", "loader"):
        runner = {"imports": _bench_imports, "ingest": _bench_ingest, "loader": _bench_loader}
        data = runner[args.name](args)
        if args.json:
            print(orjson.dumps(data).decode())
        return 0
    cpu = pin_to_one_cpu()
    if args.name in ("model", "inference"):
        data = _bench_model(args) if args.name == "model" else _bench_inference(args)
        if args.json:
            print(orjson.dumps(data).decode())
        return 0
    capture = _load(args.capture)
    if args.rounds is None:
        args.rounds = 5 if args.name == "sbe" else 3
    if args.name == "sbe":
        data = _bench_sbe(args, capture, cpu)
    else:
        data = _bench_aggregator(args, capture)
    if args.json:
        print(orjson.dumps(data).decode())
    return 0


def add_bench_parser(sub: Any, count: Callable[[str], int]) -> None:
    """Register ``bench`` on the top-level subparsers."""
    bench = sub.add_parser("bench", help="run a benchmark")
    bench.add_argument(
        "name",
        choices=["sbe", "aggregator", "model", "inference", "imports", "ingest", "loader"],
        help="which benchmark",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument(
        "--rounds",
        type=count,
        default=None,
        help="timed rounds (sbe 5, aggregator 3: the best counts; imports 5: the median; "
        "ingest: laps of the capture, 3)",
    )
    bench.add_argument(
        "--redis-url", help="aggregator: use this empty Redis instead of a throwaway"
    )
    bench.add_argument("--capture", type=Path, action="append", help="capture file (repeatable)")
    bench.add_argument(
        "--kinesis-endpoint", help="ingest: a Kinesis endpoint (default: a throwaway moto server)"
    )
    bench.add_argument(
        "--realtime-s",
        type=float,
        default=20.0,
        help="ingest: seconds of the recorded-rate phase (default 20)",
    )
    bench.add_argument("--model", help="model: model or registry location (default: ./models)")
    bench.add_argument(
        "--klines",
        type=Path,
        action="append",
        help="loader: 1-minute kline CSV files (default: the fixtures')",
    )
    bench.add_argument(
        "--agg-trades",
        type=count,
        default=300_000,
        help="loader: aggTrade rows, from the capture's trades tiled in time (default 300,000)",
    )
    bench.add_argument(
        "--naive-rows",
        type=count,
        default=20_000,
        help="loader: rows per data type the naive row-by-row INSERT loads (default 20,000)",
    )
    bench.add_argument(
        "--database", help="loader: an empty PostgreSQL database URL (default: a throwaway one)"
    )
    bench.set_defaults(func=_cmd_bench)
