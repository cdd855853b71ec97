"""ccxt.pro's Binance exchange works against the local exchange with its ``urls`` option
pointed at it (ccxt's documented way to use another endpoint: override ``urls``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from binance_streamer.exchange import LocalExchange
from tests.exchange.helpers import APRIL_4, TIMEOUT, book_body, served_snapshots, tops_at

DEPTH = 100  # levels per side compared: a client's book is exact within its snapshot's top
BookState = tuple[int, list[list[float]], list[list[float]]]  # nonce, best bids, best asks


def ccxt_client(ex: LocalExchange) -> Any:
    """A ``ccxt.pro.binance`` whose public REST and spot WebSocket URLs are ``ex``'s."""
    import ccxt.pro as ccxtpro

    return ccxtpro.binance({
        "urls": {"api": {"public": ex.rest_url + "/api/v3", "ws": {"spot": ex.ws_url + "/ws"}}},
        "options": {"fetchMarkets": {"types": ["spot"]}, "tradesLimit": 10_000},
    })


async def _watch_book(client: Any, symbol: str, updates: int) -> list[BookState]:
    """The nonce and best `DEPTH` levels per side of ``updates`` successive order books."""
    states: list[BookState] = []
    while len(states) < updates:
        book = await client.watch_order_book(symbol)
        states.append(_state(book))
    return states


def _state(book: Any) -> BookState:
    """A copy of ``book``'s nonce and best `DEPTH` levels (ccxt updates the book in place)."""
    return (book["nonce"], [[p, q] for p, q in book["bids"][:DEPTH]],
            [[p, q] for p, q in book["asks"][:DEPTH]])


def _assert_book_follows(states: list[BookState], snapshot: dict[str, Any],
                         diffs: list[dict[str, Any]], served: list[dict[str, Any]]) -> None:
    """Nonces increase, no book is crossed, and each equals the exchange's book at its nonce:
    rebuilt from ``snapshot`` and the published ``diffs``, or the REST snapshot ``served`` at it.

    ccxt.pro resolves ``watch_order_book`` with its REST snapshot alone when no diff after it
    has arrived yet (``fetch_order_book_snapshot``), its nonce the snapshot's ``lastUpdateId``,
    which may lie strictly inside the next diff's ``U..u``: the book at that id holds exactly
    the changes up to it (Binance's rule, web-socket-streams.md "How to manage a local order
    book correctly"), which the diffs alone cannot rebuild, so `tops_at` takes it from
    ``served``, after checking that the bridging diff takes it to the rebuilt book."""
    nonces = [nonce for nonce, _, _ in states]
    assert nonces == sorted(set(nonces))
    tops = tops_at(snapshot, diffs, nonces, DEPTH, served)
    for nonce, bids, asks in states:
        assert bids[0][0] < asks[0][0], nonce
        top_bids, top_asks = tops[nonce]
        assert (bids, asks) == ([[float(p), float(q)] for p, q in top_bids],
                                [[float(p), float(q)] for p, q in top_asks]), nonce


async def test_ccxt_pro_order_book_follows_the_replayed_book(
        connect: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """ccxt.pro's ``watch_order_book`` on a replayed symbol, subscribed while the replay runs (so
    its REST snapshot may fall strictly inside a diff), equals the exchange's book at each nonce
    and is never crossed."""
    ex = LocalExchange(replay=[APRIL_4], speed=4.0)
    snapshot = book_body(ex, "ETHUSDT")
    served = served_snapshots(monkeypatch, ex, "ETHUSDT")
    async with ex:
        running = await connect(ex.ws_url + "/ws/ethusdt@depth@100ms")
        client = ccxt_client(ex)
        try:
            async with asyncio.timeout(TIMEOUT):
                for _ in range(10):  # past the diff bridging the recorded snapshot
                    await running.recv()
                states = await _watch_book(client, "ETH/USDT", 20)
        finally:
            await client.close()
        _assert_book_follows(states, snapshot, ex.history.events("ethusdt@depth@100ms"),
                             served)


async def _replay_all(ex: LocalExchange, client: Any, aggs: list[Any], trades: list[Any],
                      last_u: int) -> tuple[list[str], Any]:
    """Watch BTC/USDT's aggregate trades (into ``aggs``) until every recorded one arrived, 50
    SOL/USDT trades (into ``trades``) and BTC/USDT's book until its nonce is ``last_u``; returns
    the connection paths and that book."""
    recorded = sum(1 for i in ex.sources[0].items if i.stream == "btcusdt@aggTrade")

    async def watch_aggs() -> None:
        while len(aggs) < recorded:
            aggs.extend(await client.watch_trades("BTC/USDT", params={"name": "aggTrade"}))

    async def watch_trades() -> None:
        while len(trades) < 50:
            trades.extend(await client.watch_trades("SOL/USDT"))

    async def watch_book() -> Any:
        while (book := await client.watch_order_book("BTC/USDT"))["nonce"] < last_u:
            pass
        return book
    try:
        async with asyncio.timeout(3 * TIMEOUT), asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(watch_aggs()), tg.create_task(watch_trades())]
            book_task = tg.create_task(watch_book())
            await ex.wait_subscribed(3)
            paths = sorted(c.path for c in ex.connections)
            await ex.start()
            await asyncio.gather(*tasks, book_task)
    finally:
        await client.close()
    return paths, book_task.result()


