"""The depth and trade streams clients subscribe by default, on replayed real captures."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from itertools import pairwise
from typing import Any

import aiohttp

from binance_streamer.core.order_book import Bridged, OrderBook
from binance_streamer.exchange import LocalExchange
from binance_streamer.exchange.history import History
from binance_streamer.exchange.hub import Hub
from binance_streamer.exchange.market import Market
from binance_streamer.exchange.sources import load_source
from tests.exchange.helpers import APRIL_4, APRIL_5, TIMEOUT, rebuilt_book
from tests.helpers import FIXTURES, payloads


async def drain(client: Any, ex: LocalExchange) -> list[Any]:
    """Read everything until the replay has finished and the socket is idle."""
    got: list[Any] = []
    fin = asyncio.ensure_future(ex.finished())
    async with asyncio.timeout(3 * TIMEOUT):
        while True:
            try:
                got.append(await client.recv(timeout=0.3 if fin.done() else TIMEOUT))
            except TimeoutError:
                return got


def recorded_snapshot(path: Any, symbol: str) -> dict[str, Any]:
    """The REST depth snapshot of ``symbol`` recorded in a session capture."""
    return next(i.payload for i in load_source(path).items if i.snapshot_symbol == symbol)


def exchange_book(ex: LocalExchange, symbol: str, last_id: int) -> OrderBook:
    """The exchange's book at update ``last_id``: its recorded snapshot and published diffs."""
    diffs = [d for d in ex.history.events(f"{symbol.lower()}@depth@100ms") if d["u"] <= last_id]
    return rebuilt_book(recorded_snapshot(APRIL_4, symbol), diffs)


async def rest_depth(http: aiohttp.ClientSession, ex: LocalExchange) -> dict[str, Any]:
    async with http.get(ex.rest_url + "/api/v3/depth?symbol=BTCUSDT&limit=5000") as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def test_depth_1000ms_merges_the_recorded_100ms_diffs_of_each_second(connect: Any) -> None:
    """``@depth`` of a symbol recorded at 100 ms is one event per 1000 ms of the replay grid
    merging the diffs published since the previous one, and none for a second without diffs."""
    async with LocalExchange(replay=[APRIL_5], speed=None) as ex:
        client = await connect(ex.ws_url + "/stream?streams=ethbrl@depth@100ms/ethbrl@depth")
        got = await drain(client, ex)
    pending: list[dict[str, Any]] = []
    merged: list[dict[str, Any]] = []
    for msg in got:
        if msg["stream"] == "ethbrl@depth@100ms":
            pending.append(msg["data"])
            continue
        event = msg["data"]
        covered = [d for d in pending if d["U"] >= event["U"]]
        assert covered and covered == pending[len(pending) - len(covered):]
        assert len(covered) == len(pending) or not merged  # only the first may start later
        assert (event["e"], event["s"]) == ("depthUpdate", "ETHBRL")
        assert (event["U"], event["u"]) == (covered[0]["U"], covered[-1]["u"])
        for side in ("b", "a"):
            assert dict(event[side]) == {p: q for d in covered for p, q in d[side]}
            prices = [Decimal(p) for p, _ in event[side]]
            assert prices == sorted(prices, reverse=side == "b")
        merged.append(event)
        pending = []
    assert len(merged) > 20
    steps = [b["E"] - a["E"] for a, b in pairwise(merged)]
    assert all(step > 0 and step % 1000 == 0 for step in steps) and max(steps) > 1000
    assert all(b["U"] == a["u"] + 1 for a, b in pairwise(merged))


async def test_partial_depth_is_the_top_of_the_rebuilt_book(connect: Any) -> None:
    """``@depth<N>`` and ``@depth<N>@100ms`` are the best N levels per side of the book rebuilt
    from the recorded snapshot and diffs, with its lastUpdateId, every 1000 ms and 100 ms."""
    streams = "btcusdt@depth@100ms/btcusdt@depth5/btcusdt@depth20@100ms"
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex:
        client = await connect(ex.ws_url + "/stream?streams=" + streams)
        got = await drain(client, ex)
    book = rebuilt_book(recorded_snapshot(APRIL_4, "BTCUSDT"), [])
    between: list[int] = []
    for msg in got:
        data = msg["data"]
        if msg["stream"] == "btcusdt@depth@100ms":
            book.apply(data["U"], data["u"], data["b"], data["a"])
            continue
        levels = 5 if msg["stream"] == "btcusdt@depth5" else 20
        bids, asks = book.top(levels)
        assert data == {"lastUpdateId": book.last_update_id, "bids": [list(b) for b in bids],
                        "asks": [list(a) for a in asks]}
        if levels == 5:
            between.append(0)
        elif between:
            between[-1] += 1
    assert len(between) > 80
    assert set(between[:-1]) == {10}  # ten 100 ms updates per 1000 ms update


async def test_recorded_trades_are_served_on_the_trade_stream(connect: Any, tmp_path: Any
                                                               ) -> None:
    """A replayed capture holding ``@trade`` frames serves them as recorded."""
    frame = (FIXTURES / "binance_spot_trade.singletons.jsonl").read_text()
    path = tmp_path / "trades.jsonl"
    path.write_text(frame)
    async with LocalExchange(replay=[path], speed=None) as ex:
        client = await connect(ex.ws_url + "/stream?streams=btcusdt@trade")
        raw = await client.ws.receive(timeout=TIMEOUT)
    assert raw.data == frame.strip()


