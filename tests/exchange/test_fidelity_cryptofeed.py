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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest

from binance_streamer.exchange import LocalExchange
from tests.exchange.helpers import APRIL_4, TIMEOUT, book_body, served_snapshots, tops_at

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


def _side(levels: Any) -> dict[Decimal, Decimal]:
    return {Decimal(p): Decimal(q) for p, q in levels}


@dataclass
class Received:
    """What the feed's callbacks received; ``done`` is set once each kind reached its target."""

    targets: dict[str, int]
    diffs: list[tuple[int, int]] = field(default_factory=list)  # (U, u) of each applied diff
    books: list[tuple[int, Any, Any]] = field(default_factory=list)  # (id, bids, asks) copies
    trades: list[Any] = field(default_factory=list)
    tickers: list[Any] = field(default_factory=list)
    candles: list[Any] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        if all(len(getattr(self, kind)) >= n for kind, n in self.targets.items()):
            self.done.set()

    async def on_book(self, book: Any, receipt: float) -> None:
        if book.delta is not None:
            self.diffs.append((book.raw["U"], book.raw["u"]))
        self.books.append((book.sequence_number, book.book.bids.to_dict(),
                           book.book.asks.to_dict()))
        self.check()

    def appender(self, kind: str) -> Callable[[Any, float], Awaitable[None]]:
        """A callback appending to the list ``kind``."""
        async def append(item: Any, receipt: float) -> None:
            getattr(self, kind).append(item)
            self.check()
        return append


async def _run_feed(ex: LocalExchange, got: Received) -> list[str]:
    """Run cryptofeed's Binance feed against ``ex`` (through a TLS front) until ``got`` is
    done; returns the connection paths."""
    from cryptofeed import FeedHandler
    from cryptofeed.defines import CANDLES, L2_BOOK, TICKER, TRADES

    async with tls_front(ex.host, ex.port) as (port, ctx):
        feed_class = _feed_class(f"wss://{ex.host}:{port}", ex.rest_url, ctx)
        feed = await asyncio.to_thread(
            feed_class, timeout=-1, retries=0, max_depth=BOOK_LEVELS,
            subscription={L2_BOOK: ["SOL-USDT"], TRADES: ["BTC-USDT"], TICKER: ["SOL-USDT"],
                          CANDLES: ["BTC-USDT"]},
            callbacks={L2_BOOK: got.on_book, TRADES: got.appender("trades"),
                       TICKER: got.appender("tickers"), CANDLES: got.appender("candles")})
        handler = FeedHandler(config={"uvloop": False, "log": {"disabled": True}})
        handler.add_feed(feed)
        handler.run(start_loop=False, install_signal_handlers=False)
        try:
            async with asyncio.timeout(TIMEOUT):
                await ex.wait_subscribed(4)
                paths = [c.path for c in ex.connections]
                await ex.start()
                await got.done.wait()
        finally:
            await handler.stop_async()
    return paths


def _assert_books_follow(got: Received, snapshot: dict[str, Any],
                         diffs: list[dict[str, Any]], served: list[dict[str, Any]]) -> None:
    """The diffs chain without a reset, and each book is not crossed and equals the exchange's
    book at its update id: rebuilt from ``snapshot`` and the published ``diffs``, or the REST
    snapshot ``served`` at it (cryptofeed's first book is its snapshot alone, whose id may lie
    strictly inside the next diff's ``U..u``: `tops_at`)."""
    assert len(got.diffs) >= 10
    assert all(u + 1 == nxt for (_, u), (nxt, _) in pairwise(got.diffs))
    tops = tops_at(snapshot, diffs, [i for i, _, _ in got.books], BOOK_LEVELS, served)
    for update_id, bids, asks in got.books:
        assert max(bids) < min(asks), update_id
        top_bids, top_asks = tops[update_id]
        assert (bids, asks) == (_side(top_bids), _side(top_asks)), update_id


async def test_cryptofeed_books_trades_and_tickers(caplog: pytest.LogCaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """cryptofeed's book of a synthetic symbol chains every diff without a reset, is never
    crossed and equals the exchange's book at each update id; its trades are every replayed
    aggregate trade, its tickers the published book tickers and its candles the replayed
    closed 1m klines, in order."""
    caplog.set_level(logging.WARNING, logger="feedhandler")
    ex = LocalExchange(replay=[APRIL_4], synthetic=["SOLUSDT"], rate=50, speed=None,
                       start="manual")
    snapshot = book_body(ex, "SOLUSDT")
    served = served_snapshots(monkeypatch, ex, "SOLUSDT")
    items = ex.sources[0].items
    closed = [i.payload["k"] for i in items
              if i.stream == "btcusdt@kline_1m" and i.payload["k"]["x"]]
    got = Received({"diffs": 10, "tickers": 20, "candles": len(closed), "trades": sum(
        1 for i in items if i.stream == "btcusdt@aggTrade")})
    async with ex:
        paths = await _run_feed(ex, got)
    assert paths == ["/stream?streams=solusdt@depth@100ms/btcusdt@aggTrade/solusdt@bookTicker"
                     "/btcusdt@kline_1m"]
    assert not [r for r in caplog.records if r.name == "feedhandler"], caplog.text
    _assert_books_follow(got, snapshot, ex.history.events("solusdt@depth@100ms"), served)
    assert [(int(t.id), t.price, t.amount, t.side, t.timestamp) for t in got.trades] == [
        (a["a"], Decimal(a["p"]), Decimal(a["q"]), "sell" if a["m"] else "buy", a["T"] / 1000)
        for a in ex.history.events("btcusdt@aggTrade")]
    sent = ex.history.events("solusdt@bookTicker")
    first = next(i for i, t in enumerate(sent) if t["u"] == got.tickers[0].raw["u"])
    assert [(t.bid, t.ask) for t in got.tickers] == [
        (Decimal(t["b"]), Decimal(t["a"])) for t in sent[first:first + len(got.tickers)]]
    assert closed
    assert [(c.start, c.stop, c.open, c.high, c.low, c.close, c.volume, c.trades, c.closed)
            for c in got.candles] == [
        (k["t"] / 1000, k["T"] / 1000, *(Decimal(k[x]) for x in "ohlcv"), k["n"], True)
        for k in closed]