async def test_ccxt_pro_order_book_and_trades() -> None:
    """ccxt.pro, with its urls set to the exchange, keeps an order book equal to the replayed
    one and receives every replayed aggregate trade and the synthetic trades, in id order
    without gaps."""
    ex = LocalExchange(replay=[APRIL_4], synthetic=["SOLUSDT"], rate=100, speed=None,
                       start="manual")
    snapshot = book_body(ex, "BTCUSDT")
    async with ex:
        last_u = [i.payload for i in ex.sources[0].items
                  if i.stream == "btcusdt@depth@100ms"][-1]["u"]
        aggs: list[dict[str, Any]] = []
        trades: list[dict[str, Any]] = []
        paths, book = await _replay_all(ex, ccxt_client(ex), aggs, trades, last_u)
        assert paths == ["/ws/0", "/ws/1", "/ws/2"]  # ccxt's own stream numbers, then SUBSCRIBE
        _assert_book_follows([_state(book)], snapshot, ex.history.events("btcusdt@depth@100ms"),
                             [])
        assert book["nonce"] == last_u
        assert [(int(t["id"]), t["price"], t["amount"], t["timestamp"]) for t in aggs] == [
            (a["a"], float(a["p"]), float(a["q"]), a["T"])
            for a in ex.history.events("btcusdt@aggTrade")]
        sent = {t["t"]: t for t in ex.history.events("solusdt@trade")}
        ids = [int(t["id"]) for t in trades]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert [(t["price"], t["amount"], t["timestamp"]) for t in trades] == [
            (float(sent[i]["p"]), float(sent[i]["q"]), sent[i]["T"]) for i in ids]


class Received:
    """What a watcher has received so far, with a wake-up on every arrival."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._arrived = asyncio.Event()

    async def collect(self, watch: Callable[[], Awaitable[Any]]) -> None:
        """Append each result of ``watch()`` until cancelled."""
        while True:
            self.items.append(await watch())
            self._arrived.set()

    async def until(self, done: Callable[[list[Any]], bool]) -> None:
        """Return once ``done(items)`` holds."""
        while not done(self.items):
            self._arrived.clear()
            await self._arrived.wait()


def _candle(k: dict[str, Any]) -> list[Any]:
    return [k["t"], *(float(k[x]) for x in ("o", "h", "l", "c", "v"))]


async def _watch_tickers_candles_and_book(
        ex: LocalExchange, client: Any) -> tuple[Received, Received, Received, list[BookState]]:
    """DOT/USDT 24h tickers, ETH/USDT mini tickers and BTC/USDT 1m candles until each holds the
    last published one, and 3 books of the synthetic SOL/USDT."""
    tickers, minis, candles = Received(), Received(), Received()
    try:
        async with asyncio.timeout(3 * TIMEOUT), asyncio.TaskGroup() as tg:
            watchers = [
                tg.create_task(tickers.collect(lambda: client.watch_ticker(
                    "DOT/USDT", params={"name": "ticker"}))),
                tg.create_task(minis.collect(lambda: client.watch_ticker("ETH/USDT"))),
                tg.create_task(candles.collect(lambda: client.watch_ohlcv("BTC/USDT", "1m"))),
            ]
            book = tg.create_task(_watch_book(client, "SOL/USDT", 3))
            await ex.wait_subscribed(4)
            await ex.start()
            await ex.finished()
            last = {s: ex.history.events(s)[-1] for s in (
                "dotusdt@ticker", "ethusdt@miniTicker", "btcusdt@kline_1m")}
            await tickers.until(lambda got: got[-1]["info"] == last["dotusdt@ticker"])
            await minis.until(lambda got: got[-1]["info"] == last["ethusdt@miniTicker"])
            final_candle = _candle(last["btcusdt@kline_1m"]["k"])
            await candles.until(lambda got: final_candle in got[-1])
            for task in watchers:
                task.cancel()
    finally:
        await client.close()
    return tickers, minis, candles, book.result()


def _assert_tickers(tickers: list[Any], minis: list[Any], ex: LocalExchange) -> None:
    """Each 24h ticker and mini ticker carries the published event's values."""
    published = {t["E"]: t for t in ex.history.events("dotusdt@ticker")}
    published_minis = {t["E"]: t for t in ex.history.events("ethusdt@miniTicker")}
    assert len(tickers) > 1 and len(minis) > 1
    for ticker in tickers:
        sent = published[ticker["info"]["E"]]
        assert (ticker["symbol"], ticker["last"], ticker["bid"], ticker["ask"], ticker["open"],
                ticker["high"], ticker["low"], ticker["baseVolume"], ticker["quoteVolume"]) == (
            "DOT/USDT", *(float(sent[k]) for k in ("c", "b", "a", "o", "h", "l", "v", "q")))
    for ticker in minis:
        sent = published_minis[ticker["info"]["E"]]
        assert (ticker["symbol"], ticker["last"], ticker["open"], ticker["high"], ticker["low"],
                ticker["baseVolume"], ticker["quoteVolume"]) == (
            "ETH/USDT", *(float(sent[k]) for k in ("c", "o", "h", "l", "v", "q")))


