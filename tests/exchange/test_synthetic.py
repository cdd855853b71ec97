"""The deterministic synthetic market: Binance shapes and contiguous sequences."""

from __future__ import annotations

import asyncio
import itertools
import re
from decimal import Decimal
from typing import Any

from binance_streamer.exchange import LocalExchange
from binance_streamer.exchange.book import OrderBook
from binance_streamer.exchange.control import SessionState
from binance_streamer.exchange.exchange_info import ExchangeInfo
from binance_streamer.exchange.frames import Event
from binance_streamer.exchange.history import History
from binance_streamer.exchange.hub import Hub
from binance_streamer.exchange.listings import fmt_units, listing, market_symbols
from binance_streamer.exchange.market import Market
from binance_streamer.exchange.synthetic_market import SyntheticMarket
from tests.exchange.helpers import TIMEOUT

STREAMS = ["btcusdt@trade", "btcusdt@aggTrade", "btcusdt@depth@100ms", "btcusdt@bookTicker",
           "btcusdt@kline_1s", "btcusdt@ticker", "btcusdt@miniTicker", "btcusdt@depth5",
           "btcusdt@avgPrice", "btcusdt@ticker_1h", "!miniTicker@arr", "btcusdt@blockTrade",
           "btcusdt@referencePrice", "!ticker_4h@arr", "btcusdt@kline_1m@+08:00"]


async def collect(ex: LocalExchange, connect: Any, seconds: float) -> dict[str, list[Any]]:
    client = await connect(ex.ws_url + "/stream?streams=" + "/".join(STREAMS))
    by_stream: dict[str, list[Any]] = {s: [] for s in STREAMS}
    end = asyncio.get_running_loop().time() + seconds
    async with asyncio.timeout(TIMEOUT):
        while asyncio.get_running_loop().time() < end:
            msg = await client.recv()
            by_stream[msg["stream"]].append(msg["data"])
    return by_stream


