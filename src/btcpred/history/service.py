"""The loader function's core: S3 notifications in, :func:`~btcpred.history.loader.load_object`
per object, SQS batch-item failures out.

The function is fed by an SQS queue that the history bucket's ``ObjectCreated`` notifications
go to. :func:`notifications` reads a Lambda event of either shape (an SQS batch whose bodies are
S3 notifications, or an S3 notification itself) and ignores S3's ``s3:TestEvent``.
:class:`LoaderService` loads each object and sorts what went wrong:

* a rejected object (malformed, cut short, another schema): logged, counted
  (``LoaderRejected``), **not** retried, since the same bytes cannot load later; the object
  stays in S3 and the alarm on ``LoaderRejected`` tells an operator;
* a database or S3 failure: the message is reported as a batch-item failure, so SQS delivers
  it again after its visibility timeout and, after five receives, moves it to the dead-letter
  queue; the connection is dropped and made again on the next object.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from btcpred.history.loader import LoadResult, ObjectRejected, load_object
from btcpred.history.migrations import Connection, migrate

__all__ = ["BatchOutcome", "InvalidEventError", "LoaderService", "ObjectRef", "notifications"]

log = logging.getLogger("btcpred.history")


class InvalidEventError(ValueError):
    """The Lambda event is neither an SQS batch of S3 notifications nor an S3 notification."""


@dataclass(frozen=True)
class ObjectRef:
    """One created object, from a notification."""

    bucket: str
    key: str
    etag: str | None
    size: int | None
    message_id: str | None
    """The SQS message it came in (``None``: a direct S3 event)."""


def _records(notification: Mapping[str, Any], message_id: str | None) -> list[ObjectRef]:
    if notification.get("Event") == "s3:TestEvent":
        return []
    refs: list[ObjectRef] = []
    for record in notification.get("Records", []):
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        try:
            s3 = record["s3"]
            bucket = s3["bucket"]["name"]
            key = urllib.parse.unquote_plus(s3["object"]["key"])
        except (KeyError, TypeError):
            raise InvalidEventError(
                f"an S3 record without bucket and key: {record!r:.200}"
            ) from None
        obj = s3["object"]
        refs.append(ObjectRef(bucket, key, obj.get("eTag"), obj.get("size"), message_id))
    return refs


def notifications(event: Mapping[str, Any]) -> list[tuple[str | None, list[ObjectRef]]]:
    """``(message id, objects)`` for every message of the event, in order.

    Raises
    ------
    InvalidEventError
        Not an event of a supported shape, or an SQS body that is not JSON.
    """
    records = event.get("Records")
    if not isinstance(records, list):
        if event.get("Event") == "s3:TestEvent":
            return []
        raise InvalidEventError("the event has no Records list")
    if records and records[0].get("eventSource") == "aws:sqs":
        out: list[tuple[str | None, list[ObjectRef]]] = []
        for message in records:
            message_id = message.get("messageId")
            try:
                body = json.loads(message["body"])
            except (KeyError, TypeError, ValueError):
                raise InvalidEventError(f"SQS message {message_id} has no JSON body") from None
            out.append((message_id, _records(body, message_id)))
        return out
    return [(None, _records(event, None))]


@dataclass
class BatchOutcome:
    """What one batch did."""

    loaded: list[LoadResult] = field(default_factory=list)
    rejected: list[tuple[ObjectRef, str]] = field(default_factory=list)
    failed: list[tuple[ObjectRef, str]] = field(default_factory=list)
    failed_messages: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows written."""
        return sum(r.inserted for r in self.loaded)

    def response(self) -> dict[str, list[dict[str, str]]]:
        """The SQS ``ReportBatchItemFailures`` answer."""
        return {"batchItemFailures": [{"itemIdentifier": m} for m in self.failed_messages]}


class LoaderService:
    """Loads the objects of notifications into PostgreSQL through one reused connection.

    Parameters
    ----------
    connect
        Makes a new connection (called at first use and after a failure).
    fetch
        ``(bucket, key) -> (bytes, etag)``: the object's content.
    transient
        The exception types that mean "try again later" (the database's and S3's errors).
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        fetch: Callable[[str, str], tuple[bytes, str | None]],
        transient: tuple[type[BaseException], ...],
    ) -> None:
        self._connect = connect
        self._fetch = fetch
        self._transient = transient
        self._conn: Any = None
        self._partitions: set[str] = set()

    def connection(self) -> Connection:
        """The live connection, made (and the schema migrated) when there is none."""
        if self._conn is None or bool(getattr(self._conn, "closed", False)):
            conn = self._connect()
            applied = migrate(conn)
            if applied:
                log.info("schema migrations applied: %s", applied)
            self._conn = conn
        return self._conn  # type: ignore[no-any-return]

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._partitions = set()
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too
                log.debug("closing the broken connection failed", exc_info=True)

    def load(self, ref: ObjectRef) -> LoadResult:
        """Fetch and load one object (raises what :func:`load_object` raises)."""
        data, etag = self._fetch(ref.bucket, ref.key)
        return load_object(
            self.connection(),
            ref.bucket,
            ref.key,
            data,
            etag=etag or ref.etag,
            partitions=self._partitions,
        )

    def handle(self, event: Mapping[str, Any]) -> BatchOutcome:
        """Load every object of the event; see the module docstring for what fails how."""
        outcome = BatchOutcome()
        for message_id, refs in notifications(event):
            for ref in refs:
                started = time.perf_counter()
                try:
                    result = self.load(ref)
                except ObjectRejected as exc:
                    log.error("rejected s3://%s/%s: %s", ref.bucket, ref.key, exc)
                    outcome.rejected.append((ref, str(exc)))
                    continue
                except self._transient as exc:
                    log.error(
                        "could not load s3://%s/%s (will retry): %r", ref.bucket, ref.key, exc
                    )
                    self._drop()
                    outcome.failed.append((ref, repr(exc)))
                    if message_id is not None:
                        outcome.failed_messages.append(message_id)
                    break  # the message comes again whole; its later objects then too
                outcome.loaded.append(result)
                log.info(
                    "s3://%s/%s: %s %d rows (%d new, %d already held) in %.0f ms",
                    ref.bucket,
                    ref.key,
                    "skipped, loaded before:" if result.skipped else "loaded",
                    result.rows,
                    result.inserted,
                    result.duplicates,
                    (time.perf_counter() - started) * 1000,
                )
        return outcome
