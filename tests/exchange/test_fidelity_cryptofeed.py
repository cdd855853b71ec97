"""cryptofeed's Binance feed works against the local exchange: books with its own sequence
checks, aggregate trades and book tickers.

cryptofeed has no option for a custom endpoint; its own exchange classes name theirs as class
attributes (``BinanceUS`` is ``Binance`` with other ``websocket_endpoints`` and
``rest_endpoints``), so the test does the same. Its websocket connection only accepts
``wss://`` addresses, so the test puts a TLS front (a private CA from trustme) before the
exchange and hands the CA to the endpoint's websocket options.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest

from binance_streamer.exchange import BUNDLED_SESSIONS, LocalExchange
from tests.exchange.helpers import TIMEOUT

APRIL_4 = next(p for p in BUNDLED_SESSIONS if "04-04" in p.name)
BOOK_LEVELS = 100


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except OSError:  # a reset or a TLS error: the connection is over either way
        pass
    finally:
        writer.close()


@asynccontextmanager
async def tls_front(host: str, port: int) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    """A TLS listener forwarding each connection to ``host:port``; yields its port and a client
    context that trusts it. Open forwards are cancelled on exit."""
    import trustme

    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(host).configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with asyncio.TaskGroup() as tg:
        pipes: list[asyncio.Task[None]] = []

        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection(host, port)
            pipes.append(tg.create_task(_pipe(reader, up_writer)))
            pipes.append(tg.create_task(_pipe(up_reader, writer)))

        server = await asyncio.start_server(forward, host, 0, ssl=server_ctx)
        try:
            yield server.sockets[0].getsockname()[1], client_ctx
        finally:
            server.close()
            for task in pipes:
                task.cancel()


def _feed_class(wss: str, rest: str, ctx: ssl.SSLContext) -> Any:
    from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
    from cryptofeed.exchanges import Binance

    return type("LocalBinance", (Binance,), {
        "websocket_endpoints": [WebsocketEndpoint(wss, options={"ssl": ctx})],
        "rest_endpoints": [RestEndpoint(rest, routes=Routes(
            "/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}"))],
    })


def _side(levels: Any) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in levels]


async def test_cryptofeed_books_trades_and_tickers(caplog: pytest.LogCaptureFixture) -> None:
    """cryptofeed's book of a synthetic symbol chains every diff without a reset, is never
    crossed and equals the exchange's book whenever both are at the same update id; its trades
    are every replayed aggregate trade, its tickers the published book tickers and its candles
    the replayed closed 1m klines, in order."""
    from cryptofeed import FeedHandler
    from cryptofeed.defines import CANDLES, L2_BOOK, TICKER, TRADES

    caplog.set_level(logging.WARNING, logger="feedhandler")
    async with LocalExchange(replay=[APRIL_4], synthetic=["SOLUSDT"], rate=50, speed=None,
                             start="manual") as ex, tls_front(ex.host, ex.port) as (port, ctx):
        items = ex.sources[0].items
        recorded = [i.payload for i in items if i.stream == "btcusdt@aggTrade"]
        closed = [i.payload["k"] for i in items
                  if i.stream == "btcusdt@kline_1m" and i.payload["k"]["x"]]
        sol = ex.market.symbols["SOLUSDT"]
        books: list[Any] = []  # (U, u) of each applied diff
        matched: list[bool] = []  # per book at the exchange's update id: equal to it
        crossed: list[Any] = []
        trades: list[Any] = []
        tickers: list[Any] = []
        candles: list[Any] = []
        done = asyncio.Event()

        def check() -> None:
            if (len(books) >= 10 and len(matched) >= 3 and len(trades) >= len(recorded)
                    and len(tickers) >= 20 and len(candles) >= len(closed)):
                done.set()

        async def on_book(book: Any, receipt: float) -> None:
            bids, asks = book.book.bids, book.book.asks
            if len(bids) and len(asks) and bids.index(0)[0] >= asks.index(0)[0]:
                crossed.append(book.sequence_number)
            if book.delta is not None:
                books.append((book.raw["U"], book.raw["u"]))
            exchange = sol.book_now()
            if exchange.last_update_id == book.sequence_number:
                top = exchange.top(BOOK_LEVELS)
                matched.append((bids.to_dict(), asks.to_dict()) == (
                    dict(_side(top["bids"])), dict(_side(top["asks"]))))
            check()

        async def on_trade(trade: Any, receipt: float) -> None:
            trades.append(trade)
            check()

        async def on_ticker(ticker: Any, receipt: float) -> None:
            tickers.append(ticker)
            check()

        async def on_candle(candle: Any, receipt: float) -> None:
            candles.append(candle)
            check()

        feed_class = _feed_class(f"wss://{ex.host}:{port}", ex.rest_url, ctx)
        feed = await asyncio.to_thread(
            feed_class, timeout=-1, retries=0, max_depth=BOOK_LEVELS,
            subscription={L2_BOOK: ["SOL-USDT"], TRADES: ["BTC-USDT"], TICKER: ["SOL-USDT"],
                          CANDLES: ["BTC-USDT"]},
            callbacks={L2_BOOK: on_book, TRADES: on_trade, TICKER: on_ticker,
                       CANDLES: on_candle})
        handler = FeedHandler(config={"uvloop": False, "log": {"disabled": True}})
        handler.add_feed(feed)
        handler.run(start_loop=False, install_signal_handlers=False)
        try:
            async with asyncio.timeout(TIMEOUT):
                await ex.wait_subscribed(4)
                paths = [c.path for c in ex.connections]
                await ex.start()
                await done.wait()
        finally:
            await handler.stop_async()
        sent_tickers = ex.history.events("solusdt@bookTicker")
    assert paths == ["/stream?streams=solusdt@depth@100ms/btcusdt@aggTrade/solusdt@bookTicker"
                     "/btcusdt@kline_1m"]
    assert not [r for r in caplog.records if r.name == "feedhandler"], caplog.text
    assert crossed == []
    assert len(books) >= 10 and all(u + 1 == nxt for (_, u), (nxt, _) in pairwise(books))
    assert all(matched)
    assert [(int(t.id), t.price, t.amount, t.side, t.timestamp) for t in trades] == [
        (a["a"], Decimal(a["p"]), Decimal(a["q"]), "sell" if a["m"] else "buy", a["T"] / 1000)
        for a in ex.history.events("btcusdt@aggTrade")]
    first = next(i for i, t in enumerate(sent_tickers) if t["u"] == tickers[0].raw["u"])
    assert [(t.bid, t.ask) for t in tickers] == [
        (Decimal(t["b"]), Decimal(t["a"])) for t in sent_tickers[first:first + len(tickers)]]
    assert closed
    assert [(c.start, c.stop, c.open, c.high, c.low, c.close, c.volume, c.trades, c.closed)
            for c in candles] == [
        (k["t"] / 1000, k["T"] / 1000, *(Decimal(k[x]) for x in "ohlcv"), k["n"], True)
        for k in closed]