async def test_sequences_are_contiguous(connect: Any) -> None:
    """Trade ids, aggTrade ids and first/last trade ids, and depth U/u chain without gaps."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=200) as ex:
        got = await collect(ex, connect, 2.5)
    trades, aggs, depth = got["btcusdt@trade"], got["btcusdt@aggTrade"], got["btcusdt@depth@100ms"]
    assert [t["t"] for t in trades] == list(range(trades[0]["t"], trades[0]["t"] + len(trades)))
    assert [a["a"] for a in aggs] == list(range(aggs[0]["a"], aggs[0]["a"] + len(aggs)))
    assert all(b["f"] == a["l"] + 1 for a, b in itertools.pairwise(aggs))
    assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(depth))
    assert all(t["e"] == "trade" and t["s"] == "BTCUSDT" for t in trades)
    assert set(got["btcusdt@bookTicker"][0]) == {"u", "s", "b", "B", "a", "A"}
    blocks = [b["t"] for b in ex.history.events("btcusdt@blockTrade")]
    assert blocks == list(range(blocks[0], blocks[0] + len(blocks)))
    assert list(ex.history.events("btcusdt@blockTrade")[0]) == ["e", "E", "s", "t", "p", "q",
                                                                "T", "m"]


async def test_periodic_streams_have_binance_shapes(connect: Any) -> None:
    """Klines, tickers, partial depth, avgPrice and the all-market array arrive each second."""
    async with LocalExchange(synthetic=["BTCUSDT", "ETHUSDT"], rate=50) as ex:
        got = await collect(ex, connect, 2.3)
    kline = got["btcusdt@kline_1s"][-1]["k"]
    assert kline["T"] - kline["t"] == 999 and kline["t"] % 1000 == 0 and kline["i"] == "1s"
    assert list(got["btcusdt@depth5"][-1]) == ["lastUpdateId", "bids", "asks"]
    assert len(got["btcusdt@depth5"][-1]["bids"]) == 5
    assert got["btcusdt@ticker"][-1]["e"] == "24hrTicker"
    assert got["btcusdt@miniTicker"][-1]["e"] == "24hrMiniTicker"
    assert got["btcusdt@avgPrice"][-1]["i"] == "5m"
    assert got["btcusdt@ticker_1h"][-1]["e"] == "1hTicker"
    assert {m["s"] for m in got["!miniTicker@arr"][-1]} == {"BTCUSDT", "ETHUSDT"}
    assert {m["e"] for m in got["!ticker_4h@arr"][-1]} == {"4hTicker"}
    ref = got["btcusdt@referencePrice"][-1]
    assert list(ref) == ["e", "s", "r", "t"] and ref["r"] is not None
    k8 = got["btcusdt@kline_1m@+08:00"][-1]["k"]
    assert k8["i"] == "1m" and k8["t"] % 60_000 == 0


async def test_same_seed_same_market(connect: Any) -> None:
    """Two exchanges with the same seed produce the same prices and ids."""
    firsts = []
    for _ in range(2):
        async with LocalExchange(synthetic=["ABCUSDT"], rate=100, seed=7) as ex:
            client = await connect(ex.ws_url + "/ws/abcusdt@aggTrade")
            await client.recv()
            history = ex.history.events("abcusdt@aggTrade")[:3]
            firsts.append([(a["a"], a["p"], a["q"], a["f"], a["l"]) for a in history])
    assert firsts[0] == firsts[1]


# -- the synthetic market without a clock: realism, skew, determinism ---------------------------

BASE_MS = 1_700_000_000_000
SYMBOLS = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "GTOBTC", "QYSUSDT"]  # QYSUSDT is not listed
KINDS = ("trade", "aggTrade", "bookTicker", "depth@100ms", "depth")


class Listener:
    """A connection stand-in that keeps what the hub delivers, in order."""

    def __init__(self) -> None:
        self.state = SessionState()
        self.got: list[tuple[str, Any]] = []

    def deliver(self, event: Event) -> None:
        self.got.append((event.stream.partition("@")[2], event.payload))


def drive(symbols: list[str], seconds: float, seed: int = 0, rate: float = 200.0,
          ) -> tuple[Market, SyntheticMarket, Listener]:
    """A market of ``symbols`` (uniform rates) run for ``seconds`` of schedule, all streams of
    every symbol subscribed by one listener."""
    market = Market(Hub(), History())
    synthetic = SyntheticMarket(market, symbols, total_rate=rate * len(symbols), skew=0.0,
                                seed=seed)
    listener = Listener()
    market.hub.subscribe(listener, [f"{s.lower()}@{k}" for s in symbols for k in KINDS])
    synthetic.schedule(BASE_MS).advance(seconds * 1000)
    return market, synthetic, listener


def by_symbol(listener: Listener) -> dict[str, list[tuple[str, Any]]]:
    out: dict[str, list[tuple[str, Any]]] = {}
    for kind, payload in listener.got:
        out.setdefault(payload["s"], []).append((kind, payload))
    return out


def test_prices_and_quantities_are_on_the_served_tick_and_step_sizes() -> None:
    """Every price is a whole number of the symbol's served tickSize and every quantity of its
    stepSize (real filters for real symbols, consistent ones for invented symbols)."""
    market, _, listener = drive(SYMBOLS, 3.0)
    assert "QYSUSDT" not in ExchangeInfo([], 6000).by_symbol
    info = ExchangeInfo(list(market.symbols), 6000)
    filters = {s: {f["filterType"]: f for f in info.by_symbol[s]["filters"]} for s in SYMBOLS}
    assert filters["BTCUSDT"]["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["QYSUSDT"]["LOT_SIZE"]["stepSize"] == fmt_units(listing("QYSUSDT").step)
    for symbol, events in by_symbol(listener).items():
        tick = Decimal(filters[symbol]["PRICE_FILTER"]["tickSize"])
        step = Decimal(filters[symbol]["LOT_SIZE"]["stepSize"])
        prices, qtys = [], []
        for kind, p in events:
            if kind in ("trade", "aggTrade"):
                prices.append(p["p"])
                qtys.append(p["q"])
                assert Decimal(p["q"]) >= Decimal(filters[symbol]["LOT_SIZE"]["minQty"])
            elif kind == "bookTicker":
                prices += [p["b"], p["a"]]
                qtys += [p["B"], p["A"]]
            else:
                for price, qty in p["b"] + p["a"]:
                    prices.append(price)
                    qtys.append(qty)
        assert len(prices) > 100
        assert all(Decimal(p) % tick == 0 and Decimal(p) > 0 for p in prices), symbol
        assert all(Decimal(q) % step == 0 for q in qtys), symbol


def test_well_known_symbols_start_at_their_recorded_price() -> None:
    """BTCUSDT and ETHUSDT trade near their recorded 2021 prices; an invented symbol near its
    listing's price."""
    _, _, listener = drive(["BTCUSDT", "ETHUSDT", "QYSUSDT"], 1.0)
    first = {p["s"]: Decimal(p["p"]) for kind, p in reversed(listener.got) if kind == "trade"}
    assert abs(first["BTCUSDT"] - Decimal("58001.03")) < 10
    assert abs(first["ETHUSDT"] - Decimal("2064.73")) < 2
    assert abs(first["QYSUSDT"] / (Decimal(listing("QYSUSDT").price) / 10**8) - 1) < Decimal("0.01")


