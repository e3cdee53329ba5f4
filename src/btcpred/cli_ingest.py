"""``btcpred ingest`` and ``btcpred ingest-health`` (an edge: the container's entry point reads
the environment here and passes it in)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["add_ingest_parsers"]


def add_ingest_parsers(sub: Any) -> None:
    """Add the ingestor's commands to the ``btcpred`` parser."""
    ingest = sub.add_parser(
        "ingest",
        help="stream Binance market data into Kinesis (the Fargate container's entry point)",
        description="Configured by environment variables (docs/ingestor.md): KINESIS_STREAM_NAME, "
        "SYMBOLS, BINANCE_STREAM_URL, BINANCE_API_KEY or BINANCE_API_KEY_SECRET_ARN, "
        "AWS_ENDPOINT_URL_KINESIS, ...",
    )
    ingest.add_argument(
        "--format",
        choices=("sbe", "json"),
        help="sbe: the binary stream (needs an API key); json: the public JSON stream "
        "(default: BINANCE_STREAM_FORMAT, else sbe)",
    )
    ingest.set_defaults(func=_cmd_ingest)
    health = sub.add_parser(
        "ingest-health", help="the container health check: reads the ingestor's heartbeat file"
    )
    health.set_defaults(func=_cmd_health)


def _cmd_ingest(args: argparse.Namespace) -> int:
    from btcpred.ingest.main import ingest
    from btcpred.settings.ingest import StreamFormat

    fmt = StreamFormat(args.format) if args.format else None
    return ingest(os.environ, stream_format=fmt)


def _cmd_health(args: argparse.Namespace) -> int:
    from btcpred.ingest.main import health

    code, line = health(os.environ)
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code
