"""Any events survive packing into Kinesis records and unpacking, in order and exactly.

The smallest limit tried still fits the largest message the strategies make (20 levels a side at
exponent -128, about 12 kB), so every generated batch is packable.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from btcpred.events import Event
from btcpred.records import pack_records, unpack_record
from tests.strategies import events


@settings(max_examples=200)
@given(st.lists(events, min_size=1, max_size=30), st.integers(min_value=16_000, max_value=200_000))
def test_pack_then_unpack_is_identity_per_symbol(batch: list[Event], limit: int) -> None:
    records = pack_records(batch, ingest_ts_ms=1, max_record_bytes=limit)

    by_symbol: dict[str, list[Event]] = {}
    for record in records:
        assert len(record.data) + len(record.partition_key.encode()) <= limit
        by_symbol.setdefault(record.partition_key, []).extend(unpack_record(record.data))
    assert by_symbol == {s: [e for e in batch if e.symbol == s] for s in {e.symbol for e in batch}}
