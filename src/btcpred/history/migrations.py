"""The history database's schema, as numbered migrations run once each under an advisory lock.

:func:`migrate` takes a transaction-level advisory lock, creates ``schema_migrations`` if it is
missing, and applies, in order and in the same transaction, every migration whose number is
not recorded there. Each migration's SQL is idempotent as well (``IF NOT EXISTS``), so a
database made by hand or half-migrated by an older tool converges. Two processes migrating at
once serialise on the lock: the second finds nothing left to do.

``market_data`` is the seed's table, ``PARTITION BY RANGE (timestamp)`` with a BRIN index on
``timestamp`` (range reads for training at almost no cost to loading) and no unique index: a
primary key over (symbol, data_type, timestamp, trade id) cost 40 % of the loading rate here,
and the loader keeps rows unique by its own protocol (:mod:`btcpred.history.loader`). One
partition per
UTC month (``market_data_y2025m05``) created on demand by :func:`ensure_partitions`; there is no
default partition, so a row whose month has no partition fails loudly instead of landing
somewhere a later partition would have to be carved out of.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol

__all__ = [
    "MIGRATIONS",
    "Connection",
    "ensure_partitions",
    "migrate",
    "month_partitions",
    "partition_name",
]

_MIGRATE_LOCK: Final = 0x6274_6370_7201  # "btcpr" 1: schema migrations
_PARTITION_LOCK: Final = 0x6274_6370_7202  # "btcpr" 2: partition creation


class Connection(Protocol):
    """The part of a DB-API connection (psycopg2's) this package uses."""

    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


MIGRATIONS: Final[Sequence[tuple[int, str, str]]] = (
    (
        1,
        "market_data, partitioned by month of timestamp",
        """
        CREATE TABLE IF NOT EXISTS market_data (
            symbol          text             NOT NULL,
            timestamp       timestamptz      NOT NULL,
            price           double precision NOT NULL CHECK (price > 0),
            volume          double precision NOT NULL CHECK (volume >= 0),
            bid_price       double precision,
            ask_price       double precision,
            source          text             NOT NULL,
            data_type       text             NOT NULL,
            collection_time timestamptz      NOT NULL,
            api_latency_ms  double precision,
            open_price      double precision,
            high_price      double precision,
            low_price       double precision,
            close_time      timestamptz,
            quote_volume    double precision,
            trade_count     bigint,
            trade_id        bigint,
            first_trade_id  bigint,
            last_trade_id   bigint,
            is_buyer_maker  boolean
        ) PARTITION BY RANGE (timestamp);
        CREATE INDEX IF NOT EXISTS market_data_timestamp_brin
            ON market_data USING brin (timestamp) WITH (autosummarize = on)
        """,
    ),
    (
        2,
        "history_objects: the objects loaded, one row each (exactly-once loading)",
        """
        CREATE TABLE IF NOT EXISTS history_objects (
            bucket      text        NOT NULL,
            key         text        NOT NULL,
            etag        text,
            symbol      text,
            data_type   text,
            rows        bigint      NOT NULL,
            inserted    bigint      NOT NULL,
            duplicates  bigint      NOT NULL,
            first_ts    timestamptz,
            last_ts     timestamptz,
            loaded_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (bucket, key)
        );
        CREATE INDEX IF NOT EXISTS history_objects_span
            ON history_objects (symbol, data_type, first_ts, last_ts)
        """,
    ),
)
"""(version, description, SQL), in order. Never edit a released one: add the next."""


def migrate(conn: Connection) -> list[int]:
    """Apply the pending migrations; return the versions applied (``[]``: up to date)."""
    cur = conn.cursor()
    try:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        applied: list[int] = []
        for version, description, sql in MIGRATIONS:
            if version in done:
                continue
            cur.execute(sql)
            cur.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                (version, description),
            )
            applied.append(version)
        conn.commit()
        return applied
    except BaseException:
        conn.rollback()
        raise
    finally:
        cur.close()


def partition_name(month: dt.date) -> str:
    """``market_data_y2025m05`` for any day of May 2025."""
    return f"market_data_y{month.year:04d}m{month.month:02d}"


def month_partitions(first_ms: int, last_ms: int) -> list[dt.date]:
    """The first days of the UTC months from ``first_ms``'s to ``last_ms``'s."""
    start = dt.datetime.fromtimestamp(first_ms / 1000, dt.UTC).date().replace(day=1)
    end = dt.datetime.fromtimestamp(last_ms / 1000, dt.UTC).date().replace(day=1)
    months = [start]
    while months[-1] < end:
        m = months[-1]
        months.append(m.replace(year=m.year + m.month // 12, month=m.month % 12 + 1))
    return months


def ensure_partitions(conn: Connection, months: Iterable[dt.date]) -> list[str]:
    """Create the monthly partitions that are missing (in their own transaction, under an
    advisory lock); return the names created."""
    cur = conn.cursor()
    try:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
        created: list[str] = []
        for month in months:
            name = partition_name(month)
            cur.execute("SELECT to_regclass(%s)", (name,))
            if cur.fetchone()[0] is not None:
                continue
            following = month.replace(
                year=month.year + month.month // 12, month=month.month % 12 + 1
            )
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF market_data "  # noqa: S608
                "FOR VALUES FROM (%s) TO (%s)",
                (f"{month.isoformat()} 00:00:00+00", f"{following.isoformat()} 00:00:00+00"),
            )
            created.append(name)
        conn.commit()
        return created
    except BaseException:
        conn.rollback()
        raise
    finally:
        cur.close()
