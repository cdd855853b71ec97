"""REST ``/api/v3`` answers, consistent with the published history, and weight limits."""

from __future__ import annotations

import asyncio
from typing import Any

from binance_streamer.exchange import BUNDLED_SESSIONS, Limits, LocalExchange

APRIL_4 = next(p for p in BUNDLED_SESSIONS if "04-04" in p.name)


async def get(http: Any, url: str) -> tuple[int, Any, Any]:
    async with http.get(url) as resp:
        return resp.status, await resp.json(), resp.headers


async def replayed(ex: LocalExchange, connect: Any) -> None:
    """Run the whole replay at max speed with one subscriber reading everything."""
    client = await connect(ex.ws_url + "/ws/btcusdt@aggTrade")
    fin = asyncio.ensure_future(ex.finished())
    while True:
        try:
            await client.recv(timeout=0.2)
        except TimeoutError:
            if fin.done():
                return


async def test_exchange_info_and_invalid_symbol(http: Any) -> None:
    """exchangeInfo lists a served symbol and answers -1121 for an unknown one."""
    async with LocalExchange(synthetic=["FOOUSDT"]) as ex:
        status, body, headers = await get(http, ex.rest_url + "/api/v3/exchangeInfo?symbol=FOOUSDT")
        assert status == 200 and [s["symbol"] for s in body["symbols"]] == ["FOOUSDT"]
        assert body["symbols"][0]["quoteAsset"] == "USDT"
        assert headers["X-MBX-USED-WEIGHT-1M"] == "20"
        status, body, _ = await get(http, ex.rest_url + "/api/v3/exchangeInfo?symbol=NOPE")
        assert (status, body) == (400, {"code": -1121, "msg": "Invalid symbol."})
        status, body, _ = await get(http, ex.rest_url + '/api/v3/exchangeInfo?symbols=["BTCUSDT"]')
        assert body["symbols"][0]["symbol"] == "BTCUSDT"


async def test_agg_trades_match_what_was_streamed(http: Any, connect: Any) -> None:
    """aggTrades by fromId, by time and the most recent ones come from the streamed history."""
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex:
        await replayed(ex, connect)
        streamed = ex.history.events("btcusdt@aggTrade")
        rows = [{k: a[k] for k in ("a", "p", "q", "f", "l", "T", "m", "M")} for a in streamed]
        base = ex.rest_url + "/api/v3/aggTrades?symbol=BTCUSDT"
        assert (await get(http, base + f"&fromId={rows[10]['a']}&limit=5"))[1] == rows[10:15]
        assert (await get(http, base + "&limit=3"))[1] == rows[-3:]
        start = rows[100]["T"]
        body = (await get(http, base + f"&startTime={start}&limit=1000"))[1]
        assert body == [r for r in rows if r["T"] >= start][:1000]
        body = (await get(http, base + f"&endTime={start}&limit=2"))[1]
        assert body == [r for r in rows if r["T"] <= start][-2:]
        _status, body, headers = await get(http, base + "&limit=1")
        assert headers["X-MBX-USED-WEIGHT-1M"] == "20"  # 5 requests x weight 4


async def test_depth_snapshot_bridges_onto_the_diff_stream(http: Any, connect: Any) -> None:
    """A client following Binance's order-book procedure finds the bridging event."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=200) as ex:
        client = await connect(ex.ws_url + "/ws/btcusdt@depth@100ms")
        first = await client.recv()
        _, snap, headers = await get(http, ex.rest_url + "/api/v3/depth?symbol=BTCUSDT&limit=10")
        assert headers["X-MBX-USED-WEIGHT-1M"] == "5"
        assert snap["lastUpdateId"] >= first["U"]
        event = first
        while event["u"] <= snap["lastUpdateId"]:
            event = await client.recv()
        assert event["U"] <= snap["lastUpdateId"] + 1 <= event["u"]
        assert len(snap["bids"]) == 10 and snap["bids"][0][0] < snap["asks"][0][0]


async def test_trades_klines_and_ticker(http: Any, connect: Any) -> None:
    """trades, historicalTrades, klines and ticker/24hr agree with the streamed trades."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=100) as ex:
        client = await connect(ex.ws_url + "/ws/btcusdt@trade")
        for _ in range(30):
            await client.recv()
        trades = ex.history.events("btcusdt@trade")
        base = ex.rest_url + "/api/v3/"
        hist = (await get(http, base + f"historicalTrades?symbol=BTCUSDT&fromId={trades[3]['t']}"
                                      "&limit=2"))[1]
        assert [(h["id"], h["price"], h["qty"]) for h in hist] == [
            (t["t"], t["p"], t["q"]) for t in trades[3:5]]
        recent = (await get(http, base + "trades?symbol=BTCUSDT&limit=1"))[1]
        assert recent[0]["id"] >= trades[-1]["t"]
        klines = (await get(http, base + "klines?symbol=BTCUSDT&interval=1m"))[1]
        assert len(klines[-1]) == 12 and klines[-1][0] % 60_000 == 0
        ticker = (await get(http, base + "ticker/24hr?symbol=BTCUSDT"))[1]
        assert ticker["symbol"] == "BTCUSDT" and ticker["firstId"] <= trades[0]["t"]
        status, body, _ = await get(http, base + "klines?symbol=BTCUSDT&interval=7m")
        assert (status, body) == (400, {"code": -1120, "msg": "Invalid interval."})


