"""The ingestor's fast packer writes exactly the record format's bytes."""

from __future__ import annotations

import orjson

from btcpred.events import BestBidAsk, DepthDiff, Trade
from btcpred.ingest.pack import CACHE_LIMIT, Packer
from btcpred.records import event_to_message, unpack_record
from btcpred.sources.capture import Capture


def test_every_event_of_the_capture_packs_to_the_reference_bytes(capture: Capture) -> None:
    packer = Packer("sbe")
    for event in capture.events:
        expected = orjson.dumps(event_to_message(event, ingest_ts_ms=1_723_161_600_123))
        assert packer.pack(event, 1_723_161_600_123) == expected
    assert {type(e) for e in capture.events} >= {Trade, BestBidAsk, DepthDiff}


def test_odd_exponents_negative_mantissas_and_a_json_source_round_trip() -> None:
    packer = Packer("json")
    events = [
        Trade("ETHBTC", 1_723_161_600_000_000, 1_723_161_600_000_000, 7, 5, 3, 2, -3, True, 9),
        BestBidAsk("ETHBTC", 1_723_161_600_000_000, 0, 0, -12, 1, 1, 2, 0),
        DepthDiff("ETHBTC", 1_723_161_600_000_000, 1, 2, -2, -5, ((-1, 0),), ()),
    ]
    for event in events:
        data = packer.pack(event, 5)
        assert data == orjson.dumps(event_to_message(event, ingest_ts_ms=5, source="json"))
        assert unpack_record(data) == [event]


def test_the_decimal_cache_stays_bounded() -> None:
    packer = Packer("sbe")
    for mantissa in range(CACHE_LIMIT + 10):
        packer.pack(
            BestBidAsk("BTCUSDT", 1_723_161_600_000_000, mantissa, -8, -8, mantissa, 1, 2, 1), 1
        )
    assert all(len(cache) <= CACHE_LIMIT for cache in packer._decimals.values())
