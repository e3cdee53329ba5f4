"""``btcpred simulate``: serve a recorded capture as a local Binance exchange (an edge module).

The simulator itself is :class:`btcpred.sim.exchange.ExchangeSimulator`; this module parses the
arguments, prints the URLs, waits for Ctrl-C or SIGTERM and prints what was published.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from btcpred.cli_checks import CliError

if TYPE_CHECKING:
    from btcpred.sim.exchange import ExchangeSimulator
    from btcpred.sources.capture import Capture

__all__ = ["add_simulate_parser"]

LOOPBACK = "127.0.0.1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {text}")
    return value


def _summary(sim: ExchangeSimulator) -> str:
    ledger = sim.published
    trades = sum(len(ledger.trade_ids(s)) for s in sim.symbols)
    diffs = sum(len(ledger.depth_ranges(s)) for s in sim.symbols)
    return (
        f"published {ledger.events_published:,} events ({trades:,} trades, {diffs:,} depth "
        f"diffs) to {len(sim.connections)} connections ({sim.connection_attempts} handshakes)"
    )


def _serve(sim: ExchangeSimulator, looping: bool, stop: threading.Event) -> None:
    announced = looping
    try:
        while not stop.wait(0.2):
            if not announced and sim.wait_finished(0):
                print("every event published; still serving (Ctrl-C to stop)", flush=True)
                announced = True
    except KeyboardInterrupt:
        pass


def _start(capture: Capture, args: argparse.Namespace, host: str) -> ExchangeSimulator:
    from btcpred.sim.exchange import ExchangeSimulator
    from btcpred.sim.services import ServiceError

    sim = ExchangeSimulator(
        capture.events,
        speed=args.speed,
        loop=args.loop,
        require_api_key=not args.no_api_key,
        lifetime_s=args.lifetime,
        ping_interval_s=args.ping_interval,
        host=host,
        port=args.port,
        seed=args.seed,
    )
    try:
        return sim.start()
    except ServiceError as exc:
        raise CliError(str(exc)) from None


def _cmd_simulate(
    args: argparse.Namespace, load: Callable[[Sequence[Path] | None], Capture]
) -> int:
    # Loopback unless --host says otherwise: nothing but an explicit flag exposes it.
    host = LOOPBACK if args.host is None else args.host
    if not _is_loopback(host):
        print(f"warning: serving on {host}, reachable from other machines", file=sys.stderr)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        sim = _start(load(args.capture), args, host)
        try:
            print(
                f"btcpred simulate: {len(sim.symbols)} symbol(s) at {args.speed:g}x"
                f"{' (looping)' if args.loop else ''}; SBE {sim.url}  JSON {sim.json_url}  "
                f"REST {sim.rest_url}",
                flush=True,
            )
            _serve(sim, args.loop, stop)
        finally:
            sim.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(_summary(sim), flush=True)
    return 0


def add_simulate_parser(sub: Any, load: Callable[[Sequence[Path] | None], Capture]) -> None:
    """Add ``simulate`` to the ``btcpred`` subcommands; ``load`` reads ``--capture`` files."""
    cmd = sub.add_parser("simulate", help="serve the capture as a local Binance exchange")
    cmd.add_argument(
        "--capture", type=Path, action="append", help="capture file (repeatable; default: fixtures)"
    )
    cmd.add_argument("--host", help=f"address to bind (default {LOOPBACK}; a test tool)")
    cmd.add_argument("--port", type=_port, default=0, help="port (default 0: a free one)")
    cmd.add_argument(
        "--speed", type=_non_negative, default=1.0, help="times faster than recorded; 0 = no pauses"
    )
    cmd.add_argument("--loop", action="store_true", help="replay forever, ids shifted per lap")
    cmd.add_argument(
        "--no-api-key", action="store_true", help="SBE paths accept connections without a key"
    )
    cmd.add_argument(
        "--lifetime", type=_positive, default=86_400.0, help="connection lifetime, s (86400)"
    )
    cmd.add_argument(
        "--ping-interval", type=_positive, default=20.0, help="seconds between pings (20)"
    )
    cmd.add_argument("--seed", type=int, default=0, help="seed of the pings and faults (0)")
    cmd.set_defaults(func=lambda args: _cmd_simulate(args, load))