async def test_ccxt_pro_tickers_candles_and_live_book(monkeypatch: pytest.MonkeyPatch) -> None:
    """ccxt.pro's ``watch_ticker`` parses the exchange's 24h tickers and mini tickers,
    ``watch_ohlcv`` keeps the replayed 1m candles, and ``watch_order_book`` on a synthetic symbol
    (which ccxt rejects when a diff's ``U`` is not the previous ``u`` + 1) is never crossed, has
    increasing nonces and equals the exchange's book at each nonce."""
    ex = LocalExchange(replay=[APRIL_4], synthetic=["SOLUSDT"], rate=20, speed=None,
                       start="manual")
    snapshot = book_body(ex, "SOLUSDT")
    served = served_snapshots(monkeypatch, ex, "SOLUSDT")
    async with ex:
        tickers, minis, candles, books = await _watch_tickers_candles_and_book(
            ex, ccxt_client(ex))
        _assert_book_follows(books, snapshot, ex.history.events("solusdt@depth@100ms"),
                             served)
        _assert_tickers(tickers.items, minis.items, ex)
        klines = {k["k"]["t"]: k["k"] for k in ex.history.events("btcusdt@kline_1m")}
    latest = {c[0]: c for batch in candles.items for c in batch}  # newUpdates: changed ones
    assert [latest[t] for t in sorted(latest)] == [_candle(k) for _, k in sorted(klines.items())]


async def _next_state(client: Any, symbol: str) -> BookState:
    return _state(await client.watch_order_book(symbol))


def _holds(count: int) -> Callable[[list[Any]], bool]:
    return lambda got: len(got) >= count


async def test_ccxt_pro_book_from_a_snapshot_inside_a_diff(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A synthetic symbol's REST snapshot taken between two 100 ms pushes lies strictly inside
    the next diff's ``U..u``. ccxt.pro first shows that snapshot alone, with its
    ``lastUpdateId`` as nonce: the exchange's book at that id, not the book with the next diff
    applied (the rebuild from diffs alone); then it bridges with that diff and follows the
    next. The market is stepped by hand, so the snapshot always falls inside the diff."""
    ex = LocalExchange(synthetic=["SOLUSDT"], start="manual")
    sym = ex.synthetic[0]
    snapshot = book_body(ex, "SOLUSDT")
    served = served_snapshots(monkeypatch, ex, "SOLUSDT")
    books, now = Received(), 1_700_000_000_000
    async with ex:
        sym.step(now)  # changes after `snapshot`, not yet published: the snapshot is inside
        client = ccxt_client(ex)
        try:
            async with asyncio.timeout(TIMEOUT), asyncio.TaskGroup() as tg:
                watcher = tg.create_task(books.collect(lambda: _next_state(client, "SOL/USDT")))
                for pushes in (1, 2, 3):
                    await books.until(_holds(pushes))
                    if pushes < 3:  # a step and a 100 ms push: the next book
                        sym.step(now + 100 * pushes - 50)
                        sym.grid(now + 100 * pushes, 100 * pushes)
                watcher.cancel()
        finally:
            await client.close()
    diffs = ex.history.events("solusdt@depth@100ms")
    states: list[BookState] = books.items
    [body] = served
    inside = body["lastUpdateId"]
    assert diffs[0]["U"] <= inside < diffs[0]["u"]
    assert [nonce for nonce, _, _ in states] == [inside, diffs[0]["u"], diffs[1]["u"]]
    shown = (states[0][1], states[0][2])
    assert shown == tuple([[float(p), float(q)] for p, q in body[side][:DEPTH]]
                          for side in ("bids", "asks"))
    ahead_bids, ahead_asks = tops_at(snapshot, diffs, [inside], DEPTH)[inside]
    assert shown != ([[float(p), float(q)] for p, q in ahead_bids],
                     [[float(p), float(q)] for p, q in ahead_asks])
    _assert_book_follows(states, snapshot, diffs, served)
