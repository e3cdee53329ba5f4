"""``btcpred poll``: the fallback poller's loop on a laptop, against any REST server and Redis.

The same :class:`~btcpred.poller.Poller` the Lambda function runs, with the same settings rules
(the flags become the variables ``PollerSettings`` parses), for ``--duration`` seconds; the
metrics are kept in memory and their totals printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

__all__ = ["add_poll_parser"]


def add_poll_parser(sub: Any) -> None:
    """Add ``btcpred poll`` to the ``btcpred`` parser."""
    poll = sub.add_parser(
        "poll",
        help="run the fallback poller: REST tickers -> features:{S}:fallback (docs/poller.md)",
    )
    poll.add_argument(
        "--rest-url",
        default="https://data-api.binance.vision",
        help="Binance REST base URL, e.g. a local `btcpred simulate` server "
        "(default: data-api.binance.vision)",
    )
    poll.add_argument(
        "--klines",
        type=Path,
        help="serve these 1-minute klines (CSV, e.g. fixtures/binance/btcusdt_1m_*.csv.gz) from "
        "a local Binance REST server (btcpred.sim.binance_rest) and poll that instead",
    )
    poll.add_argument(
        "--redis-url", default="redis://localhost:6379/0", help="Redis (default: localhost)"
    )
    poll.add_argument("--symbols", default="BTCUSDT", help="comma-separated (default BTCUSDT)")
    poll.add_argument("--interval", default="5", help="seconds between polls (default 5)")
    poll.add_argument("--ttl", default="30", help="TTL of the fallback key, s (default 30)")
    poll.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    poll.set_defaults(func=_cmd_poll)


def _cmd_poll(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        if args.klines is not None:
            from btcpred.cli_checks import input_file
            from btcpred.klines import read_klines
            from btcpred.sim.binance_rest import BinanceRestServer

            klines = list(read_klines(input_file(args.klines, "klines file")))
            args.rest_url = stack.enter_context(BinanceRestServer(klines)).url
        return _poll(args)


def _poll(args: argparse.Namespace) -> int:
    from btcpred.poller import CountingMetrics, FallbackStore, Poller
    from btcpred.redisconn import connect
    from btcpred.settings import Env, PollerSettings
    from btcpred.settings.poller import REDIS_TIMEOUT_S
    from btcpred.sources.binance_rest import BinanceRestClient

    settings = PollerSettings.from_env(
        {
            Env.BINANCE_REST_URL.value: args.rest_url,
            Env.REDIS_URL.value: args.redis_url,
            Env.SYMBOLS.value: args.symbols,
            Env.POLLER_INTERVAL_SECONDS.value: args.interval,
            Env.FALLBACK_TTL_SECONDS.value: args.ttl,
        }
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    client = connect(settings.redis_url, timeout_s=REDIS_TIMEOUT_S)
    metrics = CountingMetrics()
    poller = Poller(
        BinanceRestClient(
            settings.binance_rest_url, timeout_s=settings.rest_timeout_s, max_attempts=1
        ),
        FallbackStore(client, settings.redis_keys, ttl_s=settings.fallback_ttl_s),
        settings.poller_config(),
        metrics=metrics,
    )
    # the loop stops stop_margin_ms before "the end": put the end that far past --duration
    end = time.monotonic() + args.duration + settings.stop_margin_ms / 1000
    print(
        f"btcpred poll: {settings.binance_rest_url} -> {settings.redis_url} "
        f"{', '.join(settings.symbols)} every {settings.interval_s:g} s for {args.duration:g} s",
        flush=True,
    )
    report = poller.run(lambda: round((end - time.monotonic()) * 1000))
    print(" ".join(f"{k}={v}" for k, v in report.summary().items()))
    for name in sorted(metrics.values):
        values = metrics.values[name]
        print(f"  {name}: n={len(values)} sum={sum(values):g} max={max(values):g}")
    client.close()
    return 0 if report.writes and not report.restricted else 1
