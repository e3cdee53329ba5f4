"""Order-book synchronisation by Binance's rules: hold diffs, fetch a REST snapshot, go on.

At the first diff of a symbol and after every break of its diff chain the ingestor calls
:meth:`DepthSync.start`; from then on :meth:`DepthSync.hold` keeps that symbol's diffs aside.
A worker thread fetches ``/api/v3/depth`` (again after a pause if the snapshot is older than
the first held diff; with backoff on errors); then ``publish(symbol, snapshot, held diffs)``
puts the snapshot on the stream, followed by the held diffs it does not already cover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Final

from btcpred.events import DepthDiff, DepthSnapshot
from btcpred.ingest.connection import Backoff

__all__ = ["MAX_HELD_DIFFS", "SNAPSHOT_RETRY_S", "DepthFetcher", "DepthSync"]

log = logging.getLogger("btcpred.ingest")

DepthFetcher = Callable[[str, int], DepthSnapshot]
"""``fetch(symbol, limit)``: a REST depth snapshot (blocking; run in a worker thread)."""

MAX_HELD_DIFFS: Final = 20_000
SNAPSHOT_RETRY_S: Final = 0.5

Publish = Callable[[str, DepthSnapshot, list[DepthDiff]], None]


class DepthSync:
    """The symbols being synchronised, their held diffs, and the fetch tasks."""

    def __init__(
        self,
        fetch: DepthFetcher,
        limit: int,
        publish: Publish,
        stop: asyncio.Event,
        rng: random.Random,
    ) -> None:
        self.fetch = fetch
        self.limit = limit
        self.publish = publish
        self.stop = stop
        self.rng = rng
        self.held: dict[str, deque[DepthDiff]] = {}
        self.synced: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.started = 0

    def hold(self, diff: DepthDiff) -> bool:
        """Keep ``diff`` aside if its symbol is being synchronised (True), else False."""
        held = self.held.get(diff.symbol)
        if held is None:
            return False
        held.append(diff)
        if len(held) > MAX_HELD_DIFFS:
            held.popleft()  # the snapshot to come covers the oldest ones
        return True

    def start(self, symbol: str, first: DepthDiff) -> None:
        """Synchronise ``symbol`` again, holding ``first`` and the diffs after it."""
        self.synced.discard(symbol)
        held = self.held.setdefault(symbol, deque())
        held.append(first)
        if len(held) > 1:
            return  # already synchronising
        self.started += 1
        task = asyncio.get_running_loop().create_task(self._run(symbol))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, symbol: str) -> None:
        backoff = Backoff(SNAPSHOT_RETRY_S, 30.0, self.rng)
        while not self.stop.is_set():
            try:
                snapshot = await asyncio.to_thread(self.fetch, symbol, self.limit)
            except Exception as exc:  # noqa: BLE001  # any REST failure: wait and ask again
                delay = backoff.next_delay() + SNAPSHOT_RETRY_S
                log.warning("depth snapshot of %s failed (%s); again in %.1f s", symbol, exc, delay)
                await self._sleep(delay)
                continue
            held = self.held[symbol]
            if held and snapshot.last_update_id < held[0].first_update_id - 1:
                log.info(
                    "depth snapshot of %s (id %d) is older than the held diffs (from %d): "
                    "fetching again",
                    symbol,
                    snapshot.last_update_id,
                    held[0].first_update_id,
                )
                await self._sleep(SNAPSHOT_RETRY_S)
                continue
            del self.held[symbol]
            self.synced.add(symbol)
            self.publish(symbol, snapshot, list(held))
            return

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)

    def cancel(self) -> None:
        """Stop every fetch (at shutdown)."""
        for task in self.tasks:
            task.cancel()

    @property
    def held_count(self) -> int:
        """Diffs waiting for a snapshot."""
        return sum(len(d) for d in self.held.values())
