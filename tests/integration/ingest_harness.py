"""Run the real ingestor against the exchange simulator and a local Kinesis, then read back.

``run_ingest`` starts the simulator paused, the ingestor, waits for its first connection,
resumes the market, lets ``during`` inject faults, waits until the market has published
everything, stops the ingestor (its normal shutdown: flush) and reads every record back.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from btcpred.events import DepthDiff, DepthSnapshot, Event, Gap, StreamItem, Trade
from btcpred.ingest.service import Ingestor
from btcpred.records import unpack_record
from btcpred.settings.ingest import IngestSettings, StreamFormat
from btcpred.sim.exchange import ExchangeSimulator
from btcpred.sim.kinesis import create_stream, kinesis_client_for, read_stream
from btcpred.sources.binance_rest import BinanceRestClient

During = Callable[[ExchangeSimulator, Ingestor], Awaitable[None]]


@dataclass
class IngestRun:
    sim: ExchangeSimulator
    ingestor: Ingestor
    items: list[StreamItem]
    unsent: int
    records: list[Any] = field(default_factory=list)

    @property
    def trades(self) -> list[int]:
        return [e.trade_id for e in self.items if isinstance(e, Trade)]

    @property
    def gaps(self) -> list[Gap]:
        return [e for e in self.items if isinstance(e, Gap)]

    @property
    def published_trades(self) -> list[int]:
        return self.sim.published.trade_ids("BTCUSDT")

    def assert_every_trade_once_or_in_a_gap(self) -> None:
        """Every published trade id is downstream exactly once, or inside a trade gap."""
        downstream = self.trades
        assert len(downstream) == len(set(downstream)), "a trade id landed twice"
        assert downstream == sorted(downstream), "trades out of order"
        covered = set(downstream)
        for gap in self.gaps:
            if gap.stream == "trade":
                span = set(range(gap.from_id, gap.to_id + 1))
                assert not span & covered, f"{gap} covers ids that did land"
                covered |= span
        missing = [i for i in self.published_trades if i not in covered]
        assert missing == [], f"{len(missing)} trade ids lost without a gap: {missing[:10]}"


def run_ingest(
    kinesis_endpoint: str,
    events: Sequence[Event],
    *,
    sim_options: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    during: During | None = None,
    wrap: Callable[[Any], Any] | None = None,
    tail_s: float = 0.5,
    timeout_s: float = 60.0,
    json_format: bool = False,
) -> IngestRun:
    client = kinesis_client_for(kinesis_endpoint)
    name = f"ingest-{secrets.token_hex(4)}"
    create_stream(client, name)
    options = {"speed": 0.0, "paused": True, "backpressure": True, **(sim_options or {})}
    with ExchangeSimulator(events, **options) as sim:
        config = IngestSettings(
            stream_name=name,
            stream_url=sim.json_url if json_format else sim.url,
            stream_format=StreamFormat.JSON if json_format else StreamFormat.SBE,
            rest_url=sim.rest_url,
            api_key="test-key",
            heartbeat_path=f"/tmp/btcpred-test-{name}.heartbeat",  # noqa: S108
            flush_window_s=0.02,
            backoff_base_s=0.05,
            backoff_cap_s=0.5,
            refused_retry_s=0.5,
            healthy_after_s=0.2,
            rotation_timeout_s=5.0,
        ).with_(**(settings or {}))
        rest = BinanceRestClient(sim.rest_url)
        ingestor = Ingestor(
            config, wrap(client) if wrap else client, depth_fetch=rest.depth_snapshot
        )

        async def main() -> int:
            stop = asyncio.Event()
            task = asyncio.create_task(ingestor.run(stop))
            await asyncio.wait_for(ingestor.started.wait(), 10)
            await asyncio.sleep(0.2)
            sim.resume()
            if during is not None:
                await during(sim, ingestor)
            deadline = time.monotonic() + timeout_s
            while not sim.wait_finished(0) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert sim.wait_finished(0), "the market did not finish in time"
            await asyncio.sleep(tail_s)
            stop.set()
            return await task

        unsent = asyncio.run(main())
    records = read_stream(client, name)
    items = [item for r in records for item in unpack_record(r.data)]
    return IngestRun(sim, ingestor, items, unsent, records)


def rebuild_books(
    items: Sequence[StreamItem],
) -> dict[int, tuple[dict[int, int], dict[int, int]]]:
    """Replay depth records as a consumer would (Binance's rules); the book after each diff,
    keyed by its last update id."""
    bids: dict[int, int] | None = None
    asks: dict[int, int] = {}
    last = 0
    books: dict[int, tuple[dict[int, int], dict[int, int]]] = {}
    for item in items:
        if isinstance(item, DepthSnapshot):
            bids, asks = dict(item.bids), dict(item.asks)
            last = item.last_update_id
        elif isinstance(item, Gap) and item.stream == "depth":
            bids = None
        elif isinstance(item, DepthDiff) and bids is not None:
            if item.last_update_id <= last:
                continue
            assert item.first_update_id <= last + 1, "a diff chain broke without a gap record"
            for side, levels in ((bids, item.bids), (asks, item.asks)):
                for price, qty in levels:
                    if qty == 0:
                        side.pop(price, None)
                    else:
                        side[price] = qty
            last = item.last_update_id
            books[last] = (dict(bids), dict(asks))
    return books