async def test_weight_limit_429_then_418(http: Any) -> None:
    """Past the weight limit REST answers 429 with Retry-After, and 418 after continued abuse."""
    limits = Limits(rest_weight_per_min=40, ban_after_429=2)
    async with LocalExchange(limits=limits) as ex:
        url = ex.rest_url + "/api/v3/exchangeInfo"
        assert (await get(http, url))[0] == 200
        assert (await get(http, url))[0] == 200
        status, body, headers = await get(http, url)
        assert status == 429 and body["code"] == -1003 and int(headers["Retry-After"]) > 0
        assert (await get(http, url))[0] == 429
        status, body, headers = await get(http, url)
        assert status == 418 and "banned" in body["msg"] and int(headers["Retry-After"]) > 0
        assert (await get(http, ex.rest_url + "/api/v3/ping"))[0] == 418


async def test_replayed_depth_snapshot_is_the_recorded_one_and_bridges(http: Any,
                                                                      connect: Any) -> None:
    """Early in a replay, REST depth is the recorded snapshot, and the recorded diffs bridge it."""
    async with LocalExchange(replay=[APRIL_4], speed=10.0) as ex:
        client = await connect(ex.ws_url + "/ws/btcusdt@depth@100ms")
        first = await client.recv()
        _, snap, _ = await get(http, ex.rest_url + "/api/v3/depth?symbol=BTCUSDT&limit=1000")
        assert snap["lastUpdateId"] == 9893033066 and snap["lastUpdateId"] >= first["U"]
        event = first
        while event["u"] <= snap["lastUpdateId"]:
            event = await client.recv()
        assert event["U"] <= snap["lastUpdateId"] + 1 <= event["u"]
        assert len(snap["bids"]) == 1000 and snap["bids"][0] == ["58001.03000000", "1.60107400"]


def _agg(agg_id: int, time_ms: int, price: str) -> dict[str, Any]:
    """An aggTrade payload (web-socket-streams.md "Aggregate Trade Streams") at ``time_ms``."""
    return {"e": "aggTrade", "E": time_ms, "s": "BTCUSDT", "a": agg_id, "p": price,
            "q": "1.00000000", "f": agg_id, "l": agg_id, "T": time_ms, "m": False,
            "M": True}


OPEN = 1_699_999_980_000  # a whole minute: the open time of the first 1s and 1m candles


async def test_the_first_partial_candle_is_selected_by_its_open_time(http: Any) -> None:
    """The first candle, whose first trade comes after its open time, is returned for any
    [startTime, endTime] holding its open time, and startTime/endTime select candles by open
    time (rest-api.md "Kline/Candlestick data": klines are uniquely identified by their open
    time)."""
    async with LocalExchange() as ex:
        for agg_id, offset, price in ((1, 250, "10.00000000"), (2, 700, "11.00000000"),
                                      (3, 1_400, "12.00000000"), (4, 2_900, "13.00000000")):
            ex.market.publish("btcusdt@aggTrade", _agg(agg_id, OPEN + offset, price))
        base = ex.rest_url + "/api/v3/klines?symbol=BTCUSDT&interval=1s"

        async def opens(query: str) -> list[int]:
            status, body, _ = await get(http, base + query)
            assert status == 200, body
            return [row[0] for row in body]

        status, body, _ = await get(http, base + f"&startTime={OPEN}&endTime={OPEN}")
        assert status == 200 and [row[:7] for row in body] == [
            [OPEN, "10.00000000", "11.00000000", "10.00000000", "11.00000000", "2.00000000",
             OPEN + 999]]
        assert await opens(f"&endTime={OPEN}") == [OPEN]
        assert await opens(f"&startTime={OPEN - 5_000}&endTime={OPEN + 100}") == [OPEN]
        assert await opens(f"&startTime={OPEN - 5_000}") == [OPEN, OPEN + 1_000, OPEN + 2_000]
        assert await opens(f"&startTime={OPEN + 1}") == [OPEN + 1_000, OPEN + 2_000]
        assert await opens(f"&startTime={OPEN + 2_000}&endTime={OPEN + 9_000}") == [OPEN + 2_000]
        assert await opens(f"&startTime={OPEN + 3_000}") == []
        assert await opens(f"&endTime={OPEN - 1}") == []
        assert await opens("&limit=2") == [OPEN + 1_000, OPEN + 2_000]
        status, body, _ = await get(http, ex.rest_url + "/api/v3/klines?symbol=BTCUSDT"
                                    f"&interval=1m&startTime={OPEN}&endTime={OPEN}")
        assert [(row[0], row[8]) for row in body] == [(OPEN, 4)]


async def test_time_parameters_may_be_sent_in_microseconds(http: Any) -> None:
    """startTime and endTime in microseconds select the same klines and aggTrades as in
    milliseconds (rest-api.md "General API Information")."""
    async with LocalExchange() as ex:
        for agg_id, offset in ((1, 250), (2, 1_400), (3, 2_900)):
            ex.market.publish("btcusdt@aggTrade", _agg(agg_id, OPEN + offset, "10.00000000"))
        base = ex.rest_url + "/api/v3/"
        us = OPEN * 1000
        for query, opens in ((f"startTime={us}&endTime={us}", [OPEN]),
                             (f"startTime={us + 1}", [OPEN + 1_000, OPEN + 2_000]),
                             (f"endTime={us + 1_999_999}", [OPEN, OPEN + 1_000])):
            _, body, _ = await get(http, base + f"klines?symbol=BTCUSDT&interval=1s&{query}")
            assert [row[0] for row in body] == opens, query
        _, body, _ = await get(http, base + "aggTrades?symbol=BTCUSDT"
                               f"&startTime={us + 250_001}&endTime={us + 2_900_000}")
        assert [row["a"] for row in body] == [2, 3]
