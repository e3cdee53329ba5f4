"""The streaming feature engine: trades, quotes and finished bars in, feature snapshots out.

One :class:`FeatureEngine` per symbol. Per event the work is O(1) (a bucket update, a quote
store); a snapshot costs O(window buckets + indicator periods), a few hundred float additions.
The aggregator Lambda streams Kinesis events through it; :mod:`btcpred.features.batch` feeds
history (klines or trades) through the very same object. Every definition: ``docs/features.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Final

import msgspec

from btcpred.events import BestBidAsk, Trade, to_float
from btcpred.features.bars import BarSeries
from btcpred.features.indicators import BollingerBands, Macd, Rsi
from btcpred.features.snapshot import FeatureSnapshot
from btcpred.features.spec import DEFAULT_SPEC, FeatureSpec, spec_hash
from btcpred.features.windows import TradeWindows
from btcpred.klines import Kline

__all__ = ["STATE_VERSION", "EngineStateError", "FeatureEngine"]

STATE_VERSION: Final = 2
"""Version of the serialized engine state; a different version is refused, never guessed at.

2: the last trade's time, the quote's time and the id-reset count joined the state (quotes are
ordered by time, trade ids checked against time); a version-1 state is discarded (cold start).
"""

_US: Final = 1_000_000


class EngineStateError(ValueError):
    """Serialized state is corrupt, of another version, or of another feature spec."""


class _Quote(msgspec.Struct, array_like=True):
    time_us: int
    update_id: int | None
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float


class FeatureEngine:
    """Incremental features for one symbol (see the module docstring)."""

    def __init__(self, symbol: str, spec: FeatureSpec = DEFAULT_SPEC) -> None:
        self.symbol = symbol
        self.spec = spec
        self._windows = TradeWindows(spec.long_window_s)
        self._rsi = Rsi(spec.rsi_period)
        self._macd = Macd(spec.macd_fast, spec.macd_slow, spec.macd_signal)
        self._bands = BollingerBands(spec.bollinger_period, spec.bollinger_k)
        if spec.macd_bar_s != spec.bollinger_bar_s:
            raise ValueError("MACD and Bollinger bands must share one bar length")
        self._short_bars = BarSeries(spec.macd_bar_s, (self._macd, self._bands), spec.max_gap_bars)
        self._long_bars = BarSeries(spec.rsi_bar_s, (self._rsi,), spec.max_gap_bars)
        self._reset_scalars()

    def _reset_scalars(self) -> None:
        self.now_us = -1  # time of the newest event (µs); -1 before any
        self.last_price: float | None = None
        self.last_trade_id = -1
        self.last_trade_us = -1  # the newest trade time seen (µs)
        self._quote: _Quote | None = None
        self.trades = 0
        self.duplicates = 0
        self.late = 0
        self.id_resets = 0
        self.id_candidate: tuple[int, int] | None = None
        """(trade id, µs) of the last trade the aggregator's id rule rejected (re-anchoring)."""

    def reset(self) -> None:
        """Forget everything: the engine equals a freshly built one."""
        self._windows.reset()
        self._short_bars.reset()
        self._long_bars.reset()
        self._reset_scalars()

    # -- input -----------------------------------------------------------------------------

    def add_trade(self, time_us: int, trade_id: int, price: float, qty: float) -> bool:
        """Apply one trade; return False (and count it) if it was already applied.

        Binance trade ids and trade times increase together per symbol, so a trade whose id is
        at or below the last applied one and whose time is not after the newest trade time is a
        redelivery. An id at or below the last one with a *later* time contradicts the stored id
        (an implausible id was applied before): the trade is applied, the id restarts from it
        and ``id_resets`` counts it, so one bad id cannot make every later trade a "duplicate".
        A trade older than the newest event is booked at the newest time.
        """
        if trade_id <= self.last_trade_id:
            if time_us <= self.last_trade_us:
                self.duplicates += 1
                return False
            self.id_resets += 1
        self.last_trade_id = trade_id
        if time_us > self.last_trade_us:
            self.last_trade_us = time_us
        if time_us > self.now_us:
            self.now_us = time_us
        elif time_us < self.now_us:
            self.late += 1
        sec = self.now_us // _US
        self._windows.add_trade(sec, price, qty)
        self._short_bars.update(sec, price)
        self._long_bars.update(sec, price)
        self.last_price = price
        self.trades += 1
        return True

    def add_quote(
        self,
        time_us: int,
        update_id: int | None,
        bid: float,
        bid_qty: float,
        ask: float,
        ask_qty: float,
    ) -> bool:
        """Apply a best bid/ask; return False (and count it) if it is older than the last one.

        Quotes are ordered by event time; the update id (optional: the seed's records have none)
        only breaks ties between quotes of the same microsecond, so a quote without one always
        replaces an older or equally old quote, and an absurd id cannot freeze the quote.
        """
        last = self._quote
        if last is not None and (
            time_us < last.time_us
            or (
                time_us == last.time_us
                and update_id is not None
                and last.update_id is not None
                and update_id <= last.update_id
            )
        ):
            self.duplicates += 1
            return False
        self._quote = _Quote(time_us, update_id, bid, bid_qty, ask, ask_qty)
        if time_us > self.now_us:
            self.now_us = time_us
        return True

    def on_trade(self, trade: Trade) -> bool:
        """Apply a :class:`~btcpred.events.Trade` (its transact time is the trade's time)."""
        return self.add_trade(
            trade.transact_time_us,
            trade.trade_id,
            to_float(trade.price_mantissa, trade.price_exponent),
            to_float(trade.qty_mantissa, trade.qty_exponent),
        )

    def on_quote(self, quote: BestBidAsk) -> bool:
        """Apply a :class:`~btcpred.events.BestBidAsk`."""
        pe, qe = quote.price_exponent, quote.qty_exponent
        return self.add_quote(
            quote.event_time_us,
            quote.update_id,
            to_float(quote.bid_price_mantissa, pe),
            to_float(quote.bid_qty_mantissa, qe),
            to_float(quote.ask_price_mantissa, pe),
            to_float(quote.ask_qty_mantissa, qe),
        )

    def add_kline(self, kline: Kline) -> bool:
        """Apply a finished bar of the short bar length (1 minute); False if not newer.

        Its totals go to the windows, its close to both bar series; the engine's time becomes
        the bar's last microsecond. Feed a symbol either klines or trades for a period, not both.
        """
        end_us = kline.close_time_ms * 1000 + 999
        if end_us <= self.now_us:
            return False
        first, last = kline.open_time_ms // 1000, kline.close_time_ms // 1000
        self.now_us = end_us
        self._windows.add_bar(
            (first, last), kline.close, kline.volume, kline.quote_volume, kline.trades
        )
        self._short_bars.update(last, kline.close)
        self._long_bars.update(last, kline.close)
        self.last_price = kline.close
        return True

    def add_long_bar(self, kline: Kline) -> None:
        """Feed a finished bar of the long bar length (5 minutes) to the RSI series only."""
        self._long_bars.update(kline.close_time_ms // 1000, kline.close)

    def warm_up(self, klines_long: Iterable[Kline], klines_short: Iterable[Kline]) -> None:
        """Warm a fresh engine from finished 5-minute and 1-minute bars (e.g. from REST)."""
        for kline in klines_long:
            self.add_long_bar(kline)
        for kline in klines_short:
            self.add_kline(kline)

    # -- output ----------------------------------------------------------------------------

    def _window_features(self, price: float | None, sec: int) -> dict[str, float | None]:
        spec, windows = self.spec, self._windows
        short, long_ = spec.short_window_s, spec.long_window_s
        out: dict[str, float | None] = dict.fromkeys(
            (
                "volume",
                "vwap",
                "trade_intensity",
                "volume_avg_1m",
                "price_change_1m",
                "price_change_5m",
            )
        )
        if price is None:
            return out
        if windows.covered(short, sec):
            qty, pq, count = windows.totals(short, sec)
            out["volume"] = qty
            out["vwap"] = None if math.isnan(pq) else (pq / qty if qty > 0 else price)
            out["trade_intensity"] = None if math.isnan(count) else count / short
        if windows.covered(long_, sec):
            out["volume_avg_1m"] = windows.totals(long_, sec)[0] / (long_ / short)
        for name, window in (("price_change_1m", short), ("price_change_5m", long_)):
            before = windows.price_before(window, sec)
            out[name] = None if before is None or before <= 0 else price / before - 1.0
        return out

    def _quote_features(self) -> dict[str, float | None]:
        quote = self._quote
        if quote is None or quote.bid <= 0:
            return {"bid_ask_spread": None, "order_book_imbalance": None}
        bid_value, ask_value = quote.bid * quote.bid_qty, quote.ask * quote.ask_qty
        total = bid_value + ask_value
        return {
            "bid_ask_spread": (quote.ask - quote.bid) / quote.bid,
            "order_book_imbalance": (bid_value - ask_value) / total if total > 0 else 0.0,
        }

    def _indicator_features(self, price: float | None, sec: int) -> dict[str, float | None]:
        rsi, long_close = self._long_bars.view_at(sec, self._rsi)
        macd, short_close = self._short_bars.view_at(sec, self._macd)
        bands, _ = self._short_bars.view_at(sec, self._bands)
        return {
            "rsi_5m": None if long_close is None else rsi.peek(long_close),
            "macd_signal": None if short_close is None else macd.peek(short_close),
            "bollinger_position": None if short_close is None else bands.peek(short_close, price),
        }

    def snapshot(self, now_us: int | None = None) -> FeatureSnapshot:
        """The features at ``now_us`` (default and minimum: the newest event's time).

        Read-only: taking a snapshot never changes what later events produce, so snapshots may
        be taken at any cadence (per batch, per bar close) without changing the features.
        """
        at_us = self.now_us if now_us is None else max(now_us, self.now_us)
        sec = at_us // _US
        price = self.last_price
        values = {
            "price": price,
            **self._window_features(price, sec),
            **self._quote_features(),
            **self._indicator_features(price, sec),
        }
        return FeatureSnapshot.build(self.symbol, max(at_us, 0) // 1000, values)

    # -- state -----------------------------------------------------------------------------

    def state(self) -> bytes:
        """The complete state, versioned and tied to the feature spec (MessagePack)."""
        return msgspec.msgpack.encode(
            [
                STATE_VERSION,
                spec_hash(self.spec),
                self.symbol,
                [
                    self.now_us,
                    self.last_price,
                    self.last_trade_id,
                    self.last_trade_us,
                    self._quote,
                    self.id_candidate,
                ],
                [self.trades, self.duplicates, self.late, self.id_resets],
                self._windows.state(),
                [self._short_bars.state(), self._long_bars.state()],
                [self._rsi.state(), self._macd.state(), self._bands.state()],
            ]
        )

    @classmethod
    def from_state(cls, data: bytes, spec: FeatureSpec = DEFAULT_SPEC) -> FeatureEngine:
        """Rebuild an engine from :meth:`state`; it continues exactly where that one stopped.

        Raises
        ------
        EngineStateError
            Not a state of this version and feature spec, or corrupt.
        """
        try:
            parts = msgspec.msgpack.decode(data)
            version, digest, symbol = parts[0], parts[1], parts[2]
        except (msgspec.DecodeError, TypeError, IndexError, KeyError) as exc:
            raise EngineStateError(f"engine state is not decodable: {exc}") from None
        if version != STATE_VERSION:
            raise EngineStateError(f"engine state version {version!r}, expected {STATE_VERSION}")
        if digest != spec_hash(spec):
            raise EngineStateError("engine state was saved under another feature spec")
        try:
            return cls._restore(str(symbol), spec, parts)
        except (TypeError, ValueError, IndexError, msgspec.ValidationError) as exc:
            raise EngineStateError(f"engine state is corrupt: {exc}") from None

    @classmethod
    def _restore(cls, symbol: str, spec: FeatureSpec, parts: list[Any]) -> FeatureEngine:
        engine = cls(symbol, spec)
        now_us, last_price, last_trade_id, last_trade_us, quote, candidate = parts[3]
        engine.now_us, engine.last_price = int(now_us), last_price
        engine.last_trade_id, engine.last_trade_us = int(last_trade_id), int(last_trade_us)
        engine._quote = None if quote is None else msgspec.convert(quote, _Quote)
        engine.id_candidate = None if candidate is None else (int(candidate[0]), int(candidate[1]))
        engine.trades, engine.duplicates, engine.late, engine.id_resets = (int(x) for x in parts[4])
        engine._windows = TradeWindows.from_state(parts[5])
        engine._rsi = Rsi.from_state(parts[7][0])
        engine._macd = Macd.from_state(parts[7][1])
        engine._bands = BollingerBands.from_state(parts[7][2])
        engine._short_bars.indicators = (engine._macd, engine._bands)
        engine._long_bars.indicators = (engine._rsi,)
        engine._short_bars.restore(parts[6][0])
        engine._long_bars.restore(parts[6][1])
        return engine
