"""Settings of the ingestor (``btcpred ingest``, the Fargate container): docs/ingestor.md."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from btcpred.settings import parse as p
from btcpred.settings.parse import ConfigError, Env

__all__ = ["DEFAULT_HEARTBEAT_PATH", "IngestSettings", "StreamFormat"]


class StreamFormat(enum.StrEnum):
    """Which Binance stream to read: the binary SBE one (needs a key) or the public JSON one."""

    SBE = "sbe"
    JSON = "json"


DEFAULT_HEARTBEAT_PATH = "/tmp/btcpred-ingest.heartbeat"  # noqa: S108 - the container's own /tmp
"""Where ``btcpred ingest`` writes its heartbeat and ``btcpred ingest-health`` reads it."""

DEFAULT_URLS = {
    StreamFormat.SBE: "wss://stream-sbe.binance.com:9443",
    StreamFormat.JSON: "wss://stream.binance.com:9443",
}


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """Everything ``btcpred ingest`` reads from its environment, checked at start.

    ``api_key`` / ``api_key_secret_arn``: the SBE stream needs an API key in ``X-MBX-APIKEY``,
    given directly (``BINANCE_API_KEY``) or as a Secrets Manager secret holding the bare key
    (``BINANCE_API_KEY_SECRET_ARN``); the JSON stream needs none. ``flush_deadline_s`` is what
    SIGTERM leaves for the flush (keep it below the container's stop timeout).
    """

    stream_name: str
    symbols: tuple[str, ...] = ("BTCUSDT",)
    stream_format: StreamFormat = StreamFormat.SBE
    stream_url: str = DEFAULT_URLS[StreamFormat.SBE]
    rest_url: str = "https://api.binance.com"
    api_key: str | None = field(default=None, repr=False)
    api_key_secret_arn: str | None = None
    flush_window_s: float = 0.1
    buffer_bytes: int = 64 * 1024 * 1024
    flush_deadline_s: float = 20.0
    heartbeat_path: str = DEFAULT_HEARTBEAT_PATH
    connection_lifetime_s: float = 86_400.0
    """Binance's limit; the ingestor rotates 30-60 minutes before it (scaled for short ones)."""
    dead_after_s: float = 30.0
    data_timeout_s: float = 30.0
    metrics_interval_s: float = 10.0
    depth_snapshot_limit: int = 5000
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    refused_retry_s: float = 60.0
    max_attempts_per_window: int = 60
    attempt_window_s: float = 300.0
    rotation_timeout_s: float = 30.0
    healthy_after_s: float = 5.0

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, stream_format: StreamFormat | None = None
    ) -> IngestSettings:
        """Parse the ingestor's variables; ``stream_format`` (``--format``) beats the variable.

        Raises
        ------
        ConfigError
            A variable is missing or invalid, or the SBE stream is chosen without any key.
        """
        name = p.read(env, Env.KINESIS_STREAM_NAME, "", _stream_name)
        if not name:
            raise ConfigError(f"{Env.KINESIS_STREAM_NAME.value} is not set: the stream to put to")
        fmt = stream_format or p.read(
            env, Env.BINANCE_STREAM_FORMAT, StreamFormat.SBE, StreamFormat
        )
        d = cls(stream_name=name)
        settings = cls(
            stream_name=name,
            symbols=p.read(env, Env.SYMBOLS, d.symbols, p.symbols),
            stream_format=fmt,
            stream_url=p.read(env, Env.BINANCE_STREAM_URL, DEFAULT_URLS[fmt], p.ws_url),
            rest_url=p.read(env, Env.BINANCE_REST_URL, d.rest_url, p.endpoint),
            api_key=p.read(env, Env.BINANCE_API_KEY, None, _api_key),
            api_key_secret_arn=p.read(env, Env.BINANCE_API_KEY_SECRET_ARN, None, p.secret_arn),
            flush_window_s=p.read(env, Env.INGEST_FLUSH_WINDOW_MS, 100, _window_ms) / 1000,
            buffer_bytes=p.read(env, Env.INGEST_BUFFER_BYTES, d.buffer_bytes, _buffer_bytes),
            flush_deadline_s=p.read(
                env, Env.INGEST_FLUSH_DEADLINE_S, d.flush_deadline_s, p.positive_float
            ),
            heartbeat_path=p.read(env, Env.INGEST_HEARTBEAT_PATH, d.heartbeat_path, p.text),
            connection_lifetime_s=p.read(
                env, Env.INGEST_CONNECTION_LIFETIME_S, d.connection_lifetime_s, p.positive_float
            ),
            dead_after_s=p.read(env, Env.INGEST_DEAD_AFTER_S, d.dead_after_s, p.positive_float),
            data_timeout_s=p.read(
                env, Env.INGEST_DATA_TIMEOUT_S, d.data_timeout_s, p.positive_float
            ),
            metrics_interval_s=p.read(
                env, Env.INGEST_METRICS_INTERVAL_S, d.metrics_interval_s, p.positive_float
            ),
        )
        if settings.api_key and settings.api_key_secret_arn:
            raise ConfigError(
                f"{Env.BINANCE_API_KEY.value} and {Env.BINANCE_API_KEY_SECRET_ARN.value} are both "
                "set: give the key in one place only"
            )
        if fmt is StreamFormat.SBE and not (settings.api_key or settings.api_key_secret_arn):
            raise ConfigError(
                f"the SBE stream needs an API key: set {Env.BINANCE_API_KEY.value} or "
                f"{Env.BINANCE_API_KEY_SECRET_ARN.value} (or read the public JSON stream with "
                "--format json)"
            )
        return settings

    def with_(self, **changes: object) -> IngestSettings:
        """A copy with some fields changed (tests and the benchmark)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def stream_names(self) -> list[str]:
        """The streams of every symbol, in the format's names."""
        names: list[str] = []
        for symbol in self.symbols:
            s = symbol.lower()
            if self.stream_format is StreamFormat.SBE:
                names += [f"{s}@trade", f"{s}@bestBidAsk", f"{s}@depth"]
            else:
                names += [f"{s}@trade", f"{s}@bookTicker", f"{s}@depth@100ms"]
        return names

    def connect_url(self) -> str:
        """The combined-stream URL."""
        return f"{self.stream_url}/stream?streams={'/'.join(self.stream_names())}"


def _stream_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", text):
        raise ValueError("must be a Kinesis stream name (1-128 of A-Z a-z 0-9 _ . -)")
    return text


def _api_key(text: str) -> str:
    key = text.strip()
    if not key or any(c.isspace() for c in key) or len(key) > 256:
        raise ValueError("must be one API key without spaces")
    return key


def _window_ms(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise ValueError("must be 1..10000 milliseconds")
    return value


def _buffer_bytes(text: str) -> int:
    value = int(text)
    if not 1 << 20 <= value <= 4 << 30:
        raise ValueError("must be 1 MiB..4 GiB")
    return value
