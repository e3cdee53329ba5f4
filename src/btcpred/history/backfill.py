"""``btcpred backfill``: history from Binance's REST API or its dump files into Avro objects.

The work is a list of chunks (:mod:`btcpred.history.layout`): a UTC day of 1-minute klines or a
UTC hour of aggregate trades. For each chunk the sink is asked first; a chunk that already has
an object is done and skipped, so an interrupted run resumes where it stopped by running it
again, losing at most the chunk it was fetching. A chunk's rows are written as one immutable
object, atomically, or not at all.

REST (:class:`RestSource`): klines page forward 1,000 bars a request (weight 2, two requests a
day); aggregate trades 1,000 a request (weight 4) by time window, then by ``fromId``. The
client's ``X-MBX-USED-WEIGHT-1M`` is watched: past ``max_weight`` (default 80 % of Binance's
6,000 a minute) the backfill waits for the next minute instead of running into 429s. A 429 is
waited out by its ``Retry-After`` and the chunk fetched again; a 418 (banned), 451 (restricted
location) or a request Binance calls wrong stops the run with the reason. A chunk that has not
finished yet (it ends after the server's time) is not written: a partial object would make the
chunk look done.

Dumps (:class:`DumpSource`): Binance's public files from data.binance.vision, CSV, zipped CSV
or gzip, milliseconds or microseconds, with or without a header line; rows are grouped into
chunks as they come. The fixture files (6-column klines with a header) read the same way.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import gzip
import io
import re
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from btcpred.aggtrades import AggTrade, agg_trade_from_row
from btcpred.history.avro import encode
from btcpred.history.layout import CHUNK_MS, DEFAULT_PREFIX, Chunk, chunks, object_key, parse_key
from btcpred.history.progress import Progress
from btcpred.history.records import DataType, agg_trade_record, kline_record
from btcpred.history.sinks import Sink
from btcpred.klines import Kline, kline_from_row
from btcpred.sources.binance_rest import (
    BinanceRestClient,
    BinanceRestError,
    RateLimitedError,
)

__all__ = [
    "BackfillError",
    "BackfillReport",
    "DumpFormatError",
    "DumpSource",
    "RestSource",
    "backfill",
    "chunk_done",
    "done_chunks",
    "read_dump",
]

_MINUTE: Final = 60_000
_BINANCE_WEIGHT_PER_MINUTE: Final = 6000
_MAX_RATE_LIMIT_WAIT_S: Final = 300.0
_DUMP_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]{2,20})-(?P<kind>aggTrades|1m)-\d{4}-\d{2}(?:-\d{2})?\.(?:csv|zip|csv\.gz)$"
)


class BackfillError(RuntimeError):
    """The backfill cannot go on (banned, restricted, a bad request, the source failing); the
    chunks written so far stay, and running the command again resumes."""


class DumpFormatError(ValueError):
    """A dump file is not what it should be; the message names the file (and line)."""


@dataclass
class BackfillReport:
    """What a backfill did."""

    chunks: int = 0
    written: int = 0
    skipped: int = 0
    """Chunks that already had an object (resumed past)."""
    unfinished: int = 0
    """Chunks not finished at the server's time (not written)."""
    empty: int = 0
    """Chunks with no rows at the source."""
    rows: int = 0
    requests: int = 0
    weight_waits_s: float = 0.0
    keys: list[str] = field(default_factory=list)


def done_chunks(sink: Sink, symbol: str, data_type: DataType, prefix: str) -> set[int]:
    """The start times of the chunks of ``symbol``/``data_type`` that have an object."""
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    size = CHUNK_MS[data_type]
    starts: set[int] = set()
    for key in sink.keys(f"{head}symbol={symbol}/data_type={data_type}/"):
        try:
            parsed = parse_key(key)
        except ValueError:
            continue
        starts.add(parsed.first_ms - parsed.first_ms % size)
    return starts


def chunk_done(done: set[int], chunk: Chunk) -> bool:
    """Whether the chunk has an object."""
    return chunk.start_ms in done


