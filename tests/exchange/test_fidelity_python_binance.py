"""python-binance works against the local exchange with its base URLs changed: the socket
manager, the depth cache and the AsyncClient's REST calls and iterators.

python-binance has no option for a custom endpoint; the URLs are instance attributes
(``AsyncClient.API_URL``, ``BinanceSocketManager.STREAM_URL``) that the test sets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from binance_streamer.exchange import BUNDLED_SESSIONS, LocalExchange
from tests.exchange.helpers import TIMEOUT

APRIL_4 = next(p for p in BUNDLED_SESSIONS if "04-04" in p.name)


@asynccontextmanager
async def binance_client(ex: LocalExchange) -> AsyncIterator[tuple[Any, Any]]:
    """An ``AsyncClient`` and a ``BinanceSocketManager``, both pointed at ``ex``."""
    from binance import AsyncClient, BinanceSocketManager

    client = AsyncClient()
    client.API_URL = ex.rest_url + "/api"
    try:
        manager = BinanceSocketManager(client)
        manager.STREAM_URL = ex.ws_url + "/"
        yield client, manager
    finally:
        await client.close_connection()


async def test_python_binance_socket_manager_and_rest_client() -> None:
    """python-binance's BinanceSocketManager and REST client work."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=100) as ex, binance_client(ex) as (
            client, bm):
        async with asyncio.timeout(TIMEOUT), bm.multiplex_socket(
                ["btcusdt@aggTrade", "btcusdt@depth@100ms"]) as socket:
            got = {}
            while len(got) < 2:
                msg = await socket.recv()
                got[msg["stream"]] = msg["data"]
        assert got["btcusdt@aggTrade"]["e"] == "aggTrade"
        assert got["btcusdt@depth@100ms"]["e"] == "depthUpdate"
        rows = await client.get_aggregate_trades(symbol="BTCUSDT", limit=5)
        assert rows[-1]["a"] >= got["btcusdt@aggTrade"]["a"]
        info = await client.get_symbol_info("BTCUSDT")
        assert info is not None and info["symbol"] == "BTCUSDT"


def _levels(levels: Any) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in levels]


async def _watch_depth_cache(ex: LocalExchange, client: Any, bm: Any, symbol: str,
                             interval: int | None, times: int) -> list[bool]:
    """Run a `DepthCacheManager` until its book was compared with the exchange's ``times``
    times; asserts it is never crossed and returns the comparisons (True: equal)."""
    from binance import DepthCacheManager

    stream = f"{symbol.lower()}@depth" + ("@100ms" if interval else "")
    state = ex.market.symbols[symbol]
    compared: list[bool] = []
    async with DepthCacheManager(client, symbol, bm=bm, limit=1000, ws_interval=interval,
                                 conv_type=Decimal) as dcm:
        while len(compared) < times:
            cache = await dcm.recv()
            bids, asks = cache.get_bids(), cache.get_asks()
            assert not (bids and asks and bids[0][0] >= asks[0][0]), (stream, bids[0], asks[0])
            last = ex.history.events(stream)[-1]
            book = state.book_now()
            # The cache has applied the last published diff and the book has not moved since.
            if cache.update_time == last["E"] and book.last_update_id == last["u"]:
                top = book.top(1000)
                compared.append((bids, asks) == (
                    [list(x) for x in _levels(top["bids"])],
                    [list(x) for x in _levels(top["asks"])]))
    return compared


async def test_python_binance_depth_caches_stay_equal_to_the_exchange_book() -> None:
    """python-binance's DepthCacheManager, on ``@depth@100ms`` and on ``@depth``, is never
    crossed and equals the exchange's book whenever both are at the same update id."""
    async with LocalExchange(synthetic=["SOLUSDT"], rate=20) as ex, binance_client(ex) as (
            client, bm), asyncio.timeout(2 * TIMEOUT), asyncio.TaskGroup() as tg:
        fast = tg.create_task(_watch_depth_cache(ex, client, bm, "SOLUSDT", 100, 3))
        slow = tg.create_task(_watch_depth_cache(ex, client, bm, "SOLUSDT", None, 1))
    assert fast.result() == [True] * 3
    assert slow.result() == [True]


