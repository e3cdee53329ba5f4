"""``btcpred backfill``, ``btcpred load`` and ``btcpred db migrate`` (an edge module: it reads
the environment and makes the S3 and PostgreSQL clients). docs/history.md."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from btcpred.cli_checks import CliError

__all__ = ["add_history_parsers"]


def _sink(out: str, prefix: str, s3_endpoint: str | None) -> tuple[Any, str]:
    """(sink, key prefix) for ``--out``: a directory, or ``s3://bucket[/prefix]``."""
    if out.startswith("s3://"):
        from btcpred.history.aws import S3Sink, s3_client, split_s3_uri

        try:
            bucket, uri_prefix = split_s3_uri(out)
        except ValueError as exc:
            raise CliError(f"--out: {exc}") from None
        return S3Sink(s3_client(s3_endpoint), bucket), uri_prefix or prefix
    from btcpred.cli_checks import output_directory
    from btcpred.history.sinks import DirectorySink

    return DirectorySink(output_directory(Path(out), "--out")), prefix


def _time(text: str, flag: str) -> int:
    from btcpred.history.backfill import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise CliError(f"{flag}: {exc}") from None


def _cmd_backfill(args: argparse.Namespace) -> int:
    from btcpred.history.backfill import (
        DumpSource,
        RestSource,
        backfill,
        backfill_dumps,
    )
    from btcpred.history.progress import Progress, format_duration

    sink, prefix = _sink(args.out, args.prefix, args.s3_endpoint)
    start = _time(args.start, "--from") if args.start else None
    end = _time(args.end, "--to") if args.end else None
    if start is not None and end is not None and start >= end:
        raise CliError("--from must be before --to")
    started = time.monotonic()
    bar = Progress(0, label="backfill ")
    if args.dump:
        source = DumpSource(args.dump, symbol=args.symbol, data_type=args.data_type)
        report = backfill_dumps(
            source, sink, start_ms=start, end_ms=end, prefix=prefix, progress=bar
        )
    else:
        if start is None or end is None:
            raise CliError("a REST backfill needs --from and --to (or give --dump files)")
        from btcpred.history.layout import chunks
        from btcpred.sources.binance_rest import BinanceRestClient, BinanceRestError

        client = BinanceRestClient(args.rest_url, timeout_s=10.0, max_attempts=5)
        try:
            server_now = client.server_time_ms()
        except BinanceRestError as exc:
            raise CliError(f"--rest-url {args.rest_url}: {exc}") from None
        if start >= server_now:
            raise CliError(
                f"--from is not before the server's time ({server_now} ms): nothing to fetch"
            )
        plan = chunks(args.symbol or "BTCUSDT", args.data_type or "kline_1m", start, end)
        bar.total = len(plan)
        rest = RestSource(client, max_weight=args.max_weight, note=bar.note)
        report = backfill(
            rest,
            sink,
            args.symbol or "BTCUSDT",
            args.data_type or "kline_1m",
            start,
            min(end, server_now),
            server_time_ms=server_now,
            prefix=prefix,
            progress=bar,
        )
    if not 0 < bar.total == bar.done:  # the finished bar has printed itself
        bar.show(force=True)
    print(
        f"backfill: {report.written} objects written ({report.rows:,} rows), "
        f"{report.skipped} chunks already there, {report.unfinished} not finished yet, "
        f"{report.empty} empty; {report.requests} requests, "
        f"{report.weight_waits_s:.0f}s waited for request weight; "
        f"{format_duration(time.monotonic() - started)}",
        file=sys.stderr,
    )
    for key in report.keys[: args.list]:
        print(sink.describe(key))
    return 0


def _database(args: argparse.Namespace) -> Any:
    from btcpred.history.aws import connect
    from btcpred.settings.history import DatabaseSettings
    from btcpred.settings.parse import ConfigError

    env = dict(os.environ)
    if args.database:
        env["DATABASE_URL"] = args.database
        env.pop("DATABASE_SECRET_ARN", None)
    try:
        settings = DatabaseSettings.from_env(env)
    except ConfigError as exc:
        raise CliError(f"{exc} (or pass --database postgresql://...)") from None
    import psycopg2

    try:
        return connect(settings)
    except psycopg2.OperationalError as exc:
        raise CliError(f"cannot connect to the database: {str(exc).strip()}") from None


def _objects(source: str, s3_endpoint: str | None) -> tuple[str, list[str], Any]:
    """(bucket label, keys, fetch) for a directory, a file or ``s3://bucket/prefix``."""
    if source.startswith("s3://"):
        from btcpred.history.aws import S3Sink, s3_client, split_s3_uri

        bucket, prefix = split_s3_uri(source)
        client = s3_client(s3_endpoint)
        keys = sorted(k for k in S3Sink(client, bucket).keys(prefix) if k.endswith(".avro"))

        def fetch_s3(key: str) -> tuple[bytes, str | None]:
            answer = client.get_object(Bucket=bucket, Key=key)
            return answer["Body"].read(), answer.get("ETag", "").strip('"') or None

        return bucket, keys, fetch_s3
    path = Path(source).resolve()
    if not path.exists():
        raise CliError(f"{source}: no such file or directory")
    root = path if path.is_dir() else path.parent
    files = sorted(path.rglob("*.avro")) if path.is_dir() else [path]
    keys = [f.relative_to(root).as_posix() for f in files]

    def fetch_file(key: str) -> tuple[bytes, str | None]:
        return (root / key).read_bytes(), None

    return f"file:{root}", keys, fetch_file