def _write(
    sink: Sink,
    chunk: Chunk,
    records: Sequence[dict[str, Any]],
    prefix: str,
    report: BackfillReport,
) -> None:
    key = object_key(
        chunk.symbol, chunk.data_type, records[0]["timestamp"], records[-1]["timestamp"], prefix
    )
    if sink.put(key, encode(records)):
        report.written += 1
        report.keys.append(key)
    else:
        report.skipped += 1


class ChunkSource(Protocol):
    """Where one chunk's rows come from."""

    def fetch(self, chunk: Chunk) -> list[dict[str, Any]]:
        """The chunk's rows as history records, in time order."""
        ...


class RestSource:
    """Chunks from Binance's REST API, request-weight aware (see the module docstring)."""

    def __init__(
        self,
        client: BinanceRestClient,
        *,
        max_weight: int = _BINANCE_WEIGHT_PER_MINUTE * 8 // 10,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        sleep: Callable[[float], None] = time.sleep,
        note: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.client = client
        self.max_weight = max_weight
        self._clock_ms = clock_ms
        self._sleep = sleep
        self._note = note
        self.requests = 0
        self.waited_s = 0.0

    def _pace(self) -> None:
        used = self.client.used_weight_1m
        if used is not None and used >= self.max_weight:
            now = self._clock_ms()
            wait = ((now // _MINUTE + 1) * _MINUTE - now) / 1000.0 + 0.05
            self._note(f"request weight {used} >= {self.max_weight}: waiting {wait:.1f}s")
            self._sleep(wait)
            self.waited_s += wait
            self.client.used_weight_1m = None

    def _call(self, call: Callable[[], Any]) -> Any:
        while True:
            self._pace()
            self.requests += 1
            try:
                return call()
            except RateLimitedError as exc:
                if exc.status == 418:
                    raise BackfillError(
                        f"Binance has banned this IP ({exc}); Retry-After "
                        f"{exc.retry_after_s}s. Run again after that."
                    ) from None
                wait = exc.retry_after_s if exc.retry_after_s is not None else 60.0
                if wait > _MAX_RATE_LIMIT_WAIT_S:
                    raise BackfillError(f"rate limited for {wait:.0f}s ({exc})") from None
                self._note(f"rate limited (HTTP 429): waiting {wait:.0f}s as Retry-After asks")
                self._sleep(wait)
                self.waited_s += wait
            except BinanceRestError as exc:
                raise BackfillError(
                    f"{type(exc).__name__}: {exc} (after {exc.attempts} attempts)"
                ) from None

    def fetch(self, chunk: Chunk) -> list[dict[str, Any]]:
        """The chunk's klines or aggregate trades, as history records."""
        if chunk.data_type == "kline_1m":
            return self._klines(chunk)
        return self._agg_trades(chunk)

    def _klines(self, chunk: Chunk) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        cursor = chunk.start_ms
        while cursor < chunk.end_ms:
            sent = time.perf_counter()
            page: list[Kline] = self._call(
                functools.partial(
                    self.client.klines,
                    chunk.symbol,
                    "1m",
                    start_time_ms=cursor,
                    end_time_ms=chunk.end_ms - 1,
                    limit=1000,
                )
            )
            latency = (time.perf_counter() - sent) * 1000.0
            collected = self._clock_ms()
            page = [k for k in page if chunk.start_ms <= k.open_time_ms < chunk.end_ms]
            rows += [kline_record(chunk.symbol, k, "rest", collected, latency) for k in page]
            if len(page) < 1000:
                break
            cursor = page[-1].open_time_ms + _MINUTE
        return rows

    def _agg_trades(self, chunk: Chunk) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        last_id: int | None = None
        while True:
            sent = time.perf_counter()
            if last_id is None:
                page: list[AggTrade] = self._call(
                    lambda: self.client.agg_trades(
                        chunk.symbol,
                        start_time_ms=chunk.start_ms,
                        end_time_ms=chunk.end_ms - 1,
                        limit=1000,
                    )
                )
            else:
                page = self._call(
                    functools.partial(
                        self.client.agg_trades, chunk.symbol, from_id=last_id + 1, limit=1000
                    )
                )
            latency = (time.perf_counter() - sent) * 1000.0
            collected = self._clock_ms()
            inside = [t for t in page if chunk.start_ms <= t.time_ms < chunk.end_ms]
            rows += [agg_trade_record(chunk.symbol, t, "rest", collected, latency) for t in inside]
            if len(page) < 1000 or len(inside) < len(page) or not page:
                return rows
            last_id = page[-1].agg_id


def backfill(
    source: ChunkSource,
    sink: Sink,
    symbol: str,
    data_type: DataType,
    start_ms: int,
    end_ms: int,
    *,
    server_time_ms: int,
    prefix: str = DEFAULT_PREFIX,
    progress: Progress | None = None,
) -> BackfillReport:
    """Fetch every chunk of ``[start_ms, end_ms)`` (widened to whole chunks) that the sink does
    not hold yet, and write each as one object.

    Raises
    ------
    BackfillError
        The source cannot go on; the chunks written so far stay.
    """
    plan = chunks(symbol, data_type, start_ms, end_ms)
    report = BackfillReport(chunks=len(plan))
    done = done_chunks(sink, symbol, data_type, prefix)
    bar = progress or Progress(len(plan))
    for chunk in plan:
        if chunk_done(done, chunk):
            report.skipped += 1
            bar.advance(skipped=True)
            continue
        if chunk.end_ms > server_time_ms:
            report.unfinished += 1
            bar.note(f"{chunk.label()}: not finished at the server's time; not written")
            bar.advance(skipped=True)
            continue
        records = source.fetch(chunk)
        if records:
            _write(sink, chunk, records, prefix, report)
            report.rows += len(records)
        else:
            report.empty += 1
        bar.advance(len(records))
    if isinstance(source, RestSource):
        report.requests, report.weight_waits_s = source.requests, source.waited_s
    return report


def _dump_kind(path: Path) -> tuple[str | None, DataType | None]:
    match = _DUMP_NAME.match(path.name)
    if match is None:
        return None, None
    return match["symbol"], "agg_trade" if match["kind"] == "aggTrades" else "kline_1m"


def _text_members(path: Path) -> Iterator[tuple[str, io.TextIOBase]]:
    if path.suffix == ".zip":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise DumpFormatError(f"{path}: not a zip file ({exc})") from None
        with archive:
            names = [n for n in archive.namelist() if n.endswith(".csv")]
            if not names:
                raise DumpFormatError(f"{path}: the zip holds no .csv file")
            for name in sorted(names):
                with archive.open(name) as raw:
                    yield f"{path}:{name}", io.TextIOWrapper(raw, "ascii", "replace", newline="")
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as raw:
        yield str(path), io.TextIOWrapper(raw, "ascii", "replace", newline="")


def read_dump(path: Path, data_type: DataType) -> Iterator[Kline | AggTrade]:
    """The klines or aggregate trades of one dump file, in file order.

    A first line that is not numeric is a header and skipped; 6-column klines (the project's
    data sets) and Binance's 12-column form are both read.

    Raises
    ------
    DumpFormatError
        Not a zip or gzip file when it says so, a malformed row, rows out of order, no rows.
    """
    count = 0
    previous = -1
    try:
        for where, text in _text_members(path):
            for line_no, row in enumerate(csv.reader(text), 1):
                if not row or not "".join(row).strip():
                    continue
                if line_no == 1 and not row[0].strip().lstrip("-").isdigit():
                    continue  # a header
                try:
                    item: Kline | AggTrade = (
                        kline_from_row(row) if data_type == "kline_1m" else agg_trade_from_row(row)
                    )
                except ValueError as exc:
                    raise DumpFormatError(f"{where}:{line_no}: {exc}") from None
                order = item.open_time_ms if isinstance(item, Kline) else item.agg_id
                if order <= previous:
                    raise DumpFormatError(f"{where}:{line_no}: not after the previous row")
                previous, count = order, count + 1
                yield item
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise DumpFormatError(f"{path}: cannot read it ({exc})") from None
    if count == 0:
        raise DumpFormatError(f"{path}: no rows")


class DumpSource:
    """Chunks from dump files: every row of the files, grouped by chunk as they come."""

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        symbol: str | None = None,
        data_type: DataType | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.files: list[tuple[Path, str, DataType]] = []
        for path in _expand(paths):
            named_symbol, named_type = _dump_kind(path)
            kind = data_type or named_type
            sym = symbol or named_symbol
            if kind is None or sym is None:
                raise DumpFormatError(
                    f"{path}: cannot tell the symbol and data type from the name "
                    "(BTCUSDT-1m-2025-05-20.zip, BTCUSDT-aggTrades-2025-05-20.zip): "
                    "pass --symbol and --data-type"
                )
            self.files.append((path, sym, kind))
        if not self.files:
            raise DumpFormatError(f"no dump files in {', '.join(map(str, paths))}")
        self._clock_ms = clock_ms

    def chunks(self) -> Iterator[tuple[Chunk, list[dict[str, Any]]]]:
        """(chunk, records) for every chunk the files hold rows of, in file order."""
        for path, symbol, data_type in self.files:
            size = CHUNK_MS[data_type]
            current: Chunk | None = None
            records: list[dict[str, Any]] = []
            collected = self._clock_ms()
            for item in read_dump(path, data_type):
                at = item.open_time_ms if isinstance(item, Kline) else item.time_ms
                start = at - at % size
                if current is None or start != current.start_ms:
                    if current is not None and records:
                        yield current, records
                    current, records = Chunk(symbol, data_type, start, start + size), []
                records.append(
                    kline_record(symbol, item, "dump", collected)
                    if isinstance(item, Kline)
                    else agg_trade_record(symbol, item, "dump", collected)
                )
            if current is not None and records:
                yield current, records


def _expand(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix in (".csv", ".zip", ".gz")
            )
        elif path.is_file():
            out.append(path)
        else:
            raise DumpFormatError(f"{path}: no such file or directory")
    return out


def backfill_dumps(
    source: DumpSource,
    sink: Sink,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    prefix: str = DEFAULT_PREFIX,
    progress: Progress | None = None,
) -> BackfillReport:
    """Write every chunk of the dump files (within ``[start_ms, end_ms)`` when given) that the
    sink does not hold yet.

    Raises
    ------
    DumpFormatError
        A file is malformed; the chunks before the bad row are written.
    """
    report = BackfillReport()
    done: dict[tuple[str, DataType], set[int]] = {}
    bar = progress or Progress(0)
    for chunk, records in source.chunks():
        if (start_ms is not None and chunk.end_ms <= start_ms) or (
            end_ms is not None and chunk.start_ms >= end_ms
        ):
            continue
        lo, hi = start_ms or 0, end_ms if end_ms is not None else 2**62
        records = [r for r in records if lo <= r["timestamp"] < hi]
        if not records:
            continue
        report.chunks += 1
        pair = (chunk.symbol, chunk.data_type)
        if pair not in done:
            done[pair] = done_chunks(sink, chunk.symbol, chunk.data_type, prefix)
        if chunk_done(done[pair], chunk):
            report.skipped += 1
            bar.advance(skipped=True)
            continue
        _write(sink, chunk, records, prefix, report)
        report.rows += len(records)
        bar.advance(len(records))
    return report


def parse_time(text: str) -> int:
    """``2025-05-20``, ``2025-05-20T13:00``, ``2025-05-20T13:00:00Z`` or epoch ms → ms (UTC).

    Raises
    ------
    ValueError
        Not a date, a date-time or an integer.
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a UTC date (2025-05-20), date-time or epoch ms"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)
