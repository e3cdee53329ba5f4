"""``btcpred ingest`` and ``btcpred ingest-health``: the container's entry points.

The CLI passes ``os.environ`` in; this module builds the :class:`~btcpred.ingest.service.Ingestor`
from :class:`~btcpred.settings.ingest.IngestSettings`, installs the SIGTERM/SIGINT handlers
(close the socket, flush within ``INGEST_FLUSH_DEADLINE_S``, exit 0), logs JSON lines on stderr
and writes EMF metrics on stdout.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from btcpred.ingest.health import HealthBounds, check_health, read_heartbeat
from btcpred.ingest.service import Ingestor
from btcpred.ingest.telemetry import stdout_metrics
from btcpred.settings.ingest import DEFAULT_HEARTBEAT_PATH, IngestSettings, StreamFormat
from btcpred.settings.parse import Env
from btcpred.sources.binance_rest import BinanceRestClient

__all__ = ["JsonFormatter", "health", "ingest"]


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if level.upper() in logging.getLevelNamesMapping() else "INFO")


def ingest(env: Mapping[str, str], *, stream_format: StreamFormat | None = None) -> int:
    """Run the ingestor until SIGTERM/SIGINT; the exit status (0 after a clean flush).

    Raises
    ------
    ConfigError
        The environment is incomplete or invalid (before anything connects).
    CredentialsError
        The API key secret cannot be read.
    """
    settings = IngestSettings.from_env(env, stream_format=stream_format)
    _setup_logging(env.get("LOG_LEVEL", "INFO"))
    from btcpred.ingest import aws

    api_key = settings.api_key
    if settings.api_key_secret_arn and settings.stream_format is StreamFormat.SBE:
        api_key = aws.read_api_key(settings.api_key_secret_arn)
    rest = BinanceRestClient(settings.rest_url, timeout_s=5.0, max_attempts=2)
    ingestor = Ingestor(
        settings,
        aws.kinesis_client(),
        api_key=api_key,
        depth_fetch=rest.depth_snapshot,
        metrics_out=stdout_metrics(),
    )
    logging.getLogger("btcpred.ingest").info(
        "ingesting %s from %s (%s) into Kinesis stream %s",
        ",".join(settings.symbols),
        settings.stream_url,
        settings.stream_format.value,
        settings.stream_name,
    )
    asyncio.run(_run(ingestor))
    return 0  # after SIGTERM either way: anything not sent was logged with its ids


async def _run(ingestor: Ingestor) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ingestor.request_stop)
    return await ingestor.run()


def health(env: Mapping[str, str]) -> tuple[int, str]:
    """The container health check: (exit status, one line saying why)."""
    path = Path(env.get(Env.INGEST_HEARTBEAT_PATH.value, DEFAULT_HEARTBEAT_PATH))
    try:
        beat = read_heartbeat(path)
    except (OSError, ValueError) as exc:
        return 1, f"unhealthy: no readable heartbeat at {path} ({exc})"
    problem = check_health(beat, time.time_ns(), HealthBounds())
    if problem is not None:
        return 1, f"unhealthy: {problem}"
    return 0, f"healthy: buffer {beat.buffer_fill:.0%}, connected={beat.connected}"
