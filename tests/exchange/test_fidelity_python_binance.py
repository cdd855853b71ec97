"""python-binance works against the local exchange with its base URLs changed: the socket
manager, the depth cache and the AsyncClient's REST calls and iterators.

python-binance has no option for a custom endpoint; the URLs are instance attributes
(``AsyncClient.API_URL``, ``BinanceSocketManager.STREAM_URL``) that the test sets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from binance_streamer.exchange import LocalExchange
from tests.exchange.helpers import APRIL_4, TIMEOUT, book_body, tops_at


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


DEPTH = 100  # levels per side compared: a client's book is exact within its snapshot's top


@dataclass
class CacheState:
    """One update of a depth cache: its update id, the id of the last snapshot it loaded, and
    its best `DEPTH` levels per side."""

    update_id: int
    snapshot_id: int
    bids: list[list[Decimal]]
    asks: list[list[Decimal]]

    @property
    def synced(self) -> bool:
        """Whether the cache has caught up with its last snapshot (python-binance applies the
        diff that made it re-fetch one, and those after, over the newer snapshot)."""
        return self.update_id >= self.snapshot_id


def _recording_depth_cache() -> Any:
    """python-binance's ``DepthCacheManager`` noting the ``lastUpdateId`` of each snapshot it
    loads (``_init_cache`` sets ``_last_update_id``; it runs again whenever a diff's ``U`` is
    not ``lastUpdateId + 1``, as for a snapshot strictly inside a diff)."""
    from binance import DepthCacheManager

    class RecordingDepthCache(DepthCacheManager):  # type: ignore[misc]
        snapshot_ids: list[int]

        async def _init_cache(self) -> None:
            await super()._init_cache()
            self.snapshot_ids.append(self._last_update_id)

    return RecordingDepthCache


async def _watch_depth_cache(client: Any, bm: Any, symbol: str, interval: int | None,
                             synced: int) -> list[CacheState]:
    """Run a depth cache of ``symbol`` on ``@depth@100ms`` (``interval=100``) or ``@depth``
    until ``synced`` of its updates were synced; returns every update's state."""
    cache_class = _recording_depth_cache()
    cache_class.snapshot_ids = []
    states: list[CacheState] = []
    async with cache_class(client, symbol, bm=bm, limit=1000, ws_interval=interval,
                           conv_type=Decimal) as dcm:
        while sum(s.synced for s in states) < synced:
            cache = await dcm.recv()
            states.append(CacheState(dcm._last_update_id, cache_class.snapshot_ids[-1],
                                     cache.get_bids()[:DEPTH], cache.get_asks()[:DEPTH]))
    return states


def _assert_follows_the_exchange(states: list[CacheState], snapshot: dict[str, Any],
                                 diffs: list[dict[str, Any]]) -> None:
    """Once synced, every state is synced, not crossed, and equal to the exchange's book
    rebuilt at its update id from ``snapshot`` and the published ``diffs``."""
    first = next(i for i, s in enumerate(states) if s.synced)
    tops = tops_at(snapshot, diffs, [s.update_id for s in states], DEPTH)
    for state in states[first:]:
        assert state.synced, state.update_id
        assert state.bids[0][0] < state.asks[0][0], state.update_id
        bids, asks = tops[state.update_id]
        assert (state.bids, state.asks) == (
            [[Decimal(p), Decimal(q)] for p, q in bids],
            [[Decimal(p), Decimal(q)] for p, q in asks]), state.update_id


async def _depth_caches_follow(ex: LocalExchange, symbol: str, fast: int, slow: int) -> None:
    """Depth caches of ``symbol`` on ``@depth@100ms`` and ``@depth`` follow ``ex``'s book for
    ``fast`` and ``slow`` synced updates."""
    snapshot = book_body(ex, symbol)
    async with ex, binance_client(ex) as (client, bm), asyncio.timeout(2 * TIMEOUT), \
            asyncio.TaskGroup() as tg:
        on_100ms = tg.create_task(_watch_depth_cache(client, bm, symbol, 100, fast))
        on_1000ms = tg.create_task(_watch_depth_cache(client, bm, symbol, None, slow))
    diffs = ex.history.events(f"{symbol.lower()}@depth@100ms")
    _assert_follows_the_exchange(on_100ms.result(), snapshot, diffs)
    _assert_follows_the_exchange(on_1000ms.result(), snapshot, diffs)


async def test_python_binance_depth_caches_follow_the_synthetic_book() -> None:
    """python-binance's DepthCacheManager, on ``@depth@100ms`` and on ``@depth`` of a synthetic
    symbol, equals the exchange's book at each update id once synced and is never crossed."""
    await _depth_caches_follow(LocalExchange(synthetic=["SOLUSDT"], rate=20), "SOLUSDT", 5, 2)


async def test_python_binance_depth_caches_follow_the_replayed_book() -> None:
    """python-binance's DepthCacheManager, on the recorded ``@depth@100ms`` and the derived
    ``@depth`` of a replayed symbol, whose REST snapshots may fall strictly inside a diff (it then
    fetches another), resyncs and then equals the exchange's book at each update id."""
    await _depth_caches_follow(LocalExchange(replay=[APRIL_4], speed=4.0), "BTCUSDT", 20, 4)


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
