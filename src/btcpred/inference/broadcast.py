"""WebSocket broadcast: every tick's PredictionResult to every connection of its symbol, bounded.

The bounds, whatever the clients do:

* **Time.** A tick waits at most ``budget_ms`` for its posts, all symbols together (the
  service passes one deadline to every symbol's broadcast of the tick).
* **Backlog.** A connection has at most one post in flight and at most one message waiting.
  A new message for a connection whose earlier one has not started *supersedes* it (the older
  one is dropped, never sent): a slow client gets the newest prediction, not a queue of old
  ones. So the work outstanding is at most one message per connection, however long a client
  stays slow.
* **Threads.** At most ``max_concurrency`` workers post at once; a post that misses the
  budget finishes in the background (boto3's timeouts end it: 1 s connect, 1 s read, no
  retries in the Lambda).
* **Invocations.** :meth:`Broadcaster.finish` (called when the invocation ends) drops every
  waiting message, waits up to ``finish_timeout_ms`` for the posts in flight and stops the
  workers, so nothing queued or running survives into the next warm invocation. The next
  broadcast starts fresh workers.

Connections that answer 410 Gone are removed from the registry (also when the 410 arrives after
the budget: at the next broadcast). If the registry cannot be read, the last list read in this
invocation is used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from btcpred.inference.connections import ConnectionRegistry
from btcpred.inference.posting import GoneError, ManagementApiPoster, Poster

__all__ = ["BroadcastReport", "Broadcaster", "GoneError", "ManagementApiPoster", "Poster"]


@dataclass(frozen=True, slots=True)
class BroadcastReport:
    """One broadcast: its connections by outcome, and the time it took the tick.

    ``sent + gone + failed + timed_out == connections``. ``timed_out`` messages were not
    delivered within the budget: they are in flight or waiting, and are sent later unless the
    next message for the connection supersedes them first. ``superseded`` counts older
    messages (of earlier broadcasts) that this one replaced before they were sent.
    """

    sent: int = 0
    gone: int = 0
    failed: int = 0
    timed_out: int = 0
    superseded: int = 0
    ms: float = 0.0


Outcome = Literal["sent", "gone", "failed", "superseded", "dropped"]


class _Batch:
    """The posts of one broadcast still without an outcome (waited on in O(1), not a scan)."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


class _Post:
    __slots__ = ("_outcome", "batch", "connection_id", "data")

    def __init__(self, connection_id: str, data: bytes, batch: _Batch) -> None:
        self.connection_id = connection_id
        self.data = data
        self.batch = batch
        self._outcome: Outcome | None = None

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    @outcome.setter
    def outcome(self, value: Outcome) -> None:  # under the broadcaster's lock
        if self._outcome is None:
            self.batch.left -= 1
        self._outcome = value