def _agg_row(a: dict[str, Any]) -> dict[str, Any]:
    """The REST row of a published aggregate trade (rest-api.md "Compressed/Aggregate trades
    list")."""
    return {k: a[k] for k in ("a", "p", "q", "f", "l", "T", "m", "M")}


async def test_python_binance_aggregate_trade_iter_returns_every_trade() -> None:
    """``aggregate_trade_iter`` from the first trade, and from a start time, yields every
    replayed aggregate trade after it with the published values and contiguous ids."""
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex, binance_client(ex) as (
            client, _):
        async with asyncio.timeout(TIMEOUT):
            await ex.start()
            await ex.finished()
            sent = [_agg_row(a) for a in ex.history.events("btcusdt@aggTrade")]
            everything = [t async for t in client.aggregate_trade_iter("BTCUSDT")]
            middle = sent[len(sent) // 2]["T"]
            later = [t async for t in client.aggregate_trade_iter("BTCUSDT", start_str=middle)]
    assert len(sent) > 1000  # more than one page of 500
    assert everything == sent
    assert [t["a"] for t in everything] == list(range(sent[0]["a"], sent[0]["a"] + len(sent)))
    assert later == [a for a in sent if a["T"] >= middle]


def _candles(aggs: list[dict[str, Any]], span_ms: int) -> list[list[Any]]:
    """Kline rows (open time, o, h, l, c, volume, close time, trades) of ``aggs`` per
    ``span_ms``; a span without trades is flat at the previous close with no volume."""
    rows: list[list[Any]] = []
    first, last = aggs[0]["T"] // span_ms, aggs[-1]["T"] // span_ms
    i = 0
    close = Decimal(aggs[0]["p"])
    for bucket in range(first, last + 1):
        prices, volume, count = [], Decimal(0), 0
        while i < len(aggs) and aggs[i]["T"] // span_ms == bucket:
            prices.append(Decimal(aggs[i]["p"]))
            volume += Decimal(aggs[i]["q"])
            count += aggs[i]["l"] - aggs[i]["f"] + 1
            i += 1
        o, h, lo, c = ((prices[0], max(prices), min(prices), prices[-1]) if prices
                       else (close, close, close, close))
        close = c
        rows.append([bucket * span_ms, o, h, lo, c, volume, bucket * span_ms + span_ms - 1,
                     count])
    return rows


def _values(row: list[Any]) -> list[Any]:
    return [row[0], *map(Decimal, row[1:6]), row[6], row[8]]


async def test_python_binance_historical_klines_equal_the_published_candles() -> None:
    """``get_historical_klines`` answers 1m candles equal to the replayed kline stream's last
    state of each candle and 1s candles that summarise the replayed aggregate trades."""
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex, binance_client(ex) as (
            client, _):
        async with asyncio.timeout(TIMEOUT):
            await ex.start()
            await ex.finished()
            aggs = ex.history.events("btcusdt@aggTrade")
            klines = {k["k"]["t"]: k["k"] for k in ex.history.events("btcusdt@kline_1m")}
            minutes = await client.get_historical_klines("BTCUSDT", "1m", start_str=0)
            # Candles are selected by open time (rest-api.md "Kline/Candlestick data").
            seconds = await client.get_historical_klines(
                "BTCUSDT", "1s", start_str=aggs[0]["T"] // 1000 * 1000, end_str=aggs[-1]["T"])
    assert [_values(r) for r in minutes] == [
        [k["t"], *map(Decimal, (k["o"], k["h"], k["l"], k["c"], k["v"])), k["T"], k["n"]]
        for _, k in sorted(klines.items())]
    assert len(seconds) > 60
    assert [_values(r) for r in seconds] == _candles(aggs, 1000)