def test_trades_take_the_best_level_and_consume_its_quantity() -> None:
    """An aggregate trade is at the best bid (taker sells) or ask of the book ticker before it,
    for at most that level's quantity; the ticker after it shows the level reduced by the
    trade, or gone; the best bid is always below the best ask."""
    _, _, listener = drive(SYMBOLS, 5.0)
    consumed = 0
    for symbol, events in by_symbol(listener).items():
        tickers = [p for kind, p in events if kind == "bookTicker"]
        assert all(Decimal(t["b"]) < Decimal(t["a"]) for t in tickers), symbol
        before, agg = None, None
        for kind, p in events:
            if kind == "aggTrade" and before is not None:
                agg = p
                price, qty = (("b", "B") if agg["m"] else ("a", "A"))
                assert agg["p"] == before[price]
                assert Decimal(agg["q"]) <= Decimal(before[qty])
            elif kind == "bookTicker":
                if agg is not None and before is not None:  # the ticker right after the trade
                    if Decimal(agg["q"]) == Decimal(before[qty]):
                        consumed += 1
                        assert p[price] != agg["p"]
                    else:
                        assert p[price] == agg["p"]
                        assert Decimal(p[qty]) == Decimal(before[qty]) - Decimal(agg["q"])
                before, agg = p, None
    assert consumed > 10  # whole levels do get taken


def test_the_book_rebuilt_from_diffs_is_never_crossed_and_matches_the_ticker() -> None:
    """A book kept from the REST snapshot and the @depth@100ms diffs is never crossed, and its
    best levels are those of the last bookTicker with the diff's final update id."""
    market, synthetic, listener = drive(["ETHUSDT"], 0.0)
    snapshot = market.symbols["ETHUSDT"].current_book().top(1000)
    book = OrderBook.from_snapshot(snapshot)
    synthetic.schedule(BASE_MS).advance(3000)
    tickers = {p["u"]: p for kind, p in listener.got if kind == "bookTicker"}
    diffs = [p for kind, p in listener.got if kind == "depth@100ms"]
    assert diffs[0]["U"] == snapshot["lastUpdateId"] + 1
    for diff in diffs:
        assert book.apply(diff["U"], diff["u"], diff["b"], diff["a"])
        (bid, bid_qty), (ask, ask_qty) = book.best()  # type: ignore[misc]
        assert Decimal(bid) < Decimal(ask)
        if diff["u"] in tickers:
            assert (tickers[diff["u"]]["b"], tickers[diff["u"]]["B"]) == (bid, bid_qty)
            assert (tickers[diff["u"]]["a"], tickers[diff["u"]]["A"]) == (ask, ask_qty)


def test_ids_are_contiguous_across_the_whole_run() -> None:
    """Trade ids, aggTrade ids with their first/last trade ids, and depth U/u (100 ms and 1 s)
    chain without gaps."""
    _, _, listener = drive(SYMBOLS, 5.0)
    for symbol, events in by_symbol(listener).items():
        of = {k: [p for kind, p in events if kind == k] for k in KINDS}
        trades = [t["t"] for t in of["trade"]]
        assert trades == list(range(trades[0], trades[0] + len(trades))), symbol
        aggs = of["aggTrade"]
        assert [a["a"] for a in aggs] == list(range(aggs[0]["a"], aggs[0]["a"] + len(aggs)))
        assert all(b["f"] == a["l"] + 1 for a, b in itertools.pairwise(aggs))
        for kind in ("depth@100ms", "depth"):
            assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(of[kind])), kind
        assert len(of["depth"]) == 5 and len(of["depth@100ms"]) == 50


