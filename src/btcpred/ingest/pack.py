"""A fast packer: one event straight to its JSON message bytes (docs/records.md).

Byte for byte what ``orjson.dumps(records.event_to_message(event, ...))`` gives — a test checks
every event of the capture — but without the intermediate dict and with decimal strings
cached: order-book prices and common quantities repeat endlessly (a depth diff carries about 90
of them), and a dictionary lookup costs a tenth of formatting a decimal. The cache is bounded
(cleared when full), so memory stays flat on a day-long stream.
"""

from __future__ import annotations

from operator import add, itemgetter
from typing import Final

import orjson

from btcpred.events import (
    BestBidAsk,
    DepthDiff,
    DepthSnapshot,
    Event,
    Level,
    Trade,
    format_decimal,
)

__all__ = ["Packer"]

CACHE_LIMIT: Final = 262_144


class _Decimals(dict[int, str]):
    """Mantissa → decimal string at one exponent, between ``before`` and ``after``; formats on
    a miss (``__missing__``)."""

    def __init__(self, exponent: int, before: str = "", after: str = "") -> None:
        super().__init__()
        self.exponent = exponent
        self.before = before
        self.after = after

    def __missing__(self, mantissa: int) -> str:
        if len(self) >= CACHE_LIMIT:  # bounded: start over (checked on a miss only)
            self.clear()
        text = self[mantissa] = (
            f"{self.before}{format_decimal(mantissa, self.exponent)}{self.after}"
        )
        return text


