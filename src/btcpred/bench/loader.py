"""``btcpred bench loader``: Avro history objects into a real PostgreSQL, the loader's way and
the naive way, in one run.

The objects are made before the clock starts, as the backfill writes them: real 1-minute klines
(one object per UTC day) and aggregate trades built from the capture's real trades (one object
per UTC hour; the 11-minute capture is tiled forward in time, ids shifted, to reach a sample
worth timing). The loader (:func:`btcpred.history.loader.load_object`, exactly what the Lambda
function runs) loads every object on one connection from a process pinned to one CPU, polars on
one thread; PostgreSQL runs on the other CPU. The naive way decodes the same objects with
fastavro and sends one ``INSERT`` per row (one transaction per object), on a sample of the rows
(it is slow); its rate is rows per second all the same. Afterwards the rows are counted: the
bench fails rather than report a rate for rows that did not arrive.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from btcpred.aggtrades import AggTrade
from btcpred.events import Trade
from btcpred.history.records import DataType
from btcpred.klines import Kline

__all__ = [
    "LoaderBench",
    "agg_trades_from_trades",
    "one_polars_thread",
    "pin_postgres",
    "run_loader_bench",
    "tile_agg_trades",
]


@dataclass(frozen=True)
class LoaderBench:
    """The figures of one run."""

    rows: int
    objects: int
    seconds: float
    rows_per_s: int
    kline_rows: int
    kline_objects: int
    kline_rows_per_s: int
    agg_trade_rows: int
    agg_trade_objects: int
    agg_trade_rows_per_s: int
    naive_rows: int
    naive_rows_per_s: int
    ratio_to_naive: float
    postgres: str
    cpus: int

    def as_dict(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict."""
        return asdict(self)


def agg_trades_from_trades(trades: Sequence[Trade]) -> list[AggTrade]:
    """Aggregate consecutive trades of one taker order (same time, price and side, contiguous
    ids), as Binance's ``aggTrades`` does."""
    out: list[AggTrade] = []
    for t in trades:
        ms = t.transact_time_us // 1000
        last = out[-1] if out else None
        if (
            last is not None
            and last.time_ms == ms
            and last.price == t.price
            and last.is_buyer_maker == t.is_buyer_maker
            and last.last_trade_id + 1 == t.trade_id
        ):
            out[-1] = AggTrade(
                last.agg_id,
                last.price,
                last.quantity + t.qty,
                last.first_trade_id,
                t.trade_id,
                ms,
                last.is_buyer_maker,
            )
        else:
            agg_id = out[-1].agg_id + 1 if out else 1
            out.append(
                AggTrade(agg_id, t.price, t.qty, t.trade_id, t.trade_id, ms, t.is_buyer_maker)
            )
    return out


def tile_agg_trades(base: Sequence[AggTrade], count: int) -> list[AggTrade]:
    """``count`` aggregate trades: ``base`` repeated forward in time (by its span plus 1 ms)
    with aggregate and trade ids shifted, so every copy is new and in order."""
    if not base:
        raise ValueError("no aggregate trades to tile")
    span = base[-1].time_ms - base[0].time_ms + 1
    ids = base[-1].agg_id - base[0].agg_id + 1
    trade_ids = base[-1].last_trade_id - base[0].first_trade_id + 1
    out: list[AggTrade] = []
    lap = 0
    while len(out) < count:
        for t in base:
            out.append(
                AggTrade(
                    t.agg_id + lap * ids,
                    t.price,
                    t.quantity,
                    t.first_trade_id + lap * trade_ids,
                    t.last_trade_id + lap * trade_ids,
                    t.time_ms + lap * span,
                    t.is_buyer_maker,
                )
            )
            if len(out) == count:
                break
        lap += 1
    return out


