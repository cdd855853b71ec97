"""ccxt.pro's Binance exchange works against the local exchange with its ``urls`` option
pointed at it (ccxt's documented way to use another endpoint: override ``urls``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from binance_streamer.exchange import BUNDLED_SESSIONS, LocalExchange
from tests.exchange.helpers import TIMEOUT

APRIL_4 = next(p for p in BUNDLED_SESSIONS if "04-04" in p.name)


def ccxt_client(ex: LocalExchange) -> Any:
    """A ``ccxt.pro.binance`` whose public REST and spot WebSocket URLs are ``ex``'s."""
    import ccxt.pro as ccxtpro

    return ccxtpro.binance({
        "urls": {"api": {"public": ex.rest_url + "/api/v3", "ws": {"spot": ex.ws_url + "/ws"}}},
        "options": {"fetchMarkets": {"types": ["spot"]}, "tradesLimit": 10_000},
    })


async def test_ccxt_pro_order_book_and_trades() -> None:
    """ccxt.pro, with its urls set to the exchange, keeps an order book equal to the replayed
    one and receives every replayed aggregate trade and the synthetic trades, in id order
    without gaps."""
    async with LocalExchange(replay=[APRIL_4], synthetic=["SOLUSDT"], rate=100, speed=None,
                             start="manual") as ex:
        items = ex.sources[0].items
        recorded = [i.payload for i in items if i.stream == "btcusdt@aggTrade"]
        last_u = [i.payload for i in items if i.stream == "btcusdt@depth@100ms"][-1]["u"]
        client = ccxt_client(ex)
        aggs: list[dict[str, Any]] = []
        trades: list[dict[str, Any]] = []

        async def watch_aggs() -> None:
            while len(aggs) < len(recorded):
                aggs.extend(await client.watch_trades("BTC/USDT", params={"name": "aggTrade"}))

        async def watch_trades() -> None:
            while len(trades) < 50:
                trades.extend(await client.watch_trades("SOL/USDT"))

        async def watch_book() -> Any:
            while True:
                book = await client.watch_order_book("BTC/USDT")
                if book["nonce"] >= last_u:
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
        assert paths == ["/ws/0", "/ws/1", "/ws/2"]  # ccxt's own stream numbers, then SUBSCRIBE
        book = book_task.result()
        final = ex.market.symbols["BTCUSDT"].book.top(100)
        assert book["nonce"] == final["lastUpdateId"] == last_u
        assert book["bids"][:100] == [[float(p), float(q)] for p, q in final["bids"]]
        assert book["asks"][:100] == [[float(p), float(q)] for p, q in final["asks"]]
        assert [(int(t["id"]), t["price"], t["amount"], t["timestamp"]) for t in aggs] == [
            (a["a"], float(a["p"]), float(a["q"]), a["T"])
            for a in ex.history.events("btcusdt@aggTrade")]
        sent = {t["t"]: t for t in ex.history.events("solusdt@trade")}
        ids = [int(t["id"]) for t in trades]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert [(t["price"], t["amount"], t["timestamp"]) for t in trades] == [
            (float(sent[i]["p"]), float(sent[i]["q"]), sent[i]["T"]) for i in ids]


async def _watch_book(ex: LocalExchange, client: Any, symbol: str) -> tuple[list[int], list[bool]]:
    """Watch ``symbol``'s order book until it was compared with the exchange's three times;
    asserts it is never crossed; returns the nonces seen and the comparisons (True: equal)."""
    state = ex.market.symbols[symbol.replace("/", "")]
    nonces: list[int] = []
    compared: list[bool] = []
    while len(compared) < 3:
        book = await client.watch_order_book(symbol)
        bids, asks = book["bids"], book["asks"]
        assert not (bids and asks and bids[0][0] >= asks[0][0]), (bids[0], asks[0])
        nonces.append(book["nonce"])
        exchange = state.book_now()
        if exchange.last_update_id == book["nonce"]:
            top = exchange.top(1000)
            compared.append((bids[:], asks[:]) == (
                [[float(p), float(q)] for p, q in top["bids"]],
                [[float(p), float(q)] for p, q in top["asks"]]))
    return nonces, compared


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


async def test_ccxt_pro_tickers_candles_and_live_book() -> None:
    """ccxt.pro's ``watch_ticker`` parses the exchange's 24h tickers and mini tickers,
    ``watch_ohlcv`` keeps the replayed 1m candles, and ``watch_order_book`` on a synthetic symbol
    (which ccxt rejects when a diff's ``U`` is not the previous ``u`` + 1) is never crossed, has
    increasing nonces and equals the exchange's book whenever both are at the same update id."""
    async with LocalExchange(replay=[APRIL_4], synthetic=["SOLUSDT"], rate=20, speed=None,
                             start="manual") as ex:
        client = ccxt_client(ex)
        tickers, minis, candles = Received(), Received(), Received()
        try:
            async with asyncio.timeout(3 * TIMEOUT), asyncio.TaskGroup() as tg:
                watchers = [
                    tg.create_task(tickers.collect(lambda: client.watch_ticker(
                        "DOT/USDT", params={"name": "ticker"}))),
                    tg.create_task(minis.collect(lambda: client.watch_ticker("ETH/USDT"))),
                    tg.create_task(candles.collect(lambda: client.watch_ohlcv("BTC/USDT", "1m"))),
                ]
                book = tg.create_task(_watch_book(ex, client, "SOL/USDT"))
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
        published = {t["E"]: t for t in ex.history.events("dotusdt@ticker")}
        published_minis = {t["E"]: t for t in ex.history.events("ethusdt@miniTicker")}
        klines = {k["k"]["t"]: k["k"] for k in ex.history.events("btcusdt@kline_1m")}
    nonces, compared = book.result()
    assert compared == [True] * 3
    assert nonces == sorted(nonces) and len(set(nonces)) == len(nonces)
    assert len(tickers.items) > 1 and len(minis.items) > 1
    for ticker in tickers.items:
        sent = published[ticker["info"]["E"]]
        assert (ticker["symbol"], ticker["last"], ticker["bid"], ticker["ask"], ticker["open"],
                ticker["high"], ticker["low"], ticker["baseVolume"], ticker["quoteVolume"]) == (
            "DOT/USDT", *(float(sent[k]) for k in ("c", "b", "a", "o", "h", "l", "v", "q")))
    for ticker in minis.items:
        sent = published_minis[ticker["info"]["E"]]
        assert (ticker["symbol"], ticker["last"], ticker["open"], ticker["high"], ticker["low"],
                ticker["baseVolume"], ticker["quoteVolume"]) == (
            "ETH/USDT", *(float(sent[k]) for k in ("c", "o", "h", "l", "v", "q")))
    latest = {c[0]: c for batch in candles.items for c in batch}  # newUpdates: changed ones
    assert [latest[t] for t in sorted(latest)] == [_candle(k) for _, k in sorted(klines.items())]
