"""One consistent timeline: the replay clock, ``rebase_time`` and the continuing ``loop``."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from itertools import pairwise
from typing import Any

from binance_streamer.exchange import BUNDLED_SESSIONS, LocalExchange
from binance_streamer.exchange.book import OrderBook
from binance_streamer.exchange.history import History
from binance_streamer.exchange.hub import Hub
from binance_streamer.exchange.market import Market
from binance_streamer.exchange.sources import load_source
from binance_streamer.exchange.timeline import ReplayTimeline
from tests.exchange.helpers import TIMEOUT

APRIL_4 = next(p for p in BUNDLED_SESSIONS if "04-04" in p.name)
APRIL_5 = next(p for p in BUNDLED_SESSIONS if "04-05" in p.name)
NOW = 1_800_000_012_345  # an injected wall clock, ms
PASSES = 3


class WatchedMarket(Market):
    """A market that keeps, after each depth diff of ``symbol``, the diff and a copy of its own
    book (the state REST ``/api/v3/depth`` answers from), and sets ``reached`` once it publishes
    an event of ``symbol`` at or past the time ``until``."""

    def __init__(self, symbol: str) -> None:
        super().__init__(Hub(), History())
        self.watched = symbol
        self.diffs: list[tuple[dict[str, Any], OrderBook]] = []
        self.until: int | None = None
        self.reached = asyncio.Event()

    def publish(self, stream: str, payload: Any) -> None:
        super().publish(stream, payload)
        if not isinstance(payload, dict) or payload.get("s") != self.watched:
            return
        if self.until is not None and payload.get("E", 0) >= self.until:
            self.reached.set()
        if payload.get("e") == "depthUpdate":
            book = self.symbols[self.watched].book
            self.diffs.append((payload, copied(book)))


def copied(book: OrderBook) -> OrderBook:
    """A copy of ``book`` that later diffs do not change."""
    copy = OrderBook(book.last_update_id)
    copy.bids, copy.asks = dict(book.bids), dict(book.asks)
    return copy


async def run_passes(market: WatchedMarket, timeline: ReplayTimeline, passes: int) -> None:
    """Run a looping timeline at max speed until it has published into pass ``passes``."""
    market.until = timeline.base_ms + passes * timeline.period_ms
    task = asyncio.create_task(timeline.run())
    async with asyncio.timeout(TIMEOUT):
        await market.reached.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def rebuilt(snapshot: dict[str, Any], diffs: list[dict[str, Any]]) -> OrderBook:
    """A client's book: a REST snapshot, then the diffs after it (web-socket-streams.md "How to
    manage a local order book correctly": drop ``u <= lastUpdateId``, then each must chain)."""
    book = OrderBook.from_snapshot(snapshot)
    for diff in diffs:
        if diff["u"] <= book.last_update_id:
            continue
        assert diff["U"] <= book.last_update_id + 1, "the diffs do not chain"
        for side, levels in ((book.bids, diff["b"]), (book.asks, diff["a"])):
            for price, qty in levels:
                if Decimal(qty):
                    side[price] = qty
                else:
                    side.pop(price, None)
        book.last_update_id = diff["u"]
    return book


