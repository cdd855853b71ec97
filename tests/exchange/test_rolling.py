"""Incremental rolling statistics: equal to a recomputation over the trades, bounded in memory,
and never reading the per-trade history to derive a tick."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binance_streamer.exchange import stats
from binance_streamer.exchange.columns import AggColumns
from binance_streamer.exchange.control import SessionState
from binance_streamer.exchange.frames import Event
from binance_streamer.exchange.history import History
from binance_streamer.exchange.hub import Hub
from binance_streamer.exchange.market import Market
from binance_streamer.exchange.rolling import HORIZON_S
from binance_streamer.exchange.stats import bucket_bounds, fmt8

STREAMS = ["btcusdt@ticker", "btcusdt@miniTicker", "btcusdt@ticker_1h", "btcusdt@ticker_4h",
           "btcusdt@ticker_1d", "btcusdt@avgPrice", "btcusdt@kline_1m", "btcusdt@kline_1h",
           "btcusdt@kline_1d@+08:00", "!miniTicker@arr", "!ticker_1h@arr"]
SPANS = {"btcusdt@ticker": 86_400_000, "btcusdt@miniTicker": 86_400_000,
         "btcusdt@ticker_1h": 3_600_000, "btcusdt@ticker_4h": 14_400_000,
         "btcusdt@ticker_1d": 86_400_000, "btcusdt@avgPrice": 300_000}
BASE_MS = 1_617_500_000_000


# -- the recomputation: the formulas as they were before the statistics became incremental ----

Q8, Q3, ZERO = Decimal("0.00000001"), Decimal("0.001"), Decimal(0)


def f8(d: Decimal) -> str:
    return f"{d.quantize(Q8):f}"


class Agg:
    """Open/high/low/close and volumes of a run of trades (aggTrade payloads), in Decimal."""

    def __init__(self, trades: list[dict[str, Any]]) -> None:
        prices = [Decimal(t["p"]) for t in trades]
        qtys = [Decimal(t["q"]) for t in trades]
        self.o, self.c, self.h, self.low = prices[0], prices[-1], max(prices), min(prices)
        self.v = sum(qtys, ZERO)
        self.q = sum((q * p for q, p in zip(qtys, prices, strict=True)), ZERO)
        buys = [(q, p) for q, p, t in zip(qtys, prices, trades, strict=True) if not t["m"]]
        self.bv = sum((q for q, _ in buys), ZERO)
        self.bq = sum((q * p for q, p in buys), ZERO)
        self.first, self.last = trades[0]["f"], trades[-1]["l"]
        self.w = self.q / self.v if self.v else self.c

    def change(self) -> tuple[str, str]:
        pct = (self.c - self.o) * 100 / self.o if self.o else ZERO
        return f8(self.c - self.o), f"{pct.quantize(Q3):f}"


def ticker(now: int, w: list[dict[str, Any]], before: dict[str, Any] | None) -> dict[str, Any]:
    a = Agg(w)
    p, pct = a.change()
    z = "0.00000000"
    return {"e": "24hrTicker", "E": now, "s": "BTCUSDT", "p": p, "P": pct, "w": f8(a.w),
            "x": (before or w[0])["p"], "c": w[-1]["p"], "Q": w[-1]["q"], "b": z, "B": z,
            "a": z, "A": z, "o": w[0]["p"], "h": f8(a.h), "l": f8(a.low), "v": f8(a.v),
            "q": f8(a.q), "O": now - 86_400_000, "C": now, "F": a.first, "L": a.last,
            "n": a.last - a.first + 1}


def window_ticker(now: int, name: str, w: list[dict[str, Any]]) -> dict[str, Any]:
    a = Agg(w)
    p, pct = a.change()
    span = {"1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}[name]
    return {"e": f"{name}Ticker", "E": now, "s": "BTCUSDT", "p": p, "P": pct, "o": w[0]["p"],
            "h": f8(a.h), "l": f8(a.low), "c": w[-1]["p"], "w": f8(a.w), "v": f8(a.v),
            "q": f8(a.q), "O": (now - span) // 60_000 * 60_000, "C": now, "F": a.first,
            "L": a.last, "n": a.last - a.first + 1}


def mini(now: int, w: list[dict[str, Any]]) -> dict[str, Any]:
    a = Agg(w)
    return {"e": "24hrMiniTicker", "E": now, "s": "BTCUSDT", "c": w[-1]["p"], "o": w[0]["p"],
            "h": f8(a.h), "l": f8(a.low), "v": f8(a.v), "q": f8(a.q)}


def kline(now: int, interval: str, b: tuple[int, int], w: list[dict[str, Any]], x: bool
          ) -> dict[str, Any]:
    a = Agg(w)
    return {"e": "kline", "E": now, "s": "BTCUSDT", "k": {
        "t": b[0], "T": b[1], "s": "BTCUSDT", "i": interval, "f": a.first, "L": a.last,
        "o": w[0]["p"], "c": w[-1]["p"], "h": f8(a.h), "l": f8(a.low), "v": f8(a.v),
        "n": a.last - a.first + 1, "x": x, "q": f8(a.q), "V": f8(a.bv), "Q": f8(a.bq),
        "B": "0"}}


class Recomputed:
    """Every tick's expected publications, recomputed from all trades published so far."""

    def __init__(self) -> None:
        self.trades: list[dict[str, Any]] = []
        self.candle: dict[str, tuple[int, int]] = {}
        self.mini_seen = self.arr_seen = 0

    def window(self, now: int, span: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        inside = [t for t in self.trades if now - span < t["T"] <= now]
        older = [t for t in self.trades if t["T"] <= now - span]
        return inside, (older[-1] if older else None)

    def tick(self, now: int) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for name, span in SPANS.items():
            w, before = self.window(now, span)
            if w:
                kind = name.split("@")[1]
                out[name] = [ticker(now, w, before) if kind == "ticker" else mini(now, w)
                             if kind == "miniTicker" else window_ticker(now, kind[7:], w)
                             if kind.startswith("ticker_") else
                             {"e": "avgPrice", "E": now, "s": "BTCUSDT", "i": "5m",
                              "w": f8(Agg(w).w), "T": w[-1]["T"]}]
        for name in STREAMS:
            if "@kline_" in name:
                out[name] = self.klines(name, now)
        n = len(self.trades)
        w, _ = self.window(now, 86_400_000)
        if n != self.mini_seen and w:
            out["!miniTicker@arr"] = [[mini(now, w)]]
        self.mini_seen = n
        w, _ = self.window(now, 3_600_000)
        if n != self.arr_seen and w:
            out["!ticker_1h@arr"] = [[window_ticker(now, "1h", w)]]
        self.arr_seen = n
        return {k: v for k, v in out.items() if v}

    def klines(self, name: str, now: int) -> list[Any]:
        interval = name.split("@")[1][6:]
        bounds = bucket_bounds(now, interval, 8 * 3_600_000 if name.endswith("+08:00") else 0)
        last, self.candle[name] = self.candle.get(name), bounds
        out = []
        if last is not None and last != bounds:
            closed = [t for t in self.trades if last[0] <= t["T"] <= last[1]]
            if closed:
                out.append(kline(now, interval, last, closed, True))
        current = [t for t in self.trades if bounds[0] <= t["T"] <= bounds[1]]
        if current:
            out.append(kline(now, interval, bounds, current, False))
        return out


# -- the exchange side ---------------------------------------------------------------------

class Listener:
    """A connection stand-in that keeps what the hub delivers."""

    def __init__(self) -> None:
        self.state = SessionState()
        self.got: dict[str, list[Any]] = {}
        self.closed: tuple[int | None, str] | None = None

    def deliver(self, event: Event) -> None:
        self.got.setdefault(event.stream, []).append(event.payload)

    def request_close(self, code: int | None, reason: str, *, linger: bool = True) -> None:
        self.closed = (code, reason)


def exchange(phase: int, streams: list[str], limit: int | None = None
             ) -> tuple[Market, Listener]:
    hub = Hub()
    market = Market(hub, History(limit))
    market.symbol("BTCUSDT", synthetic=True).tape.set_phase(phase)
    listener = Listener()
    listener.state.subscriptions.update(dict.fromkeys(streams))
    hub.subscribe(listener, streams)
    return market, listener


def agg_trade(agg_id: int, trade_id: int, n: int, time: int, price: str, qty: str,
              maker: bool) -> dict[str, Any]:
    return {"e": "aggTrade", "E": time, "s": "BTCUSDT", "a": agg_id, "p": price, "q": qty,
            "f": trade_id, "l": trade_id + n - 1, "T": time, "m": maker, "M": True}


EDGES = [0, 1, 999, 1000, 1001, 59_000, 60_000, 299_000, 300_000, 301_000, 3_599_000,
         3_600_000, 3_601_000, 14_400_000, 86_399_000, 86_400_000]  # the windows' edges
TRADES = st.lists(st.tuples(
    st.one_of(st.sampled_from(EDGES), st.integers(0, 3 * 3_600_000)),  # ms since the last trade
    st.integers(1, 400),  # price in ticks
    st.integers(0, 10**10),  # quantity in 1e-8
    st.booleans(),  # buyer is maker
    st.integers(1, 3),  # trades in the aggregate
    st.one_of(st.none(), st.integers(0, 3),  # a tick that many seconds after this trade
              st.sampled_from([296, 299, 300, 301, 3_599, 3_600, 86_399, 86_400])),
), min_size=1, max_size=80)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TRADES, st.integers(0, 999), st.sampled_from(["0.01", "0.00000001", "123.45"]))
def test_incremental_statistics_equal_a_recomputation(
        trades: list[tuple[int, int, int, bool, int, int | None]], phase: int, tick: str) -> None:
    """Every ticker, mini ticker, window ticker, avgPrice, kline and all-market array published
    at a tick on the symbol's second grid equals its recomputation over every trade so far."""
    market, listener = exchange(phase, STREAMS)
    expected = Recomputed()
    time, agg_id, trade_id, now, step = BASE_MS + phase, 1, 100, 0, 0
    for gap, price, qty, maker, n, tick_after in trades:
        time += gap
        payload = agg_trade(agg_id, trade_id, n, time, fmt8(price * Decimal(tick)),
                            fmt8(Decimal(qty).scaleb(-8)), maker)
        agg_id, trade_id = agg_id + 1, trade_id + n
        market.publish("btcusdt@aggTrade", payload)
        expected.trades.append(payload)
        if tick_after is None:
            continue
        now = max(now, BASE_MS + phase + (-((BASE_MS + phase - time) // 1000) + tick_after) * 1000)
        step += 2000
        listener.got.clear()
        market.periodic(lambda _s, at=now: at, step, synthetic=True)
        assert listener.got == expected.tick(now)


KLINES = ["btcusdt@kline_1s", "btcusdt@kline_1m", "btcusdt@kline_5m", "btcusdt@kline_1h",
          "btcusdt@kline_1d@+08:00"]


@settings(max_examples=100, deadline=None)
@given(TRADES, st.integers(0, 999), st.data())
def test_a_late_kline_subscriber_starts_from_everything_published(
        trades: list[tuple[int, int, int, bool, int, int | None]], phase: int,
        data: st.DataObject) -> None:
    """Kline streams subscribed after trading began start from every trade already published in
    their candle, also those timed after the tick (a replay clock trailing the trade times),
    and close it with all of them."""
    market, listener = exchange(phase, [])
    expected = Recomputed()
    minute = BASE_MS // 60_000 * 60_000
    time, agg_id = minute, 1
    near_edges = st.sampled_from([0, 1, 2, 500, 998, 999, 1000, 1001, 59_000, 59_998, 59_999])
    for gap, price, qty, maker, n, _ in trades:  # times near second and minute edges
        time = max(time, minute + (gap // 60_000) * 60_000 + data.draw(near_edges))
        payload = agg_trade(agg_id, agg_id * 3, n, time, fmt8(Decimal(price)),
                            fmt8(Decimal(qty).scaleb(-8)), maker)
        agg_id += 1
        market.publish("btcusdt@aggTrade", payload)
        expected.trades.append(payload)
    listener.state.subscriptions.update(dict.fromkeys(KLINES))
    market.hub.subscribe(listener, KLINES)
    first = data.draw(st.sampled_from(expected.trades))["T"]
    for step, now in enumerate([first, time, time + 3_600_000]):
        now = now - (now - phase) % 1000 + data.draw(st.sampled_from([0, 1000, 60_000]))
        listener.got.clear()
        market.periodic(lambda _s, at=now: at, 2000 * (step + 1), synthetic=True)
        wanted = {name: expected.klines(name, now) for name in KLINES}
        assert listener.got == {name: got for name, got in wanted.items() if got}


@settings(max_examples=100, deadline=None)
@given(TRADES, st.integers(0, 999), st.data())
def test_a_summary_at_any_time_equals_a_recomputation(
        trades: list[tuple[int, int, int, bool, int, int | None]], phase: int,
        data: st.DataObject) -> None:
    """`SymbolState.summary_after` (for REST tickers at the last trade's time, off the second
    grid) gives the 24 h and 5 min tickers a recomputation over the trades gives."""
    market, _ = exchange(phase, [])
    state = market.symbols["BTCUSDT"]
    expected = Recomputed()
    time = BASE_MS
    for i, (gap, price, qty, maker, n, _) in enumerate(trades):
        time += gap
        payload = agg_trade(i + 1, 10 * i, n, time, fmt8(Decimal(price)),
                            fmt8(Decimal(qty).scaleb(-8)), maker)
        market.publish("btcusdt@aggTrade", payload)
        expected.trades.append(payload)
    now = data.draw(st.sampled_from(expected.trades))["T"] + data.draw(st.integers(0, 2000))
    for span in (86_400_000, 300_000):
        run, before = state.summary_after(now - span, now)
        window, older = expected.window(now, span)
        assert (run is None) == (not window)
        if run is not None:
            got = stats.ticker_of("BTCUSDT", now, run, before, (None, None))
            assert got == ticker(now, window, older)


def test_a_tick_reads_no_per_trade_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once its streams are running, a tick derives every rolling statistic and kline from the
    per-second tape and candles, without reading the stored trades."""
    market, listener = exchange(0, STREAMS)
    for i in range(2000):
        market.publish("btcusdt@aggTrade", agg_trade(i + 1, i + 1, 1, BASE_MS + i * 500,
                                                     "100.00000000", "1.00000000", i % 2 == 0))
    market.periodic(lambda _s: BASE_MS + 1_000_000, 2000, synthetic=True)

    def forbidden(*_: Any) -> Any:
        raise AssertionError("the per-trade history was read")
    monkeypatch.setattr(AggColumns, "rec", forbidden)  # every per-trade read goes through it
    for i in range(2000, 4000):
        market.publish("btcusdt@aggTrade", agg_trade(i + 1, i + 1, 1, BASE_MS + i * 500,
                                                     "101.00000000", "1.00000000", False))
    listener.got.clear()
    market.periodic(lambda _s: BASE_MS + 2_000_000, 4000, synthetic=True)
    assert listener.got["btcusdt@ticker"][0]["n"] == 4000
    assert listener.got["btcusdt@avgPrice"][0]["w"] == "101.00000000"


def test_rolling_memory_is_bounded_by_the_longest_window() -> None:
    """Three days of trades leave at most a day of per-second buckets and window contents."""
    market, _ = exchange(0, STREAMS)
    state = market.symbols["BTCUSDT"]
    for i in range(26_000):  # one trade every 10 s
        now = BASE_MS + i * 10_000
        market.publish("btcusdt@aggTrade", agg_trade(i + 1, i + 1, 1, now, "1.00000000",
                                                     "1.00000000", False))
        if i % 360 == 0:
            market.periodic(lambda _s, at=now: at, 2000 * (i + 1), synthetic=True)
    assert len(state.tape.buckets) <= HORIZON_S // 10 + 2
    assert all(len(w.inside) <= w.span // 10 + 1 for w in state.windows.values())
