"""The deterministic synthetic market: Binance shapes and contiguous sequences."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from binance_streamer.exchange import LocalExchange
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