def test_a_skewed_market_is_busy_at_the_head_and_quiet_but_alive_in_the_tail() -> None:
    """With Zipf-skewed rates the busiest tenth of the symbols makes most of the trades, the
    first symbol far more than the last, and every symbol trades."""
    market = Market(Hub(), History(limit=10))
    synthetic = SyntheticMarket(market, n_symbols=200, total_rate=2000, skew=1.0, seed=1)
    start = {s.symbol: s.agg_id for s in synthetic.symbols}
    synthetic.schedule(BASE_MS).advance(10_000)
    counts = [s.agg_id - start[s.symbol] for s in synthetic.symbols]
    assert synthetic.symbols[0].symbol == "BTCUSDT"
    assert sum(counts[:20]) > 0.5 * sum(counts)
    assert counts[0] > 50 * counts[-1]
    assert min(counts) > 0
    assert abs(sum(counts) - 20_000) <= len(counts)  # the total rate asked, give or take a step


def test_market_symbols_are_real_first_then_invented_and_well_formed() -> None:
    """A market of 1,500 symbols lists the real TRADING spot symbols first (BTCUSDT, ETHUSDT)
    and then invented ones, all distinct and shaped like Binance symbols."""
    names = market_symbols(1500)
    info = ExchangeInfo([], 6000)
    real = [s for s in names if s in info.by_symbol]
    assert names[:2] == ["BTCUSDT", "ETHUSDT"] and len(set(names)) == 1500
    assert names[: len(real)] == real and len(real) > 1000
    assert all(info.by_symbol[s]["status"] == "TRADING" for s in real)
    assert all(re.fullmatch(r"[A-Z]{3,5}(USDT|BUSD|BTC|ETH|BNB)", s) for s in names[len(real):])


def test_same_seed_same_events_other_seed_other_events() -> None:
    """Two markets with the same seed publish identical events; another seed differs."""
    runs = [drive(["BTCUSDT", "QYSUSDT"], 2.0, seed=seed)[2].got for seed in (5, 5, 6)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


async def test_invented_symbols_are_served_with_their_filters(http: Any) -> None:
    """exchangeInfo serves an invented symbol with the tick and step sizes its trades use."""
    async with (LocalExchange(synthetic=["QYSUSDT"]) as ex,
                http.get(ex.rest_url + "/api/v3/exchangeInfo?symbol=QYSUSDT") as resp):
        body = await resp.json()
    filters = {f["filterType"]: f for f in body["symbols"][0]["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == fmt_units(listing("QYSUSDT").tick)
    assert filters["LOT_SIZE"]["stepSize"] == fmt_units(listing("QYSUSDT").step)


def test_without_rest_history_the_streams_flow_and_rest_keeps_no_trades() -> None:
    """A market made with ``rest_history=False`` publishes its trades but keeps none of them
    for REST; by default every published trade is kept."""
    for rest_history in (False, True):
        market = Market(Hub(), History())
        SyntheticMarket(market, ["BTCUSDT"], total_rate=100, rest_history=rest_history
                        ).schedule(BASE_MS).advance(1000)
        state = market.symbols["BTCUSDT"]
        published = market.history.events("btcusdt@trade")
        assert len(published) > 50
        kept = [t["id"] for t in state.trades]
        assert kept == ([t["t"] for t in published] if rest_history else [])


async def test_a_synthetic_market_of_many_symbols_is_listed_and_streams(connect: Any,
                                                                        http: Any) -> None:
    """``synthetic_market=N`` adds N listed symbols, real names first, beside the named ones;
    the busiest (first) symbol trades on its streams."""
    async with LocalExchange(synthetic=["QYSUSDT"], synthetic_market=40, market_rate=400,
                             seed=3) as ex:
        async with http.get(ex.rest_url + "/api/v3/exchangeInfo") as resp:
            listed = {s["symbol"] for s in (await resp.json())["symbols"]}
        names = [s.symbol for s in ex.synthetic]
        assert names[0] == "QYSUSDT" and names[1:3] == ["BTCUSDT", "ETHUSDT"]
        assert len(names) == 41 and set(names) <= listed
        assert abs(sum(ex.rates[1:]) - 400) < 1e-6 and ex.rates[1] > 10 * ex.rates[-1]
        client = await connect(ex.ws_url + "/ws/btcusdt@aggTrade")
        async with asyncio.timeout(TIMEOUT):
            ids = [(await client.recv())["a"] for _ in range(5)]
    assert ids == list(range(ids[0], ids[0] + 5))