def _objects(klines: Sequence[Kline], trades: Sequence[AggTrade]) -> list[tuple[str, bytes, str]]:
    from btcpred.history.avro import encode
    from btcpred.history.layout import object_key
    from btcpred.history.records import agg_trade_record, kline_record

    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    collected = time.time_ns() // 1_000_000
    for k in klines:
        groups.setdefault(("kline_1m", k.open_time_ms // 86_400_000), []).append(
            kline_record("BTCUSDT", k, "dump", collected)
        )
    for t in trades:
        groups.setdefault(("agg_trade", t.time_ms // 3_600_000), []).append(
            agg_trade_record("BTCUSDT", t, "rest", collected, 20.0)
        )
    out: list[tuple[str, bytes, str]] = []
    for (data_type, _), rows in groups.items():
        kind: DataType = "kline_1m" if data_type == "kline_1m" else "agg_trade"
        key = object_key("BTCUSDT", kind, rows[0]["timestamp"], rows[-1]["timestamp"])
        out.append((key, encode(rows), kind))
    return out


def _naive(conn: Any, objects: Sequence[tuple[str, bytes, str]], limit: int) -> tuple[int, float]:
    """Row-by-row INSERTs of up to ``limit`` rows of each data type; (rows, seconds)."""
    import fastavro

    from btcpred.history.loader import COLUMNS

    sql = (
        f"INSERT INTO naive_market_data ({', '.join(COLUMNS)}) "  # noqa: S608 - fixed names
        f"VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    )
    times = ("timestamp", "collection_time", "close_time")
    done: dict[str, int] = {}
    rows = 0
    started = time.perf_counter()
    with conn.cursor() as cur:
        for _key, data, kind in objects:
            if done.get(kind, 0) >= limit:
                continue
            for record in fastavro.reader(io.BytesIO(data)):
                if done.get(kind, 0) >= limit:
                    break
                row: dict[str, Any] = dict(record)  # type: ignore[arg-type]
                flat = {**row, **row["metadata"]}
                values = [
                    _utc(flat[c]) if c in times and flat[c] is not None else flat.get(c)
                    for c in COLUMNS
                ]
                cur.execute(sql, values)
                done[kind] = done.get(kind, 0) + 1
                rows += 1
            conn.commit()
    return rows, time.perf_counter() - started


def _utc(ms: int) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def run_loader_bench(
    connect: Callable[[], Any],
    klines: Sequence[Kline],
    trades: Sequence[AggTrade],
    *,
    naive_rows: int = 20_000,
    progress: Callable[[str], None] = lambda _: None,
) -> LoaderBench:
    """Load the objects of ``klines`` and ``trades`` into the (empty) database both ways.

    Raises
    ------
    RuntimeError
        The rows in the database after the load are not the rows sent.
    """
    from btcpred.history.loader import load_object
    from btcpred.history.migrations import migrate

    objects = _objects(klines, trades)
    progress(
        f"{len(objects)} objects ({len(klines):,} kline rows, {len(trades):,} aggTrade rows, "
        f"{sum(len(d) for _, d, _ in objects) / 1e6:.1f} MB of Avro)"
    )
    conn = connect()
    try:
        migrate(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT version()")
            version = str(cur.fetchone()[0]).split(" on ")[0]
            cur.execute("CREATE TABLE naive_market_data (LIKE market_data)")
        conn.commit()
        partitions: set[str] = set()
        by_kind: dict[str, tuple[int, int, float]] = {}
        started = time.perf_counter()
        for key, data, kind in objects:
            t0 = time.perf_counter()
            result = load_object(conn, "bench", key, data, partitions=partitions)
            rows, count, seconds = by_kind.get(kind, (0, 0, 0.0))
            by_kind[kind] = (rows + result.inserted, count + 1, seconds + time.perf_counter() - t0)
        total_s = time.perf_counter() - started
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM market_data")
            landed = int(cur.fetchone()[0])
        conn.rollback()
        sent = len(klines) + len(trades)
        if landed != sent:
            raise RuntimeError(f"{landed} rows in market_data after loading {sent}")
        progress(f"loader: {sent:,} rows in {total_s:.2f} s; naive INSERTs next")
        naive, naive_s = _naive(conn, objects, naive_rows)
    finally:
        conn.close()
    k_rows, k_objects, k_s = by_kind.get("kline_1m", (0, 0, 0.0))
    a_rows, a_objects, a_s = by_kind.get("agg_trade", (0, 0, 0.0))
    rate = sent / total_s
    naive_rate = naive / naive_s if naive_s > 0 else 0.0
    return LoaderBench(
        rows=sent,
        objects=len(objects),
        seconds=round(total_s, 3),
        rows_per_s=round(rate),
        kline_rows=k_rows,
        kline_objects=k_objects,
        kline_rows_per_s=round(k_rows / k_s) if k_s else 0,
        agg_trade_rows=a_rows,
        agg_trade_objects=a_objects,
        agg_trade_rows_per_s=round(a_rows / a_s) if a_s else 0,
        naive_rows=naive,
        naive_rows_per_s=round(naive_rate),
        ratio_to_naive=round(rate / naive_rate, 1) if naive_rate else 0.0,
        postgres=version,
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0,
    )


def one_polars_thread() -> None:
    """Run polars on one thread (``POLARS_MAX_THREADS``, read when polars is first imported):
    the target is per core, and a Lambda function of 1 GB has less than one vCPU."""
    os.environ["POLARS_MAX_THREADS"] = "1"


def pin_postgres(data_dir: Path) -> None:
    """Move a running PostgreSQL (its postmaster and every process it has forked) to every CPU
    but the lowest, which :func:`btcpred.bench.pin_to_one_cpu` gives the bench; backends forked
    later inherit the set. Nothing to do on one CPU."""
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        return
    available = os.sched_getaffinity(0)
    cpus = available - {min(available)}
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    targets = {pid}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                targets.add(int(entry.name))
    for target in targets:
        try:
            os.sched_setaffinity(target, cpus)
        except OSError:
            continue
