"""One consistent timeline: the replay clock, ``rebase_time`` and the continuing ``loop``."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

from binance_streamer.exchange import LocalExchange
from binance_streamer.exchange.book import OrderBook
from binance_streamer.exchange.history import History
from binance_streamer.exchange.hub import Hub
from binance_streamer.exchange.market import Market
from binance_streamer.exchange.server import LOOP_HISTORY_LIMIT
from binance_streamer.exchange.sources import load_source
from binance_streamer.exchange.timeline import ReplayTimeline
from tests.exchange.helpers import APRIL_4, APRIL_5, TIMEOUT
from tests.helpers import FIXTURES

NOW = 1_800_000_012_345  # an injected wall clock, ms
PASSES = 3


class WatchedMarket(Market):
    """A market that keeps, after each depth diff of ``symbol``, the diff, a copy of its own
    book and the book REST ``/api/v3/depth`` answers (`SymbolState.current_book`, which may look
    one diff ahead), and sets ``reached`` once it publishes an event of ``symbol`` at or past
    the time ``until``."""

    def __init__(self, symbol: str, history: History | None = None) -> None:
        super().__init__(Hub(), history or History())
        self.watched = symbol
        self.diffs: list[tuple[dict[str, Any], OrderBook]] = []
        self.answers: list[OrderBook] = []
        self.until: int | None = None
        self.reached = asyncio.Event()

    def publish(self, stream: str, payload: Any) -> None:
        super().publish(stream, payload)
        if not isinstance(payload, dict) or payload.get("s") != self.watched:
            return
        if self.until is not None and payload.get("E", 0) >= self.until:
            self.reached.set()
        if payload.get("e") == "depthUpdate":
            state = self.symbols[self.watched]
            self.diffs.append((payload, state.book.copy()))
            self.answers.append(state.current_book().copy())


def listen(market: Market) -> None:
    """Subscribe a listener to a stream nobody publishes: a looping replay goes on."""
    market.hub.subscribe(object(), ["nobody@listens"])  # type: ignore[arg-type]


async def run_passes(market: WatchedMarket, timeline: ReplayTimeline, passes: int) -> None:
    """Run a looping timeline at max speed, with a subscriber, until it has published into
    pass ``passes``."""
    listen(market)
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
        server_time = (await rest(http, ex.rest_url + "/api/v3/time"))["serverTime"]
    delta = start - src.base_ms
    assert delta > 0 and delta % 60_000 == 0
    assert got == {**first, "E": first["E"] + delta, "T": first["T"] + delta}
    end = src.base_ms + int(src.duration_ms) + delta
    assert first["E"] + delta <= server_time < end + TIMEOUT * 1000


# -- loop ----------------------------------------------------------------------------------------

async def test_looped_depth_diffs_chain_and_books_rebuild_across_passes() -> None:
    """Over three passes the diff stream's U/u chain is contiguous, a book rebuilt from a REST
    snapshot taken in any pass plus the diffs after it equals the exchange's own book after
    every diff, across each pass boundary, and in later passes some snapshots fall strictly
    inside the next diff's U..u and bridge from it."""
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
        snapshot = market.answers[taken].top(10**6)  # what REST /api/v3/depth answers
        for n in (*bridges, *(b + 1 for b in bridges), len(diffs) - 1):
            if n > taken:
                book, exchange = rebuilt(snapshot, diffs[taken + 1:n + 1]), market.diffs[n][1]
                assert (book.bids, book.asks, book.last_update_id) == (
                    exchange.bids, exchange.asks, exchange.last_update_id)
    ahead = [n for n in range(bridges[0], len(diffs) - 1)
             if market.answers[n].last_update_id != market.diffs[n][1].last_update_id]
    assert ahead and ahead[-1] > bridges[1]  # in passes 1 and 2
    for n in ahead:
        answer, nxt = market.answers[n], diffs[n + 1]
        assert nxt["U"] <= answer.last_update_id < nxt["u"]
        book, exchange = rebuilt(answer.top(10**6), [nxt]), market.diffs[n + 1][1]
        assert (book.bids, book.asks, book.last_update_id) == (
            exchange.bids, exchange.asks, exchange.last_update_id)


async def test_the_bridge_restores_the_start_book() -> None:
    """Between two passes one real-shaped diff, chained on the last recorded one, takes the
    exchange's book back to the levels it started with (levels only at the end set to 0)."""
    src = load_source(APRIL_4)
    last_u = [i.payload["u"] for i in src.items if i.stream == "dotusdt@depth@100ms"][-1]
    market = WatchedMarket("DOTUSDT")
    timeline = ReplayTimeline(market, [src], None, loop=True)
    start = market.symbols["DOTUSDT"].book.copy()
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


# -- recordings split over files, long candles, idle loops --------------------------------------

SNAPSHOTS = FIXTURES / "binance_spot_rest_depth_snapshots.0404.jsonl"
DIFFS = FIXTURES / "binance_spot_depthUpdate_100ms.head600.jsonl"
DAY_MS = 86_400_000