async def test_trades_are_never_derived_from_aggregate_trades(connect: Any) -> None:
    """``@trade`` of a replayed symbol whose capture holds only aggregate trades gets nothing."""
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex:
        client = await connect(ex.ws_url + "/stream?streams=btcusdt@trade/btcusdt@aggTrade")
        got = await drain(client, ex)
    assert len(got) > 1000
    assert {msg["stream"] for msg in got} == {"btcusdt@aggTrade"}
    assert ex.market.symbols["BTCUSDT"].trades[:] == []


async def test_derived_depth_state_goes_with_its_last_subscriber(connect: Any) -> None:
    """The merge behind ``@depth`` exists while it is subscribed and is dropped after."""
    async with LocalExchange(replay=[APRIL_4], speed=20.0) as ex:
        client = await connect(ex.ws_url + "/stream?streams=btcusdt@depth/btcusdt@depth5@100ms")
        await client.until(lambda m: m["stream"] == "btcusdt@depth")
        state = ex.market.symbols["BTCUSDT"]
        assert list(state.depth_merges) == ["btcusdt@depth"]
        await client.send({"method": "UNSUBSCRIBE", "params": ["btcusdt@depth"], "id": 1})
        await client.reply(1)
        await client.until(lambda m: m.get("stream") == "btcusdt@depth5@100ms")
        assert state.depth_merges == {}


async def test_rest_snapshot_falls_inside_the_next_1000ms_diff_and_bridges(
        connect: Any, http: aiohttp.ClientSession) -> None:
    """A REST snapshot taken between two ``@depth`` events has U < lastUpdateId + 1 <= u for
    the next one, and bridging from it gives the exchange's book."""
    async with LocalExchange(replay=[APRIL_4], speed=4.0) as ex:
        client = await connect(ex.ws_url + "/stream?streams=btcusdt@depth/btcusdt@depth@100ms")
        strict = []
        for _ in range(3):
            await client.until(lambda m: m["stream"] == "btcusdt@depth")
            await client.until(lambda m: m["stream"] == "btcusdt@depth@100ms")
            snap = await rest_depth(http, ex)
            last_id = snap["lastUpdateId"]
            event = await client.until(lambda m, last_id=last_id: m["stream"] == "btcusdt@depth"
                                       and m["data"]["u"] > last_id)
            diff = event["data"]
            assert diff["U"] <= snap["lastUpdateId"] + 1 <= diff["u"]
            strict.append(diff["U"] < snap["lastUpdateId"] + 1)
        events = [diff] + [(await client.until(lambda m: m["stream"] == "btcusdt@depth"))["data"]
                           for _ in range(2)]
        book = rebuilt_book(snap, events)
        assert book.top(100_000) == exchange_book(ex, "BTCUSDT", events[-1]["u"]).top(100_000)
    assert any(strict)


async def test_rest_snapshot_falls_inside_the_next_100ms_diff_and_bridges(
        connect: Any, http: aiohttp.ClientSession) -> None:
    """A replay's REST snapshot between two ``@depth@100ms`` events is labelled strictly inside
    the next one's U..u (the timeline hands the market its recorded diffs), and bridging from
    it gives the exchange's book."""
    async with LocalExchange(replay=[APRIL_4], speed=20.0) as ex:
        client = await connect(ex.ws_url + "/ws/btcusdt@depth@100ms")
        strict = []
        for _ in range(20):  # past the diff bridging the recorded snapshot
            await client.recv()
        for _ in range(5):
            for _ in range(10):
                await client.recv()
            snap = await rest_depth(http, ex)
            last_id = snap["lastUpdateId"]
            diff = await client.until(lambda m, last_id=last_id: m["u"] > last_id)
            assert diff["U"] <= snap["lastUpdateId"] + 1 <= diff["u"]
            strict.append(diff["U"] < snap["lastUpdateId"] + 1)
        book = OrderBook()
        book.load_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
        assert isinstance(book.apply(diff["U"], diff["u"], diff["b"], diff["a"]), Bridged)
        for _ in range(10):
            diff = await client.recv()
            book.apply(diff["U"], diff["u"], diff["b"], diff["a"])
        assert book.top(100_000) == exchange_book(ex, "BTCUSDT", diff["u"]).top(100_000)
    assert sum(strict) >= 3


def test_expect_depth_replaces_earlier_calls() -> None:
    """A later `Market.expect_depth` call without a symbol's diffs leaves it no look-ahead."""
    market = Market(Hub(), History())
    diffs = [d for d in payloads("binance_spot_depthUpdate_100ms.head600.jsonl")
             if d["s"] == "BTCUSDT"]
    market.expect_depth(("btcusdt@depth@100ms", d) for d in diffs)
    assert market.symbols["BTCUSDT"].lookahead is not None
    market.expect_depth([])
    assert market.symbols["BTCUSDT"].lookahead is None