class Broadcaster:
    """Posts a message to every connection of a symbol within a time budget (module docstring).

    Parameters
    ----------
    registry, poster
        Who is connected; how to send.
    max_concurrency
        Posts in flight at once (``MAX_CONCURRENT_PREDICTIONS``).
    budget_ms
        Longest a tick waits for its broadcast (``BROADCAST_BUDGET_MS``).
    finish_timeout_ms
        Longest :meth:`finish` waits for posts in flight at the end of an invocation.
    """

    def __init__(
        self,
        registry: ConnectionRegistry,
        poster: Poster,
        *,
        max_concurrency: int = 10,
        budget_ms: int = 500,
        finish_timeout_ms: int = 1_000,
    ) -> None:
        if max_concurrency < 1 or budget_ms < 1 or finish_timeout_ms < 0:
            raise ValueError("max_concurrency and budget_ms must be positive")
        self.registry = registry
        self.poster = poster
        self.max_concurrency = max_concurrency
        self.budget_s = budget_ms / 1000
        self.finish_timeout_s = finish_timeout_ms / 1000
        self._cond = threading.Condition()
        self._waiting: dict[str, _Post] = {}  # insertion order = the order posts start
        self._running: dict[str, _Post] = {}
        self._workers: list[threading.Thread] = []
        self._stopping = False
        self._late_gone: list[str] = []
        self._known: dict[str, list[str]] = {}
        self.registry_errors = 0

    # -- the tick's side ---------------------------------------------------------------------
    def broadcast(
        self, symbol: str, data: bytes, now_ms: int, *, deadline: float | None = None
    ) -> BroadcastReport:
        """Send ``data`` to ``symbol``'s connections; see the module docstring.

        ``deadline`` (``time.monotonic()``) ends the wait instead of the budget: the tick's
        one deadline for all its symbols.
        """
        started = time.perf_counter()
        ids = self._connections(symbol, now_ms)
        if not ids:
            return BroadcastReport(ms=(time.perf_counter() - started) * 1000)
        posts, superseded = self._enqueue(ids, data)
        wait_s = self.budget_s if deadline is None else max(0.0, deadline - time.monotonic())
        batch = posts[0].batch
        with self._cond:
            self._cond.wait_for(lambda: batch.left == 0, timeout=wait_s)
            outcomes = [p.outcome for p in posts]
        gone = [p.connection_id for p, o in zip(posts, outcomes, strict=True) if o == "gone"]
        self._remove_gone(symbol, gone)
        return BroadcastReport(
            sent=outcomes.count("sent"),
            gone=len(gone),
            failed=outcomes.count("failed"),
            timed_out=outcomes.count(None),
            superseded=superseded,
            ms=(time.perf_counter() - started) * 1000,
        )

    def _connections(self, symbol: str, now_ms: int) -> list[str]:
        try:
            ids = self.registry.connections(symbol, now_ms)
            self._known[symbol] = ids
        except Exception:  # the registry's store is down: keep serving the last known list
            self.registry_errors += 1
            ids = self._known.get(symbol, [])
        return ids

    def _enqueue(self, ids: Sequence[str], data: bytes) -> tuple[list[_Post], int]:
        unique = list(dict.fromkeys(ids))
        batch = _Batch(len(unique))
        posts = [_Post(cid, data, batch) for cid in unique]
        superseded = 0
        with self._cond:
            self._stopping = False
            for post in posts:
                older = self._waiting.pop(post.connection_id, None)
                if older is not None:
                    older.outcome = "superseded"
                    superseded += 1
                self._waiting[post.connection_id] = post
            self._start_workers()
            self._cond.notify_all()
        return posts, superseded

    def _start_workers(self) -> None:
        self._workers = [w for w in self._workers if w.is_alive()]
        wanted = min(self.max_concurrency, len(self._waiting) + len(self._running))
        for _ in range(wanted - len(self._workers)):
            worker = threading.Thread(target=self._work, name="broadcast", daemon=True)
            self._workers.append(worker)
            worker.start()

    def _remove_gone(self, symbol: str, gone: list[str]) -> None:
        with self._cond:
            gone = [*gone, *self._late_gone]
            self._late_gone.clear()
        if not gone:
            return
        try:
            self.registry.remove(gone)
        except Exception:
            self.registry_errors += 1
        dead = set(gone)
        self._known[symbol] = [c for c in self._known.get(symbol, []) if c not in dead]

    # -- the workers' side -------------------------------------------------------------------
    def _take(self) -> _Post | None:
        """The next waiting post whose connection has none in flight (None: stop)."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                for cid, post in self._waiting.items():
                    if cid not in self._running:
                        del self._waiting[cid]
                        self._running[cid] = post
                        return post
                self._cond.wait()

    def _work(self) -> None:
        while (post := self._take()) is not None:
            outcome: Outcome
            try:
                self.poster.post(post.connection_id, post.data)
                outcome = "sent"
            except GoneError:
                outcome = "gone"
            except Exception:  # any client failure: counted, the connection kept
                outcome = "failed"
            with self._cond:
                post.outcome = outcome
                del self._running[post.connection_id]
                if outcome == "gone":
                    self._late_gone.append(post.connection_id)
                self._cond.notify_all()

    # -- the invocation's end ----------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Messages waiting or in flight now (at most one each per connection)."""
        with self._cond:
            return len(self._waiting) + len(self._running)

    @property
    def workers(self) -> int:
        """Worker threads alive now."""
        return sum(w.is_alive() for w in self._workers)

    def finish(self) -> int:
        """End of an invocation: drop waiting messages, wait for posts in flight (at most
        ``finish_timeout_ms``), stop the workers. Return the posts still in flight then.

        A post still running after the wait cannot be stopped from Python; its worker ends
        as soon as the post returns (boto3's timeouts bound that) and takes nothing new.
        """
        deadline = time.monotonic() + self.finish_timeout_s
        with self._cond:
            for post in self._waiting.values():
                post.outcome = "dropped"
            self._waiting.clear()
            self._cond.wait_for(lambda: not self._running, timeout=self.finish_timeout_s)
            self._stopping = True
            self._cond.notify_all()
            stuck = len(self._running)
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        self._workers = [w for w in self._workers if w.is_alive()]
        gone, self._late_gone = self._late_gone, []
        if gone:
            try:
                self.registry.remove(gone)
            except Exception:
                self.registry_errors += 1
        self._known.clear()
        return stuck

    def close(self) -> None:
        """Stop (same as :meth:`finish`)."""
        self.finish()
