"""The market state behind the timeline: per-symbol trade history and order book, the derived
periodic streams (tickers, mini tickers, klines, average price, partial depth) and publication
into `History` and the `Hub`.

Derived periodic streams are computed for streams that some client has subscribed at least once
("active"), and never for a stream the recording itself carries.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from binance_streamer.core.streams import InvalidStreamName, StreamKind, StreamName, parse_stream
from binance_streamer.exchange import stats
from binance_streamer.exchange.book import OrderBook
from binance_streamer.exchange.frames import Event
from binance_streamer.exchange.history import History, trim_appended
from binance_streamer.exchange.hub import Hub

__all__ = ["Market", "SymbolState"]

_PERIODIC = {StreamKind.TICKER, StreamKind.MINI_TICKER, StreamKind.WINDOW_TICKER,
             StreamKind.AVG_PRICE, StreamKind.KLINE, StreamKind.PARTIAL_DEPTH}
_FIVE_MIN = 300_000


class SymbolState:
    """One symbol's history: aggregate trades (sorted by time), trades and its order book.

    Publishing only appends the payload (`add_agg`, `add_trade`); the REST records
    (`aggs`, `agg_times`, `trades`) are built from the new payloads when next read, so the hot
    path allocates nothing per event and REST-only state costs nothing until REST asks.
    """

    def __init__(self, symbol: str, *, synthetic: bool, limit: int | None = None) -> None:
        self.symbol = symbol
        self.limit = limit
        self.synthetic = synthetic
        self._aggs: list[stats.AggRec] = []
        self._agg_times: list[int] = []
        self._new_aggs: list[dict[str, Any]] = []
        self._last_agg_id: int | None = None
        self._trades: list[dict[str, Any]] = []
        self._new_trades: list[dict[str, Any]] = []
        self._last_trade_id: int | None = None
        self.book = OrderBook()
        self.recorded: set[str] = set()
        self.kline_open: dict[str, tuple[int, int]] = {}
        self.changed = False
        self.base_ms = 0
        self.refresh: Callable[[], None] | None = None

    def current_book(self) -> OrderBook:
        """The order book as of now."""
        if self.refresh is not None:
            self.refresh()
        return self.book

    def add_agg(self, payload: dict[str, Any]) -> None:
        """Record one published aggregate trade (ids at or below the last one are ignored)."""
        agg_id = payload["a"]
        if self._last_agg_id is not None and agg_id <= self._last_agg_id:
            return
        self._last_agg_id = agg_id
        self._new_aggs.append(payload)
        self.changed = True
        if self.limit is not None and len(self._new_aggs) > self.limit:
            self._absorb_aggs()  # keep memory bounded when nobody reads

    def add_trade(self, payload: dict[str, Any]) -> None:
        """Record one published trade (ids at or below the last one are ignored)."""
        trade_id = payload["t"]
        if self._last_trade_id is not None and trade_id <= self._last_trade_id:
            return
        self._last_trade_id = trade_id
        self._new_trades.append(payload)
        if self.limit is not None and len(self._new_trades) > self.limit:
            self._absorb_trades()

    @property
    def aggs(self) -> list[stats.AggRec]:
        """The aggregate trades as REST records, oldest first."""
        if self._new_aggs:
            self._absorb_aggs()
        return self._aggs

    @property
    def agg_times(self) -> list[int]:
        """The trade time ``T`` of each of `aggs`."""
        if self._new_aggs:
            self._absorb_aggs()
        return self._agg_times

    @property
    def trades(self) -> list[dict[str, Any]]:
        """The trades as REST ``trades`` rows, oldest first."""
        if self._new_trades:
            self._absorb_trades()
        return self._trades

    def _absorb_aggs(self) -> None:
        recs = [stats.AggRec(p) for p in self._new_aggs]
        self._new_aggs.clear()
        self._aggs += recs
        self._agg_times += [rec.time for rec in recs]
        if trim_appended(self._aggs, len(recs), self.limit):
            del self._agg_times[: len(self._agg_times) - len(self._aggs)]

    def _absorb_trades(self) -> None:
        rows = [_trade_row(p) for p in self._new_trades]
        self._new_trades.clear()
        self._trades += rows
        trim_appended(self._trades, len(rows), self.limit)

    def window(self, start_ms: int, end_ms: int) -> tuple[list[stats.AggRec], stats.AggRec | None]:
        """Aggregate trades with ``start_ms < T <= end_ms`` and the one before them."""
        lo = bisect_right(self.agg_times, start_ms)
        hi = bisect_right(self.agg_times, end_ms)
        return self.aggs[lo:hi], (self.aggs[lo - 1] if lo > 0 else None)

    def bucket(self, bounds: tuple[int, int]) -> list[stats.AggRec]:
        """Aggregate trades inside a kline's open..close time."""
        lo = bisect_left(self.agg_times, bounds[0])
        return self.aggs[lo:bisect_right(self.agg_times, bounds[1])]

    def __repr__(self) -> str:
        return (f"<SymbolState {self.symbol} aggTrades={len(self.aggs)} "
                f"trades={len(self.trades)} {self.book!r}>")