def test_the_clock_is_the_first_recording_with_a_clock() -> None:
    """With a file of REST snapshots (no clock) listed first, the replay's clock is the diff
    file's start, not the wall clock."""
    diffs = load_source(DIFFS)
    timeline = ReplayTimeline(Market(Hub(), History()), [load_source(SNAPSHOTS), diffs], None,
                              wall_ms=lambda: NOW)
    assert timeline.now_ms() == timeline.base_ms == diffs.base_ms


async def test_a_symbols_snapshot_file_listed_first_loops_and_rebases() -> None:
    """A symbol whose REST snapshot file comes before its diff file loops with update ids going
    on from pass to pass, and its clock moves with its diffs under ``rebase_time``."""
    market = WatchedMarket("DOTUSDT")
    diffs = load_source(DIFFS)
    timeline = ReplayTimeline(market, [load_source(SNAPSHOTS), diffs], None, loop=True,
                              rebase_time=True, wall_ms=lambda: NOW)
    await run_passes(market, timeline, PASSES)
    published = [d for d, _ in market.diffs]
    assert all(b["U"] == a["u"] + 1 for a, b in pairwise(published))
    first = next(i.payload for i in diffs.items if i.payload["s"] == "DOTUSDT")
    delta = published[0]["E"] - first["E"]
    assert market.symbols["DOTUSDT"].base_ms == diffs.base_ms + delta
    assert published[-1]["E"] > published[0]["E"] + (PASSES - 1) * timeline.period_ms


def kline_1d_file(tmp_path: Path) -> Path:
    """The recorded 1m kline frames relabelled as 1d candles: only the interval fields change
    (stream name, ``i``, and ``t``/``T`` to the candle of the UTC day holding ``E``)."""
    path = tmp_path / "kline_1d.jsonl"
    lines = (FIXTURES / "binance_spot_kline_1m.0404.jsonl").read_text().splitlines()
    with path.open("w") as out:
        for frame in map(json.loads, lines):
            candle = frame["data"]["k"]
            day = frame["data"]["E"] // DAY_MS * DAY_MS
            candle.update(i="1d", t=day, T=day + DAY_MS - 1)
            frame["stream"] = frame["stream"].replace("@kline_1m", "@kline_1d")
            out.write(json.dumps(frame) + "\n")
    return path


def test_a_long_candle_stays_on_its_grid_without_stretching_the_loop(tmp_path: Path) -> None:
    """With ``@kline_1d`` recorded for a minute and a half, the grid stays 1 s, the loop period
    about the recording, the rebased start within a second before now, and every shifted
    candle is the UTC day holding its shifted event time."""
    src = load_source(kline_1d_file(tmp_path))
    timeline = ReplayTimeline(Market(Hub(), History()), [src], None, loop=True,
                              rebase_time=True, wall_ms=lambda: NOW)
    assert timeline.grid_ms == 1_000 and timeline.period_ms <= src.duration_ms + 2_000
    assert NOW - 1_000 < timeline.base_ms <= NOW
    for k in range(3):
        shifts = timeline.shifts(k)[0]
        for item in src.items:
            event = shifts.apply(item.payload, item.payload["s"])
            candle = event["k"]
            assert candle["t"] % DAY_MS == 0 and candle["T"] == candle["t"] + DAY_MS - 1
            assert candle["t"] <= event["E"] <= candle["T"]


async def test_a_loop_waits_for_a_subscriber_between_passes() -> None:
    """A looping replay nobody is subscribed to stops after its first pass, and goes on once
    somebody subscribes."""
    market = WatchedMarket("DOTUSDT")
    timeline = ReplayTimeline(market, [load_source(APRIL_4)], None, loop=True)
    task = asyncio.create_task(timeline.run())
    async with asyncio.timeout(TIMEOUT):
        await timeline.idle.wait()
    assert timeline.passes == 1 and not market.reached.is_set()
    market.until = timeline.base_ms + timeline.period_ms
    listen(market)
    async with asyncio.timeout(TIMEOUT):
        await market.reached.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert timeline.passes == 2


async def test_a_looping_market_keeps_its_history_bounded() -> None:
    """``LocalExchange(loop=True)`` bounds its history by default, and over many passes at full
    speed a bounded market keeps about that many trades per stream and per symbol."""
    assert LocalExchange(loop=True).history.limit == LOOP_HISTORY_LIMIT
    assert LocalExchange().history.limit is None
    limit = 100
    market = WatchedMarket("BTCUSDT", History(limit))
    timeline = ReplayTimeline(market, [load_source(APRIL_4)], None, loop=True)
    await run_passes(market, timeline, 6)
    aggs = market.history.events("btcusdt@aggTrade")
    assert len(aggs) <= limit * 1.1 and len(market.symbols["BTCUSDT"].aggs) <= limit * 1.1
    assert market.symbols["BTCUSDT"].aggs[-1].agg_id == aggs[-1]["a"]