class Packer:
    """Packs events for one ``source``; keeps the decimal and symbol caches."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._tail_source = orjson.dumps(source).decode()
        self._decimals: dict[int, _Decimals] = {}
        self._symbols: dict[str, str] = {}
        self._levels: dict[tuple[int, int], tuple[_Decimals, _Decimals]] = {}
        """(price, qty exponent) → a level's two halves: ``["price","`` and ``qty"]``."""

    def _cache(self, exponent: int) -> _Decimals:
        cache = self._decimals.get(exponent)
        if cache is None:
            cache = self._decimals[exponent] = _Decimals(exponent)
        return cache

    def _sym(self, symbol: str) -> str:
        text = self._symbols.get(symbol)
        if text is None:
            text = self._symbols[symbol] = orjson.dumps(symbol).decode()
        return text

    def pack(self, event: Event, ingest_ts_ms: int) -> bytes:
        """The message of one event as JSON bytes."""
        if type(event) is BestBidAsk:
            return self.pack_quote(
                event.symbol,
                event.event_time_us,
                event.update_id,
                event.price_exponent,
                event.qty_exponent,
                event.bid_price_mantissa,
                event.bid_qty_mantissa,
                event.ask_price_mantissa,
                event.ask_qty_mantissa,
                event.receive_time_ns,
                ingest_ts_ms,
            )
        if type(event) is Trade:
            return self.pack_trade(
                event.symbol,
                event.event_time_us,
                event.transact_time_us,
                event.trade_id,
                event.price_mantissa,
                event.qty_mantissa,
                event.price_exponent,
                event.qty_exponent,
                event.is_buyer_maker,
                event.receive_time_ns,
                ingest_ts_ms,
            )
        return self._pack_book(event, ingest_ts_ms)

    def pack_quote(
        self,
        symbol: str,
        event_time_us: int,
        update_id: int,
        price_exponent: int,
        qty_exponent: int,
        bid_price_mantissa: int,
        bid_qty_mantissa: int,
        ask_price_mantissa: int,
        ask_qty_mantissa: int,
        receive_time_ns: int,
        ingest_ts_ms: int,
    ) -> bytes:
        """The message of a :class:`~btcpred.events.BestBidAsk` given by its fields (the
        ingestor's fused SBE path packs quotes without building the event)."""
        # dict lookups first: a method call costs more than formatting one of the numbers
        decimals = self._decimals
        price = decimals.get(price_exponent) or self._cache(price_exponent)
        qty = decimals.get(qty_exponent) or self._cache(qty_exponent)
        sym = self._symbols.get(symbol) or self._sym(symbol)
        return (
            f'{{"message_type":"bestbidask","symbol":{sym},'
            f'"timestamp":{event_time_us},"update_id":{update_id},'
            f'"bid_price":"{price[bid_price_mantissa]}",'
            f'"bid_quantity":"{qty[bid_qty_mantissa]}",'
            f'"ask_price":"{price[ask_price_mantissa]}",'
            f'"ask_quantity":"{qty[ask_qty_mantissa]}",'
            f'"receive_time_ns":{receive_time_ns},"ingest_ts":{ingest_ts_ms},'
            f'"source":{self._tail_source}}}'
        ).encode()

    def pack_trade(
        self,
        symbol: str,
        event_time_us: int,
        transact_time_us: int,
        trade_id: int,
        price_mantissa: int,
        qty_mantissa: int,
        price_exponent: int,
        qty_exponent: int,
        is_buyer_maker: bool,
        receive_time_ns: int,
        ingest_ts_ms: int,
    ) -> bytes:
        """The message of a :class:`~btcpred.events.Trade` given by its fields."""
        decimals = self._decimals
        price = decimals.get(price_exponent) or self._cache(price_exponent)
        qty = decimals.get(qty_exponent) or self._cache(qty_exponent)
        sym = self._symbols.get(symbol) or self._sym(symbol)
        return (
            f'{{"message_type":"trade","symbol":{sym},'
            f'"timestamp":{event_time_us},"transact_time":{transact_time_us},'
            f'"trade_id":{trade_id},"price":"{price[price_mantissa]}",'
            f'"quantity":"{qty[qty_mantissa]}",'
            f'"is_buyer_maker":{"true" if is_buyer_maker else "false"},'
            f'"receive_time_ns":{receive_time_ns},"ingest_ts":{ingest_ts_ms},'
            f'"source":{self._tail_source}}}'
        ).encode()

    def _pack_book(self, event: Event, ingest_ts_ms: int) -> bytes:
        """A depth diff or snapshot: the levels as arrays of decimal-string pairs."""
        pe, qe = event.price_exponent, event.qty_exponent
        tail = (
            f',"receive_time_ns":{event.receive_time_ns},"ingest_ts":{ingest_ts_ms},'
            f'"source":{self._tail_source}}}'
        )
        sym = self._sym(event.symbol)
        if isinstance(event, DepthDiff):
            head = (
                f'{{"message_type":"depth","symbol":{sym},"timestamp":{event.event_time_us},'
                f'"first_update_id":{event.first_update_id},'
                f'"final_update_id":{event.last_update_id},'
            )
        elif isinstance(event, DepthSnapshot):
            head = (
                f'{{"message_type":"depth_snapshot","symbol":{sym},'
                f'"timestamp":{event.event_time_us},"last_update_id":{event.last_update_id},'
            )
        else:  # pragma: no cover - the union is exhausted above
            raise TypeError(f"cannot pack {type(event).__name__}")
        halves = self._levels.get((pe, qe))
        if halves is None:
            halves = self._levels[pe, qe] = (_Decimals(pe, '["', '","'), _Decimals(qe, "", '"]'))
        bids = _join_levels(event.bids, halves)
        asks = _join_levels(event.asks, halves)
        return (
            f'{head}"price_exponent":{pe},"qty_exponent":{qe},"bids":[{bids}],"asks":[{asks}]{tail}'
        ).encode()


_PRICE, _QTY = itemgetter(0), itemgetter(1)


def _join_levels(levels: tuple[Level, ...], halves: tuple[_Decimals, _Decimals]) -> str:
    """``["p1","q1"],["p2","q2"]...``, iterated in C (map), not by a comprehension: a diff
    carries about 45 levels."""
    prices, qtys = halves
    return ",".join(
        map(
            add,
            map(prices.__getitem__, map(_PRICE, levels)),
            map(qtys.__getitem__, map(_QTY, levels)),
        )
    )
