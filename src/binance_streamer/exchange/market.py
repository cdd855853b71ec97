"""The market state behind the timeline: per-symbol trade history and order book, the derived
periodic streams (tickers, mini tickers, klines, average price, partial depth, 1000 ms diff
depth) and publication into `History` and the `Hub`.

Derived periodic streams are computed only while some client is subscribed to them, and never
for a stream the recording itself carries. They are incremental (`rolling`): each trade updates
its symbol's per-second tape and the candles of subscribed kline streams, and each tick folds
whole seconds into the subscribed windows, so the work per trade and per second does not grow
with the window or the run. Their state is dropped with the last subscriber.

Depth of a replayed symbol: ``<symbol>@depth`` (1000 ms) is the recorded ``@depth@100ms`` diffs
merged (`DepthMerge`) every 1000 ms of the replay grid, nothing for a second without diffs;
``<symbol>@depth<N>[@100ms]`` is the top of the book rebuilt from the recorded snapshot and
diffs. REST snapshots may look one recorded diff ahead (`expect_depth`, `DepthLookahead`).
Trades are never derived: ``<symbol>@trade`` carries only what a recording holds, and a
recording of aggregate trades alone gives ``@trade`` subscribers nothing (an aggregate trade
does not say the quantity, time or order ids of each trade it aggregates).

With a bounded `History` (long command-line runs) only the recorded streams are kept in it
(REST answers recorded klines and book tickers from it; the payloads are the replay's own);
what REST needs of generated data lives in `SymbolState`, bounded by the same limit.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from binance_streamer.core.streams import InvalidStreamName, StreamKind, StreamName, parse_stream
from binance_streamer.exchange import stats
from binance_streamer.exchange.book import OrderBook
from binance_streamer.exchange.columns import (
    AggColumns,
    AggSlice,
    AggView,
    TradeColumns,
    TradeView,
)
from binance_streamer.exchange.depth_merge import DepthLookahead, DepthMerge
from binance_streamer.exchange.frames import Event
from binance_streamer.exchange.history import History
from binance_streamer.exchange.hub import Hub
from binance_streamer.exchange.rolling import NEVER as _NEVER
from binance_streamer.exchange.rolling import Candles, Tape, Window

if TYPE_CHECKING:
    from binance_streamer.exchange.connection import Connection

__all__ = ["Market", "SymbolState"]

_PERIODIC = {StreamKind.TICKER, StreamKind.MINI_TICKER, StreamKind.WINDOW_TICKER,
             StreamKind.AVG_PRICE, StreamKind.KLINE, StreamKind.PARTIAL_DEPTH,
             StreamKind.DIFF_DEPTH}
_FIVE_MIN_S = 300
_DAY_S = stats.DAY_MS // 1000
WINDOW_S = {name: ms // 1000 for name, ms in stats.WINDOW_MS.items()}
REPLAY_ENDED = (1000, "Replay ended")  # the close of a connection subscribing after the end


class SymbolState:
    """One symbol's history: aggregate trades (sorted by time), trades and its order book.

    REST history (`aggs`, `agg_times`, `trades`) is stored column by column (`columns`),
    trimmed to about ``limit`` entries. Each aggregate trade also goes into the per-second
    ``tape`` (the last 24 h, for the rolling ``windows``) and the ``candles`` of subscribed kline
    streams. Each replayed depth diff goes into the ``book`` and the ``depth_merges`` of
    subscribed derived ``@depth`` streams.
    """

    def __init__(self, symbol: str, *, synthetic: bool, limit: int | None = None) -> None:
        self.symbol = symbol
        self.synthetic = synthetic
        self._aggs = AggColumns(limit)
        self._last_agg_id: int | None = None
        self._trades = TradeColumns(limit)
        self._last_trade_id: int | None = None
        self.aggs = AggView(self._aggs)
        self.agg_times = self._aggs.times
        self.trades = TradeView(self._trades)
        self.book = OrderBook()
        self.recorded: set[str] = set()
        self.changed = False
        self.base_ms = 0
        self.refresh: Callable[[], None] | None = None
        self.agg_count = 0
        self.last_price: str | None = None
        self.tape = Tape()
        self.windows: dict[int, Window] = {}  # span in seconds -> window
        self.candles: dict[str, Candles] = {}  # kline stream name -> its candles
        self.depth_merges: dict[str, DepthMerge] = {}  # derived diff-depth stream -> its merge
        self.lookahead: DepthLookahead | None = None

    def book_now(self) -> OrderBook:
        """The order book as published so far (a synthetic symbol's is brought up to date)."""
        if self.refresh is not None:
            self.refresh()
        return self.book

    def current_book(self) -> OrderBook:
        """The order book a REST depth request sees now: `book_now`, or one recorded diff ahead
        when the exchange is between two pushes of a busy diff stream (`DepthLookahead`)."""
        book = self.book_now()
        return book if self.lookahead is None else self.lookahead.snapshot(book)

    def add_agg(self, payload: dict[str, Any]) -> None:
        """Record one published aggregate trade (ids at or below the last one are ignored)."""
        agg_id = payload["a"]
        if self._last_agg_id is not None and agg_id <= self._last_agg_id:
            return
        self._last_agg_id = agg_id
        p, q, first, last, time, maker = (payload["p"], payload["q"], payload["f"], payload["l"],
                                          payload["T"], payload["m"])
        pu, qu = stats.units(p), stats.units(q)
        self._aggs.append(agg_id, p, q, first, last, time, maker, qu)
        self.changed = True
        self.agg_count += 1
        self.last_price = p
        self.tape.add(p, q, first, last, time, maker, pu, qu)
        for candles in self.candles.values():
            candles.add(p, q, first, last, time, maker, pu, qu)

    def add_trade(self, payload: dict[str, Any]) -> None:
        """Record one published trade (ids at or below the last one are ignored)."""
        trade_id = payload["t"]
        if self._last_trade_id is not None and trade_id <= self._last_trade_id:
            return
        self._last_trade_id = trade_id
        self._trades.append(trade_id, payload["p"], payload["q"], payload["T"], payload["m"])

    def window(self, start_ms: int, end_ms: int) -> tuple[AggSlice, stats.AggRec | None]:
        """Aggregate trades with ``start_ms < T <= end_ms`` and the one before them.

        The slice summarises itself from the tape (`stats.summarize` in O(seconds)).
        """
        lo = bisect_right(self.agg_times, start_ms)
        hi = bisect_right(self.agg_times, end_ms)
        rows = AggSlice(self._aggs, lo, hi, lambda: self.summary(start_ms + 1, end_ms))
        return rows, (self.aggs[lo - 1] if lo > 0 else None)

    def bucket(self, bounds: tuple[int, int]) -> AggSlice:
        """Aggregate trades inside a kline's open..close time (summarised like `window`)."""
        lo = bisect_left(self.agg_times, bounds[0])
        hi = bisect_right(self.agg_times, bounds[1])
        return AggSlice(self._aggs, lo, hi, lambda: self.summary(*bounds))

    def rolling(self, span_s: int, now_ms: int) -> tuple[stats.Run | None, str | None]:
        """The run of the trades with ``now - span < T <= now`` and the price of the trade
        before them (`Window.query`); the window is kept for the next second."""
        window = self.windows.get(span_s)
        if window is None:
            window = self.windows[span_s] = Window(self.tape, span_s)
        return window.query(now_ms)

    def summary(self, lo: int, hi: int) -> stats.Run | None:
        """The run of every published trade with ``lo <= T <= hi``: the tape's whole seconds
        inside, REST history at the edges (and before the tape)."""
        tape = self.tape
        first_key = tape.key(lo - 1) + 1  # whole seconds: phase + (k-1)*1000 < T <= ... + k*1000
        last_key = (hi - tape.phase) // 1000
        oldest = tape.first_key()
        if oldest is None or max(first_key, oldest) > last_key:
            return self._rest_run(None, lo, hi)
        first_key = max(first_key, oldest)
        run = self._rest_run(None, lo, tape.phase + (first_key - 1) * 1000)
        for bucket in tape.between(first_key, last_key):
            if run is None:
                run = bucket.copy()
            else:
                run.merge(bucket)
        return self._rest_run(run, tape.phase + last_key * 1000 + 1, hi)

    def summary_after(self, start_ms: int, end_ms: int) -> tuple[stats.Run | None, str | None]:
        """The run of the trades with ``start < T <= end`` (`summary`, O(seconds) rather than
        O(trades): for REST tickers at any time) and the price of the last trade before."""
        return self.summary(start_ms + 1, end_ms), self.price_at(start_ms)

    def price_at(self, time_ms: int) -> str | None:
        """The price of the last trade with ``T <= time_ms`` (from the REST history, else the
        tape's last whole second before it), None when there is none."""
        i = bisect_right(self.agg_times, time_ms)
        if i:
            return self._aggs.prices[i - 1]
        last_key = (time_ms - self.tape.phase) // 1000
        older = self.tape.between(_NEVER, last_key)
        return older[-1].close if older else None

    def _rest_run(self, run: stats.Run | None, lo: int, hi: int) -> stats.Run | None:
        """``run`` followed by the REST history's trades with ``lo <= T <= hi``."""
        if lo > hi:
            return run
        first = bisect_left(self.agg_times, lo)
        part = stats.summarize(self.aggs[first:bisect_right(self.agg_times, hi)])
        if run is None or part is None:
            return run or part
        run.merge(part)
        return run

    def __repr__(self) -> str:
        return (f"<SymbolState {self.symbol} aggTrades={len(self.aggs)} "
                f"trades={len(self.trades)} {self.book!r}>")


class _Derived(NamedTuple):
    """One subscribed derived stream of one symbol, published every ``cadence`` ms."""

    name: str
    parsed: StreamName
    state: SymbolState
    cadence: int


class _Plan(NamedTuple):
    """What `Market.periodic` computes for the current subscriptions."""

    derived: list[_Derived]
    mini_arr: bool  # ``!miniTicker@arr``
    extras: list[str]  # ``!ticker_<w>@arr`` and ``<symbol>@referencePrice``, sorted


class Market:
    """All symbols' state; publishes events to history and subscribers."""

    def __init__(self, hub: Hub, history: History) -> None:
        self.hub = hub
        self.history = history
        self.symbols: dict[str, SymbolState] = {}
        self._parsed: dict[str, StreamName | None] = {}
        self._arr_seen: dict[str, dict[str, int]] = {}
        self._kept: set[str] = set()  # kept in a bounded history: the recorded streams
        self._plan = _Plan([], False, [])
        self._plan_version = -1

    def symbol(self, symbol: str, *, synthetic: bool = False) -> SymbolState:
        """The state of ``symbol`` (upper case), created on first use."""
        state = self.symbols.get(symbol)
        if state is None:
            state = self.symbols[symbol] = SymbolState(symbol, synthetic=synthetic,
                                                       limit=self.history.limit)
            self._plan_version = -1
        return state

    def mark_recorded(self, state: SymbolState, stream: str) -> None:
        """``stream`` of ``state`` comes from a recording: never derived, always in history."""
        state.recorded.add(stream)
        self._kept.add(stream)
        self._plan_version = -1

    def publish(self, stream: str, payload: Any) -> None:
        """Publish one event on the shared timeline: history, market state, subscribers."""
        if self.history.limit is None or stream in self._kept:
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
                for merge in state.depth_merges.values():
                    merge.add(payload)

    def _state(self, symbol: str) -> SymbolState:
        """The state of ``symbol``: one dict lookup when known, else created by `symbol`."""
        return self.symbols.get(symbol) or self.symbol(symbol)

    def snapshot(self, symbol: str, body: dict[str, Any]) -> None:
        """A recorded REST depth snapshot reached the timeline: adopt it if it is newer."""
        state = self.symbol(symbol)
        if int(body["lastUpdateId"]) > state.book.last_update_id:
            state.book = OrderBook.from_snapshot(body)

    def expect_depth(self, items: Iterable[tuple[str, Any]],
                     id_steps: Mapping[str, int] | None = None) -> None:
        """The recorded ``(stream, payload)`` items in timeline order: each replayed symbol's
        ``@depth@100ms`` diffs let its REST snapshots look one diff ahead (`DepthLookahead`),
        so that some fall strictly inside the next diff's ``U..u``. ``id_steps``: per symbol,
        what each pass of a looping replay adds to update ids. Call it once the initial books
        are set: diffs at or below a book's ``lastUpdateId`` (which the book dropped) are left
        out. Replaces earlier calls: a replayed symbol without diffs in ``items`` has none."""
        diffs: dict[str, list[dict[str, Any]]] = {}
        for stream, payload in items:
            is_diff = isinstance(payload, dict) and payload.get("e") == "depthUpdate"
            if is_diff and stream.endswith("@depth@100ms"):
                diffs.setdefault(payload["s"], []).append(payload)
        for state in self.symbols.values():
            if not state.synthetic:
                state.lookahead = None
        for symbol, found in diffs.items():
            state = self.symbol(symbol)
            if not state.synthetic:
                start = state.book.last_update_id
                state.lookahead = DepthLookahead([d for d in found if d["u"] > start],
                                                 (id_steps or {}).get(symbol, 0))

    def _parse(self, name: str) -> StreamName | None:
        if name not in self._parsed:
            try:
                self._parsed[name] = parse_stream(name)
            except InvalidStreamName:
                self._parsed[name] = None
        return self._parsed[name]

    def periodic(self, clock: Callable[[SymbolState], int], step_ms: int, synthetic: bool
                 ) -> None:
        """Emit the subscribed derived streams due at this ``step_ms`` (a multiple of 100) of
        the timeline of replayed (or synthetic) symbols; ``clock`` gives a symbol's event time,
        on its second grid (`SymbolState.tape`) at multiples of 1000."""
        plan = self._current_plan()
        for item in plan.derived:
            if item.state.synthetic != synthetic or step_ms % item.cadence:
                continue
            payload = self._derive(item.parsed, item.state, clock(item.state))
            if payload is not None:
                self.publish(item.name, payload)
        if step_ms % 1000 == 0:
            if plan.mini_arr:
                self._all_mini(clock, synthetic)
            self._extras(plan.extras, clock, synthetic)

    def _current_plan(self) -> _Plan:
        if self._plan_version != self.hub.version:
            self._plan_version = self.hub.version
            self._plan = self._build_plan()
        return self._plan

    def _build_plan(self) -> _Plan:
        """The derived streams somebody is subscribed to; drops the state of the others."""
        derived, extras = [], []
        names = sorted(self.hub.subs)
        self._parsed = {name: self._parse(name) for name in names}
        spans: dict[str, set[int]] = {sym: set() for sym in self.symbols}
        for name in names:
            parsed = self._parsed[name]
            if name.startswith("!ticker_") and name.endswith("@arr"):
                extras.append(name)
                for wanted in spans.values():
                    wanted.add(WINDOW_S[name[8:10]])
            elif name.endswith("@referencePrice"):
                extras.append(name)
            elif parsed is not None and parsed.kind in _PERIODIC:
                state = self.symbols.get(parsed.symbol.upper())
                if state is not None and _derivable(parsed, state):
                    derived.append(_Derived(name, parsed, state, _cadence(parsed)))
                    if parsed.kind is StreamKind.DIFF_DEPTH:
                        state.depth_merges.setdefault(name, DepthMerge())
                    if (span := _span_s(parsed)) is not None:
                        spans[state.symbol].add(span)
        mini_arr = "!miniTicker@arr" in self.hub.subs
        for state in self.symbols.values():
            wanted = spans[state.symbol] | ({_DAY_S} if mini_arr else set())
            state.windows = {s: w for s, w in state.windows.items() if s in wanted}
            state.candles = {n: c for n, c in state.candles.items() if n in self.hub.subs}
            state.depth_merges = {n: m for n, m in state.depth_merges.items()
                                  if n in self.hub.subs}
        self._arr_seen = {n: seen for n, seen in self._arr_seen.items() if n in self.hub.subs}
        return _Plan(derived, mini_arr, extras)

    def _extras(self, names: list[str], clock: Callable[[SymbolState], int], synthetic: bool
                ) -> None:
        """Streams core.streams does not parse: ``!ticker_<w>@arr`` and ``@referencePrice``."""
        for name in names:
            if name.startswith("!"):
                self._window_arr(name, name[8:10], clock, synthetic)
                continue
            state = self.symbols.get(name.partition("@")[0].upper())
            if state is not None and state.synthetic == synthetic:
                # web-socket-streams.md "Reference Price Streams": r is null when unknown
                self.publish(name, {"e": "referencePrice", "s": state.symbol,
                                    "r": state.last_price, "t": clock(state)})

    def _window_arr(self, name: str, window: str, clock: Callable[[SymbolState], int],
                    synthetic: bool) -> None:
        """``!ticker_<w>@arr``: window tickers of the symbols that traded since the last one
        (web-socket-streams.md "All Market Rolling Window Statistics Streams")."""
        seen = self._arr_seen.setdefault(name, {})
        arr = []
        for state in self.symbols.values():
            if state.synthetic != synthetic or seen.get(state.symbol) == state.agg_count:
                continue
            seen[state.symbol] = state.agg_count
            now = clock(state)
            run, _ = state.rolling(WINDOW_S[window], now)
            if run is not None:
                arr.append(stats.window_ticker_of(state.symbol, now, window, run))
        if arr:
            self.publish(name, arr)

    def _all_mini(self, clock: Callable[[SymbolState], int], synthetic: bool) -> None:
        arr = []
        for state in self.symbols.values():
            if state.synthetic == synthetic and state.changed:
                state.changed = False
                now = clock(state)
                run, _ = state.rolling(_DAY_S, now)
                if run is not None:
                    arr.append(stats.mini_ticker_of(state.symbol, now, run))
        if arr:
            self.publish("!miniTicker@arr", arr)

    def _derive(self, name: StreamName, state: SymbolState, now: int) -> Any:
        if name.kind is StreamKind.PARTIAL_DEPTH:
            # web-socket-streams.md "Partial Book Depth Streams": the top <levels> per side
            book = state.book_now()
            return book.top(name.levels) if book.last_update_id else None
        if name.kind is StreamKind.DIFF_DEPTH:
            merge = state.depth_merges.get(name.name)
            return merge.take(state.symbol, now) if merge is not None else None
        if name.kind is StreamKind.KLINE:
            return self._kline(name, state, now)
        span = _span_s(name)
        run, before = state.rolling(span if span is not None else _DAY_S, now)
        if run is None:
            return None
        sym = state.symbol
        if name.kind is StreamKind.TICKER:
            return stats.ticker_of(sym, now, run, before, state.book_now().best())
        if name.kind is StreamKind.MINI_TICKER:
            return stats.mini_ticker_of(sym, now, run)
        if name.kind is StreamKind.AVG_PRICE:
            return stats.avg_price_of(sym, now, run)
        return stats.window_ticker_of(sym, now, name.interval, run)

    def _kline(self, name: StreamName, state: SymbolState, now: int) -> Any:
        """The kline update at ``now``; first the closing update (x=true) of the candle the
        previous update was about, when ``now`` is past it."""
        tz = stats.TZ8_MS if name.name.endswith("@+08:00") else 0
        bounds = stats.bucket_bounds(now, name.interval, tz)
        candles = state.candles.get(name.name)
        if candles is not None and candles.bounds != bounds:
            last = candles.bounds
            closed = candles.advance(bounds)
            if closed is not None:
                self.publish(name.name, stats.kline_of(state.symbol, now, name.interval, last,
                                                       closed, True))
            if bounds[0] < last[0]:  # the clock went back (a looping replay)
                candles = None
        if candles is None:
            candles = state.candles[name.name] = _candles(state, name.interval, tz, bounds)
        run = candles.current
        if run is None:
            return None
        return stats.kline_of(state.symbol, now, name.interval, bounds, run, False)

    # -- the end of a replay ----------------------------------------------------------------

    def end_replay(self) -> None:
        """The recording has been published (no loop): from now on a connection subscribing
        while none of its streams can get data any more is closed with `REPLAY_ENDED` (1000,
        "Replay ended") instead of waiting forever; synthetic symbols go on as before."""
        self.hub.on_subscribe = self._after_end

    def _after_end(self, conn: Connection, names: list[str]) -> None:
        if not any(self._live(name) for name in conn.state.subscriptions):
            conn.request_close(*REPLAY_ENDED)

    def _live(self, name: str) -> bool:
        """Whether stream ``name`` can still publish: a synthetic symbol's, or an all-market
        stream while a synthetic market runs."""
        symbol = name.partition("@")[0]
        if symbol.startswith("!"):
            return any(state.synthetic for state in self.symbols.values())
        state = self.symbols.get(symbol.upper())
        return state is not None and state.synthetic


def _candles(state: SymbolState, interval: str, tz: int, bounds: tuple[int, int]) -> Candles:
    """The candles of a kline stream starting at the candle ``bounds``, from what was published
    (including trades of later candles, when a replay's clock trails the trade times)."""
    candles = Candles(interval, tz, bounds, {})
    current = state.summary(*bounds)
    if current is not None:
        candles.runs[bounds[0]] = current
    for rec in state.aggs[bisect_right(state.agg_times, bounds[1]):]:
        candles.add(rec.p, rec.q, rec.first_id, rec.last_id, rec.time, rec.buyer_maker,
                    stats.units(rec.p), stats.units(rec.q))
    return candles


def _derivable(name: StreamName, state: SymbolState) -> bool:
    """Whether ``state`` can derive stream ``name``: never a recorded stream; diff depth only
    at 1000 ms, of a replayed symbol whose recording has the 100 ms diffs."""
    if name.name in state.recorded:
        return False
    if name.kind is StreamKind.DIFF_DEPTH:
        return (not state.synthetic and name.speed_ms == 1000
                and f"{name.symbol}@depth@100ms" in state.recorded)
    return True


def _span_s(name: StreamName) -> int | None:
    """The rolling window of a ticker-like stream in seconds (None for other kinds)."""
    if name.kind in (StreamKind.TICKER, StreamKind.MINI_TICKER):
        return _DAY_S
    if name.kind is StreamKind.AVG_PRICE:
        return _FIVE_MIN_S
    if name.kind is StreamKind.WINDOW_TICKER:
        return WINDOW_S.get(name.interval, _DAY_S)
    return None


def _cadence(name: StreamName) -> int:
    """Update speed in ms (web-socket-streams.md): klines 2000 (1s: 1000), depth as named,
    everything else 1000."""
    if name.kind is StreamKind.KLINE:
        return 1000 if name.interval == "1s" else 2000
    if name.kind in (StreamKind.PARTIAL_DEPTH, StreamKind.DIFF_DEPTH):
        return name.speed_ms
    return 1000
