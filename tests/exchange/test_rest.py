"""REST ``/api/v3`` answers, consistent with the published history, and weight limits."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from binance_streamer.exchange import Limits, LocalExchange
from tests.exchange.helpers import APRIL_4, APRIL_5


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


def _avg(trades: list[dict[str, Any]]) -> Decimal:
    """The volume-weighted price of aggTrade payloads."""
    volume = sum(Decimal(t["q"]) for t in trades)
    return sum(Decimal(t["p"]) * Decimal(t["q"]) for t in trades) / volume


def _q8(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.00000001')):f}"


async def test_price_avg_price_and_rolling_ticker_come_from_the_replayed_trades(
        http: Any, connect: Any) -> None:
    """ticker/price, avgPrice and the rolling-window ticker answer, for one symbol, a symbols
    list and (ticker/price) every symbol, with values computed from the replayed aggTrades."""
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex:
        await replayed(ex, connect)
        aggs = {s: ex.history.events(f"{s.lower()}@aggTrade")
                for s in ("BTCUSDT", "DOTUSDT", "ETHUSDT")}
        base = ex.rest_url + "/api/v3/"
        prices = {s: {"symbol": s, "price": a[-1]["p"]} for s, a in aggs.items()}
        assert (await get(http, base + "ticker/price?symbol=ETHUSDT"))[1] == prices["ETHUSDT"]
        status, body, headers = await get(http, base + 'ticker/price?symbols=["ETHUSDT","BTCUSDT"]')
        assert (status, body) == (200, [prices["ETHUSDT"], prices["BTCUSDT"]])
        assert headers["X-MBX-USED-WEIGHT-1M"] == "6"  # 2 for one symbol, 4 for a list
        assert (await get(http, base + "ticker/price"))[1] == list(prices.values())

        btc = aggs["BTCUSDT"]
        last = btc[-1]["T"]
        recent = [t for t in btc if t["T"] > last - 300_000]
        assert (await get(http, base + "avgPrice?symbol=BTCUSDT"))[1] == {
            "mins": 5, "price": _q8(_avg(recent)), "closeTime": last}

        open_ms = (last - 60_000) // 60_000 * 60_000
        window = [t for t in btc if open_ms <= t["T"] <= last]
        prices_in = [Decimal(t["p"]) for t in window]
        volume = sum(Decimal(t["q"]) for t in window)
        change = prices_in[-1] - prices_in[0]
        expected = {
            "symbol": "BTCUSDT", "priceChange": _q8(change),
            "priceChangePercent": f"{(change * 100 / prices_in[0]).quantize(Decimal('0.001')):f}",
            "weightedAvgPrice": _q8(_avg(window)), "openPrice": window[0]["p"],
            "highPrice": _q8(max(prices_in)), "lowPrice": _q8(min(prices_in)),
            "lastPrice": window[-1]["p"], "volume": _q8(volume),
            "quoteVolume": _q8(sum(Decimal(t["p"]) * Decimal(t["q"]) for t in window)),
            "openTime": open_ms, "closeTime": last, "firstId": window[0]["f"],
            "lastId": window[-1]["l"], "count": window[-1]["l"] - window[0]["f"] + 1}
        status, body, _ = await get(http, base + "ticker?symbol=BTCUSDT&windowSize=1m")
        assert (status, body) == (200, expected)
        _, body, _ = await get(http, base + 'ticker?symbols=["BTCUSDT"]&windowSize=1m&type=MINI')
        assert body == [{k: expected[k] for k in body[0]}]
        assert list(body[0]) == ["symbol", "openPrice", "highPrice", "lowPrice", "lastPrice",
                                 "volume", "quoteVolume", "openTime", "closeTime", "firstId",
                                 "lastId", "count"]
        _, body, _ = await get(http, base + "ticker?symbol=BTCUSDT&windowSize=2h")
        assert (body["firstId"], body["lastId"]) == (btc[0]["f"], btc[-1]["l"])


async def test_rolling_window_opens_on_the_minute_before_its_size(http: Any) -> None:
    """The rolling-window ticker's window runs from the minute at or before ``closeTime -
    windowSize`` to ``closeTime``, the last trade (rest-api.md "Rolling window price change
    statistics")."""
    async with LocalExchange() as ex:
        for agg_id, offset, price in ((1, -1, "9.00000000"), (2, 0, "10.00000000"),
                                      (3, 45_000, "12.00000000"), (4, 90_500, "11.00000000")):
            ex.market.publish("btcusdt@aggTrade", _agg(agg_id, OPEN + offset, price))
        base = ex.rest_url + "/api/v3/ticker?symbol=BTCUSDT&type=MINI&windowSize="
        _, body, _ = await get(http, base + "1m")
        assert body == {"symbol": "BTCUSDT", "openPrice": "10.00000000",
                        "highPrice": "12.00000000", "lowPrice": "10.00000000",
                        "lastPrice": "11.00000000", "volume": "3.00000000",
                        "quoteVolume": "33.00000000", "openTime": OPEN,
                        "closeTime": OPEN + 90_500, "firstId": 2, "lastId": 4, "count": 3}
        _, body, _ = await get(http, base + "2m")
        assert (body["openTime"], body["firstId"], body["openPrice"]) == (
            OPEN - 60_000, 1, "9.00000000")


async def test_book_ticker_is_the_last_recorded_book_ticker_or_the_book(
        http: Any, connect: Any) -> None:
    """ticker/bookTicker answers the last replayed bookTicker of a recording that has no depth,
    and the best levels of the order book of one that has."""
    async with LocalExchange(replay=[APRIL_5], speed=None) as ex:
        client = await connect(ex.ws_url + "/ws/zilusdt@bookTicker")
        await client.recv()
        await ex.finished()
        last = ex.history.events("zilusdt@bookTicker")[-1]
        status, body, _ = await get(http, ex.rest_url + "/api/v3/ticker/bookTicker?symbol=ZILUSDT")
        assert (status, body) == (200, {"symbol": "ZILUSDT", "bidPrice": last["b"],
                                        "bidQty": last["B"], "askPrice": last["a"],
                                        "askQty": last["A"]})
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex:
        await replayed(ex, connect)
        _, depth, _ = await get(http, ex.rest_url + "/api/v3/depth?symbol=BTCUSDT&limit=5")
        _, body, _ = await get(http, ex.rest_url + '/api/v3/ticker/bookTicker?symbols=["BTCUSDT"]')
        assert body == [{"symbol": "BTCUSDT", "bidPrice": depth["bids"][0][0],
                         "bidQty": depth["bids"][0][1], "askPrice": depth["asks"][0][0],
                         "askQty": depth["asks"][0][1]}]
        assert depth["lastUpdateId"] == ex.history.events("btcusdt@depth@100ms")[-1]["u"]


async def test_recent_trades_are_the_streamed_trades(http: Any, connect: Any) -> None:
    """``trades`` answers the most recent streamed trades, each as Binance's trade row."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=100) as ex:
        client = await connect(ex.ws_url + "/ws/btcusdt@trade")
        seen = [await client.recv() for _ in range(10)]
        _, rows, _ = await get(http, ex.rest_url + "/api/v3/trades?symbol=BTCUSDT&limit=7")
        by_id = {t["t"]: t for t in ex.history.events("btcusdt@trade")}
        assert len(rows) == 7 and rows[0]["id"] >= seen[0]["t"]
        assert [r["id"] for r in rows] == list(range(rows[0]["id"], rows[0]["id"] + 7))
        sent = [by_id[r["id"]] for r in rows]
        assert rows == [{"id": t["t"], "price": t["p"], "qty": t["q"],
                         "quoteQty": _q8(Decimal(t["p"]) * Decimal(t["q"])), "time": t["T"],
                         "isBuyerMaker": t["m"], "isBestMatch": True} for t in sent]


ILLEGAL_SYMBOL = ("Illegal characters found in parameter 'symbol'; legal range is "
                  "'^[A-Z0-9-_.]{1,20}$'.")
ILLEGAL_SYMBOLS = ("Illegal characters found in parameter 'symbols'; legal range is "
                   "'^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.")
MANDATORY_SYMBOL = "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."


@pytest.mark.parametrize(("path", "status", "code", "msg"), [
    ("ticker/price?symbol=btcusdt", 400, -1100, ILLEGAL_SYMBOL),
    ("ticker/bookTicker?symbol=BTC/USDT", 400, -1100, ILLEGAL_SYMBOL),
    ("avgPrice?symbol=btcusdt", 400, -1100, ILLEGAL_SYMBOL),
    ("depth?symbol=btcusdt", 400, -1100, ILLEGAL_SYMBOL),
    ("ticker?symbol=ABCDEFGHIJKLMNOPQRSTU", 400, -1100, ILLEGAL_SYMBOL),
    ("ticker/24hr?symbols=[\"BTCUSDT\", \"ETHUSDT\"]", 400, -1100, ILLEGAL_SYMBOLS),
    ("ticker/price?symbols=BTCUSDT", 400, -1100, ILLEGAL_SYMBOLS),
    ("ticker/price?symbols=[\"btcusdt\"]", 400, -1100, ILLEGAL_SYMBOLS),
    ("ticker/price?symbol=NOPEUSDT", 400, -1121, "Invalid symbol."),
    ("ticker?symbols=[\"BTCUSDT\",\"NOPEUSDT\"]", 400, -1121, "Invalid symbol."),
    ("trades?symbol=NOPEUSDT", 400, -1121, "Invalid symbol."),
    ("avgPrice", 400, -1102, MANDATORY_SYMBOL),
    ("trades?symbol=", 400, -1102, MANDATORY_SYMBOL),
    ("ticker", 400, -1102, "Param 'symbol' or 'symbols' must be sent, but both were empty/null!"),
    ("ticker/price?symbol=BTCUSDT&symbols=[\"BTCUSDT\"]", 400, -1128,
     "Combination of optional parameters invalid."),
    ("ticker/bookTicker?symbols=[\"BTCUSDT\",\"BTCUSDT\"]", 400, -1151,
     "Symbol is present multiple times in the list."),
    ("ticker?symbol=BTCUSDT&windowSize=60m", 400, -1130,
     "Data sent for parameter 'windowSize' is not valid."),
    ("ticker?symbol=BTCUSDT&windowSize=1d2h", 400, -1130,
     "Data sent for parameter 'windowSize' is not valid."),
    ("ticker/24hr?symbol=BTCUSDT&type=SMALL", 400, -1139, "Invalid ticker type."),
    ("trades?symbol=BTCUSDT&limit=ten", 400, -1100,
     "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."),
    ("tickers", 404, -1020, "This operation is not supported."),
    ("../v1/nothing", 404, -1020, "This operation is not supported."),
])
async def test_bad_requests_get_binance_json_errors(http: Any, path: str, status: int, code: int,
                                                   msg: str) -> None:
    """Unknown paths and bad parameters are answered with Binance's status and JSON error."""
    async with LocalExchange(synthetic=["BTCUSDT"]) as ex, http.get(
            ex.rest_url + "/api/v3/" + path) as resp:
        assert (resp.status, resp.content_type) == (status, "application/json")
        assert await resp.json() == {"code": code, "msg": msg}


async def test_a_wrong_method_gets_a_json_error(http: Any) -> None:
    """A method the path does not serve is answered 405 with Binance's JSON error shape."""
    async with LocalExchange() as ex, http.post(ex.rest_url + "/api/v3/ping") as resp:
        assert (resp.status, resp.content_type) == (405, "application/json")
        assert await resp.json() == {"code": -1020, "msg": "This operation is not supported."}
