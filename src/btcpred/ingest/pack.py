"""A fast packer: one event straight to its JSON message bytes (docs/records.md).

Byte for byte what ``orjson.dumps(records.event_to_message(event, ...))`` gives — a test checks
every event of the capture — but without the intermediate dict and with decimal strings
cached: order-book prices and common quantities repeat endlessly (a depth diff carries about 90
of them), and a dictionary lookup costs a tenth of formatting a decimal. The cache is bounded
(cleared when full), so memory stays flat on a day-long stream.
"""

from __future__ import annotations

from typing import Final

import orjson

from btcpred.events import BestBidAsk, DepthDiff, DepthSnapshot, Event, Trade, format_decimal

__all__ = ["Packer"]

CACHE_LIMIT: Final = 262_144


class _Decimals(dict[int, str]):
    """Mantissa → decimal string at one exponent; formats on a miss (``__missing__``)."""

    def __init__(self, exponent: int) -> None:
        super().__init__()
        self.exponent = exponent

    def __missing__(self, mantissa: int) -> str:
        text = self[mantissa] = format_decimal(mantissa, self.exponent)
        return text


class Packer:
    """Packs events for one ``source``; keeps the decimal and symbol caches."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._tail_source = orjson.dumps(source).decode()
        self._decimals: dict[int, _Decimals] = {}
        self._symbols: dict[str, str] = {}

    def _cache(self, exponent: int) -> _Decimals:
        cache = self._decimals.get(exponent)
        if cache is None:
            cache = self._decimals[exponent] = _Decimals(exponent)
        elif len(cache) >= CACHE_LIMIT:
            cache.clear()
        return cache

    def _sym(self, symbol: str) -> str:
        text = self._symbols.get(symbol)
        if text is None:
            text = self._symbols[symbol] = orjson.dumps(symbol).decode()
        return text

    def pack(self, event: Event, ingest_ts_ms: int) -> bytes:
        """The message of one event as JSON bytes."""
        pe, qe = event.price_exponent, event.qty_exponent
        price, qty = self._cache(pe), self._cache(qe)
        tail = (
            f',"receive_time_ns":{event.receive_time_ns},"ingest_ts":{ingest_ts_ms},'
            f'"source":{self._tail_source}}}'
        )
        sym = self._sym(event.symbol)
        if type(event) is BestBidAsk:
            return (
                f'{{"message_type":"bestbidask","symbol":{sym},"timestamp":{event.event_time_us},'
                f'"update_id":{event.update_id},'
                f'"bid_price":"{price[event.bid_price_mantissa]}",'
                f'"bid_quantity":"{qty[event.bid_qty_mantissa]}",'
                f'"ask_price":"{price[event.ask_price_mantissa]}",'
                f'"ask_quantity":"{qty[event.ask_qty_mantissa]}"{tail}'
            ).encode()
        if type(event) is Trade:
            maker = "true" if event.is_buyer_maker else "false"
            return (
                f'{{"message_type":"trade","symbol":{sym},"timestamp":{event.event_time_us},'
                f'"transact_time":{event.transact_time_us},"trade_id":{event.trade_id},'
                f'"price":"{price[event.price_mantissa]}",'
                f'"quantity":"{qty[event.qty_mantissa]}","is_buyer_maker":{maker}{tail}'
            ).encode()
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
        bids = ",".join([f'["{price[p]}","{qty[q]}"]' for p, q in event.bids])
        asks = ",".join([f'["{price[p]}","{qty[q]}"]' for p, q in event.asks])
        return (
            f'{head}"price_exponent":{pe},"qty_exponent":{qe},"bids":[{bids}],"asks":[{asks}]{tail}'
        ).encode()