class Market:
    """All symbols' state; publishes events to history and subscribers."""

    def __init__(self, hub: Hub, history: History) -> None:
        self.hub = hub
        self.history = history
        self.symbols: dict[str, SymbolState] = {}
        self._parsed: dict[str, StreamName | None] = {}
        self._arr_seen: dict[str, dict[str, int]] = {}

    def symbol(self, symbol: str, *, synthetic: bool = False) -> SymbolState:
        """The state of ``symbol`` (upper case), created on first use."""
        state = self.symbols.get(symbol)
        if state is None:
            state = self.symbols[symbol] = SymbolState(symbol, synthetic=synthetic,
                                                       limit=self.history.limit)
        return state

    def publish(self, stream: str, payload: Any) -> None:
        """Publish one event on the shared timeline: history, market state, subscribers."""
        self.history.add(stream, payload)
        if isinstance(payload, dict) and "s" in payload:
            self._record(payload)
        if stream in self.hub.subs:  # encode only what somebody receives
            self.hub.publish(Event(stream, payload))

    def _record(self, payload: dict[str, Any]) -> None:
        """Keep the REST state of a published trade, aggregate trade or depth diff."""
        kind = payload.get("e")
        if kind == "aggTrade":
            self._state(payload["s"]).add_agg(payload)
        elif kind == "trade":
            self._state(payload["s"]).add_trade(payload)
        elif kind == "depthUpdate":
            state = self._state(payload["s"])
            if not state.synthetic:
                state.book.apply(payload["U"], payload["u"], payload["b"], payload["a"])

    def _state(self, symbol: str) -> SymbolState:
        """The state of ``symbol``: one dict lookup when known, else created by `symbol`."""
        return self.symbols.get(symbol) or self.symbol(symbol)

    def snapshot(self, symbol: str, body: dict[str, Any]) -> None:
        """A recorded REST depth snapshot reached the timeline: adopt it if it is newer."""
        state = self.symbol(symbol)
        if int(body["lastUpdateId"]) > state.book.last_update_id:
            state.book = OrderBook.from_snapshot(body)

    def _parse(self, name: str) -> StreamName | None:
        if name not in self._parsed:
            try:
                self._parsed[name] = parse_stream(name)
            except InvalidStreamName:
                self._parsed[name] = None
        return self._parsed[name]

    def periodic(self, clock: Callable[[SymbolState], int], step_ms: int, synthetic: bool
                 ) -> None:
        """Emit the active derived streams due at this ``step_ms`` (a multiple of 100) of the
        timeline of replayed (or synthetic) symbols; ``clock`` gives a symbol's event time."""
        for name in sorted(self.hub.active):
            parsed = self._parse(name)
            if parsed is None or parsed.kind not in _PERIODIC:
                continue
            state = self.symbols.get(parsed.symbol.upper())
            if state is None or state.synthetic != synthetic or name in state.recorded:
                continue
            if step_ms % _cadence(parsed) == 0:
                payload = self._derive(parsed, state, clock(state))
                if payload is not None:
                    self.publish(name, payload)
        if step_ms % 1000 == 0:
            if "!miniTicker@arr" in self.hub.active:
                self._all_mini(clock, synthetic)
            self._extras(clock, synthetic)

    def _extras(self, clock: Callable[[SymbolState], int], synthetic: bool) -> None:
        """Streams core.streams does not parse: ``!ticker_<w>@arr`` and ``@referencePrice``."""
        for name in sorted(self.hub.active):
            if name.startswith("!ticker_") and name.endswith("@arr"):
                self._window_arr(name, name[8:10], clock, synthetic)
            elif name.endswith("@referencePrice"):
                state = self.symbols.get(name.partition("@")[0].upper())
                if state is not None and state.synthetic == synthetic:
                    # web-socket-streams.md "Reference Price Streams": r is null when unknown
                    price = state.aggs[-1].p if state.aggs else None
                    self.publish(name, {"e": "referencePrice", "s": state.symbol, "r": price,
                                        "t": clock(state)})

    def _window_arr(self, name: str, window: str, clock: Callable[[SymbolState], int],
                    synthetic: bool) -> None:
        """``!ticker_<w>@arr``: window tickers of the symbols that traded since the last one."""
        seen = self._arr_seen.setdefault(name, {})
        arr = []
        for state in self.symbols.values():
            if state.synthetic != synthetic or seen.get(state.symbol) == len(state.aggs):
                continue
            seen[state.symbol] = len(state.aggs)
            now = clock(state)
            trades, _ = state.window(now - stats.WINDOW_MS[window], now)
            if trades:
                arr.append(stats.window_ticker(state.symbol, now, window, trades))
        if arr:
            self.publish(name, arr)

    def _all_mini(self, clock: Callable[[SymbolState], int], synthetic: bool) -> None:
        arr = []
        for state in self.symbols.values():
            if state.synthetic == synthetic and state.changed:
                state.changed = False
                now = clock(state)
                window, _ = state.window(now - stats.DAY_MS, now)
                if window:
                    arr.append(stats.mini_ticker(state.symbol, now, window))
        if arr:
            self.publish("!miniTicker@arr", arr)

    def _derive(self, name: StreamName, state: SymbolState, now: int) -> Any:
        if name.kind is StreamKind.PARTIAL_DEPTH:
            book = state.current_book()
            return book.top(name.levels) if book.last_update_id else None
        if name.kind is StreamKind.KLINE:
            return self._kline(name, state, now)
        span = {StreamKind.AVG_PRICE: _FIVE_MIN,
                StreamKind.WINDOW_TICKER: stats.WINDOW_MS.get(name.interval, 0)}
        window, before = state.window(now - span.get(name.kind, stats.DAY_MS), now)
        if not window:
            return None
        sym = state.symbol
        if name.kind is StreamKind.TICKER:
            return stats.ticker(sym, now, window, before, state.current_book().best())
        if name.kind is StreamKind.MINI_TICKER:
            return stats.mini_ticker(sym, now, window)
        if name.kind is StreamKind.AVG_PRICE:
            return stats.avg_price(sym, now, window)
        return stats.window_ticker(sym, now, name.interval, window)

    def _kline(self, name: StreamName, state: SymbolState, now: int) -> Any:
        tz = stats.TZ8_MS if name.name.endswith("@+08:00") else 0
        bounds = stats.bucket_bounds(now, name.interval, tz)
        last = state.kline_open.get(name.name)
        state.kline_open[name.name] = bounds
        if last is not None and last != bounds:
            closed = state.bucket(last)
            if closed:  # the closing update of the previous candle (x=true)
                self.publish(name.name, stats.kline(state.symbol, now, name.interval, last,
                                                    closed, True))
        trades = state.bucket(bounds)
        if not trades:
            return None
        return stats.kline(state.symbol, now, name.interval, bounds, trades, False)


def _trade_row(payload: dict[str, Any]) -> dict[str, Any]:
    """The REST ``trades`` row of a published trade."""
    quote = stats.fmt8(Decimal(payload["p"]) * Decimal(payload["q"]))
    return {"id": payload["t"], "price": payload["p"], "qty": payload["q"], "quoteQty": quote,
            "time": payload["T"], "isBuyerMaker": payload["m"], "isBestMatch": True}


def _cadence(name: StreamName) -> int:
    """Update speed in ms (web-socket-streams.md): klines 2000 (1s: 1000), partial depth as
    named, everything else 1000."""
    if name.kind is StreamKind.KLINE:
        return 1000 if name.interval == "1s" else 2000
    if name.kind is StreamKind.PARTIAL_DEPTH:
        return name.speed_ms
    return 1000