def _cmd_load(args: argparse.Namespace) -> int:
    from btcpred.history.loader import ObjectRejected, load_object
    from btcpred.history.migrations import migrate
    from btcpred.history.progress import Progress

    conn = _database(args)
    try:
        migrate(conn)
        rejected = rows = skipped = 0
        partitions: set[str] = set()
        started = time.monotonic()
        for source in args.source:
            bucket, keys, fetch = _objects(source, args.s3_endpoint)
            bar = Progress(len(keys), label="load ", unit="objects")
            for key in keys:
                data, etag = fetch(key)
                try:
                    result = load_object(conn, bucket, key, data, etag=etag, partitions=partitions)
                except ObjectRejected as exc:
                    rejected += 1
                    bar.note(f"rejected {key}: {exc}")
                    bar.advance(skipped=True)
                    continue
                rows += result.inserted
                skipped += result.skipped
                bar.advance(result.inserted, skipped=result.skipped)
        seconds = time.monotonic() - started
        print(
            f"load: {rows:,} rows written, {skipped} objects loaded before, {rejected} rejected "
            f"in {seconds:.1f}s",
            file=sys.stderr,
        )
        return 1 if rejected else 0
    finally:
        conn.close()


def _cmd_migrate(args: argparse.Namespace) -> int:
    from btcpred.history.migrations import migrate

    conn = _database(args)
    try:
        applied = migrate(conn)
    finally:
        conn.close()
    print(f"migrations applied: {applied}" if applied else "the schema is up to date")
    return 0


def _cmd_serve_rest(args: argparse.Namespace) -> int:
    from btcpred.bench.loader import agg_trades_from_trades
    from btcpred.cli_checks import input_file
    from btcpred.events import Trade
    from btcpred.klines import read_klines
    from btcpred.sim.binance_rest import BinanceRestServer
    from btcpred.sources.capture import load_capture

    klines = [k for path in args.klines for k in read_klines(input_file(path, "klines file"))]
    trades = []
    if args.capture:
        capture = load_capture([input_file(p, "capture file") for p in args.capture])
        trades = agg_trades_from_trades([e for e in capture.events if isinstance(e, Trade)])
    server = BinanceRestServer(klines, agg_trades=trades, port=args.port).start()
    try:
        print(
            f"Binance REST at {server.url}: {len(klines):,} klines, {len(trades):,} aggTrades "
            "(Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def add_history_parsers(sub: Any) -> None:
    """Add ``backfill``, ``load`` and ``db`` to the ``btcpred`` parser."""
    fill = sub.add_parser(
        "backfill",
        help="history from Binance REST or dump files into Avro objects (docs/history.md)",
    )
    fill.add_argument("--symbol", help="symbol (default BTCUSDT; dumps: from the file name)")
    fill.add_argument(
        "--data-type",
        choices=("kline_1m", "agg_trade"),
        help="kline_1m (default) or agg_trade (dumps: from the file name)",
    )
    fill.add_argument("--from", dest="start", help="start, UTC: 2025-05-20, 2025-05-20T13:00")
    fill.add_argument("--to", dest="end", help="end (exclusive), UTC")
    fill.add_argument(
        "--dump",
        type=Path,
        action="append",
        help="Binance dump file or directory (CSV, .zip, .gz; repeatable) instead of REST",
    )
    fill.add_argument(
        "--rest-url",
        default="https://data-api.binance.vision",
        help="Binance REST base URL (default: data-api.binance.vision)",
    )
    fill.add_argument(
        "--out", required=True, help="a directory, or s3://bucket[/prefix] (the history bucket)"
    )
    fill.add_argument("--prefix", default="market", help="key prefix (default: market)")
    fill.add_argument("--s3-endpoint", help="S3 endpoint URL (a local moto server)")
    fill.add_argument(
        "--max-weight",
        type=int,
        default=4800,
        help="wait for the next minute past this request weight (default 4800 of 6000)",
    )
    fill.add_argument("--list", type=int, default=0, help="print the first N keys written")
    fill.set_defaults(func=_cmd_backfill)

    load = sub.add_parser(
        "load", help="load Avro history objects into PostgreSQL market_data (docs/history.md)"
    )
    load.add_argument(
        "source", nargs="+", help="a directory or file of .avro objects, or s3://bucket/prefix"
    )
    load.add_argument(
        "--database", help="postgresql:// URL (default: DATABASE_URL or DATABASE_SECRET_ARN)"
    )
    load.add_argument("--s3-endpoint", help="S3 endpoint URL (a local moto server)")
    load.set_defaults(func=_cmd_load)

    serve = sub.add_parser(
        "serve-rest",
        help="serve klines (and a capture's trades as aggTrades) the Binance REST way, locally",
    )
    serve.add_argument("--klines", type=Path, action="append", required=True, help="kline CSV")
    serve.add_argument(
        "--capture", type=Path, action="append", help="capture file: its trades as aggTrades"
    )
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    serve.add_argument("--duration", type=float, help="seconds to serve (default: until Ctrl-C)")
    serve.set_defaults(func=_cmd_serve_rest)

    db = sub.add_parser("db", help="the history database's schema")
    dsub = db.add_subparsers(dest="db_command", required=True)
    mig = dsub.add_parser("migrate", help="apply the pending schema migrations")
    mig.add_argument("--database", help="postgresql:// URL (default: DATABASE_URL)")
    mig.set_defaults(func=_cmd_migrate)