async def rest(http: Any, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200
        return await resp.json()


# -- the clock ---------------------------------------------------------------------------------

async def test_rest_before_the_first_subscription_answers_from_the_replays_start(
        http: Any) -> None:
    """Before the timeline starts, serverTime is the recording's start and the book is the
    recorded snapshot; no trades yet (the recording holds none before its start)."""
    src = load_source(APRIL_4)
    snapshot = next(i.payload for i in src.items if i.snapshot_symbol == "DOTUSDT")
    async with LocalExchange(replay=[APRIL_4], speed=1.0) as ex:
        time = await rest(http, ex.rest_url + "/api/v3/time")
        info = await rest(http, ex.rest_url + "/api/v3/exchangeInfo")
        depth = await rest(http, ex.rest_url + "/api/v3/depth?symbol=DOTUSDT&limit=5")
        aggs = await rest(http, ex.rest_url + "/api/v3/aggTrades?symbol=DOTUSDT")
    assert time == {"serverTime": src.base_ms} and info["serverTime"] == src.base_ms
    assert depth == {"lastUpdateId": snapshot["lastUpdateId"], "bids": snapshot["bids"][:5],
                     "asks": snapshot["asks"][:5]}
    assert aggs == []


async def test_rest_time_follows_the_replay_clock(connect: Any, http: Any) -> None:
    """Once the replay has published everything, serverTime is past the recording's last
    offset, not the wall clock: a client's "last hour" is the replayed hour."""
    src = load_source(APRIL_4)
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex:
        await connect(ex.ws_url + "/ws/btcusdt@aggTrade")
        async with asyncio.timeout(TIMEOUT):
            await ex.finished()
        time = (await rest(http, ex.rest_url + "/api/v3/time"))["serverTime"]
    end = src.base_ms + int(src.duration_ms)
    assert end <= time < end + TIMEOUT * 1000


def test_without_recorded_items_the_clock_is_the_wall_clock() -> None:
    """With nothing to replay (a synthetic market only) the clock is the injected wall clock."""
    timeline = ReplayTimeline(Market(Hub(), History()), [], None, wall_ms=lambda: NOW)
    assert timeline.now_ms() == NOW


# -- rebase_time -------------------------------------------------------------------------------

async def test_rebase_moves_every_recorded_time_to_start_just_before_now() -> None:
    """Every recorded time moves by one delta, a whole number of minutes (the recorded klines
    are 1m) so candles stay on their grid, and the replay starts within a minute before now."""
    src = load_source(APRIL_4)
    market = Market(Hub(), History())
    timeline = ReplayTimeline(market, [src], None, rebase_time=True, wall_ms=lambda: NOW)
    start = timeline.now_ms()
    await timeline.run()
    delta = start - src.base_ms
    assert timeline.grid_ms == 60_000 and delta % 60_000 == 0 and NOW - 60_000 < start <= NOW
    for stream in ("btcusdt@aggTrade", "dotusdt@depth@100ms", "ethusdt@kline_1m"):
        recorded = [i.payload for i in src.items if i.stream == stream]
        got = market.history.events(stream)
        assert [g["E"] - r["E"] for g, r in zip(got, recorded, strict=True)] == [delta] * len(got)
    klines = market.history.events("ethusdt@kline_1m")
    assert all(k["k"]["t"] % 60_000 == 0 and k["k"]["T"] % 60_000 == 59_999 for k in klines)
    trades = market.history.events("btcusdt@aggTrade")
    assert market.symbols["BTCUSDT"].aggs[-1].time == trades[-1]["T"]


async def test_rebase_time_reaches_rest_and_streams(connect: Any, http: Any) -> None:
    """``LocalExchange(rebase_time=True)``: serverTime and the streamed times move by the same
    whole number of minutes."""
    src = load_source(APRIL_4)
    first = next(i.payload for i in src.items if i.stream == "btcusdt@aggTrade")
    async with LocalExchange(replay=[APRIL_4], speed=None, rebase_time=True) as ex:
        client = await connect(ex.ws_url + "/ws/btcusdt@aggTrade")
        got = await client.recv()
        start = ex.timeline.base_ms
        await rest(http, ex.rest_url + "/api/v3/time")
    delta = start - src.base_ms
    assert delta > 0 and delta % 60_000 == 0
    assert got == {**first, "E": first["E"] + delta, "T": first["T"] + delta}


# -- loop ----------------------------------------------------------------------------------------

async def test_looped_depth_diffs_chain_and_books_rebuild_across_passes() -> None:
    """Over three passes the diff stream's U/u chain is contiguous, and a book rebuilt from a
    REST snapshot taken in any pass plus the diffs after it equals the exchange's own book
    after every diff, across each pass boundary."""
    src = load_source(APRIL_4)
    last_e = [i.payload["E"] for i in src.items if i.stream == "dotusdt@depth@100ms"][-1]
    market = WatchedMarket("DOTUSDT")
    timeline = ReplayTimeline(market, [src], None, loop=True)
    await run_passes(market, timeline, PASSES)
    diffs = [d for d, _ in market.diffs]
    assert all(b["U"] == a["u"] + 1 for a, b in pairwise(diffs))
    bridges = [next(n for n, d in enumerate(diffs) if d["E"] > last_e + k * timeline.period_ms)
               for k in range(PASSES - 1)]
    for taken in (len(diffs) // 10, bridges[0] - 1, bridges[0], bridges[1] - 5):
        snapshot = market.diffs[taken][1].top(10**6)  # what REST /api/v3/depth answers
        for n in (*bridges, *(b + 1 for b in bridges), len(diffs) - 1):
            if n > taken:
                book, exchange = rebuilt(snapshot, diffs[taken + 1:n + 1]), market.diffs[n][1]
                assert (book.bids, book.asks, book.last_update_id) == (
                    exchange.bids, exchange.asks, exchange.last_update_id)


async def test_the_bridge_restores_the_start_book() -> None:
    """Between two passes one real-shaped diff, chained on the last recorded one, takes the
    exchange's book back to the levels it started with (levels only at the end set to 0)."""
    src = load_source(APRIL_4)
    last_u = [i.payload["u"] for i in src.items if i.stream == "dotusdt@depth@100ms"][-1]
    market = WatchedMarket("DOTUSDT")
    timeline = ReplayTimeline(market, [src], None, loop=True)
    start = copied(market.symbols["DOTUSDT"].book)
    await run_passes(market, timeline, 2)
    n, bridge = next((n, d) for n, (d, _) in enumerate(market.diffs) if d["U"] == last_u + 1)
    before, after = market.diffs[n - 1][1], market.diffs[n][1]
    assert list(bridge) == ["e", "E", "s", "U", "u", "b", "a"] and bridge["b"] and bridge["a"]
    assert (after.bids, after.asks) == (start.bids, start.asks) != (before.bids, before.asks)
    assert all(Decimal(q) == 0 for p, q in bridge["b"] if p not in start.bids)
    assert [Decimal(p) for p, _ in bridge["b"]] == sorted(
        (Decimal(p) for p, _ in bridge["b"]), reverse=True)


async def test_looped_trades_times_and_book_tickers_continue() -> None:
    """Over three passes of two recordings, aggregate trade ids (``a`` and ``f``/``l``) are
    contiguous, event times and kline open times never go back, book ticker update ids only
    grow, and REST's trade history follows the last pass."""
    market = WatchedMarket("BTCUSDT")
    timeline = ReplayTimeline(market, [load_source(APRIL_4), load_source(APRIL_5)], None,
                              loop=True)
    await run_passes(market, timeline, PASSES)
    events = market.history.events
    for stream in ("btcusdt@aggTrade", "zilusdt@aggTrade"):
        aggs = events(stream)
        assert all(b["a"] == a["a"] + 1 and b["f"] == a["l"] + 1 for a, b in pairwise(aggs))
        assert aggs[-1]["T"] - aggs[0]["T"] > (PASSES - 1) * timeline.period_ms
        state = market.symbols[aggs[0]["s"]]
        assert state.aggs[-1].agg_id == aggs[-1]["a"]
    for stream in market.history.streams():
        times = [e["E"] if "E" in e else e["u"] for e in events(stream)]
        assert times == sorted(times), stream
    opens = [k["k"]["t"] for k in events("dotusdt@kline_1m")]
    assert opens == sorted(opens) and len(set(opens)) > 3


async def test_a_looping_exchange_streams_and_serves_a_continuing_market(
        connect: Any, http: Any) -> None:
    """Through ``LocalExchange(loop=True)`` a subscriber sees aggregate trade ids and depth
    update ids go on across passes, and REST's aggTrades and klines follow past the first
    pass."""
    src = load_source(APRIL_4)
    recorded = [i.payload for i in src.items if i.stream == "dotusdt@aggTrade"]
    async with LocalExchange(replay=[APRIL_4], speed=None, loop=True) as ex:
        client = await connect(ex.ws_url + "/stream?streams=dotusdt@aggTrade/dotusdt@depth@100ms")
        aggs: list[dict[str, Any]] = []
        diffs: list[dict[str, Any]] = []
        async with asyncio.timeout(TIMEOUT):
            while len(aggs) < 2 * len(recorded) + 5:
                msg = await client.recv()
                (aggs if msg["stream"].endswith("aggTrade") else diffs).append(msg["data"])
        last = await rest(http, ex.rest_url + "/api/v3/aggTrades?symbol=DOTUSDT&limit=1")
        klines = await rest(http, ex.rest_url + "/api/v3/klines?symbol=DOTUSDT&interval=1m")
    assert [a["a"] for a in aggs] == list(range(aggs[0]["a"], aggs[0]["a"] + len(aggs)))
    assert all(b["U"] == a["u"] + 1 for a, b in pairwise(diffs))
    assert last[0]["a"] >= aggs[-1]["a"]
    assert klines[-1][0] > max(k["k"]["t"] for k in (i.payload for i in src.items
                                                       if i.stream == "dotusdt@kline_1m"))
