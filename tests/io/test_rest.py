"""The REST client: typed market data, weights, and errors translated at the edge."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from binance_streamer.core.rest_payloads import DepthSnapshot, RestAggTrade, RestKline, RestTrade
from binance_streamer.errors import (
    BadResponse,
    RateLimited,
    RestError,
    UnknownSymbolError,
    Unreachable,
)
from binance_streamer.exchange import LocalExchange
from binance_streamer.io.rest import RestClient
from binance_streamer.samples import bundled_session

# rest-api.md, "Market Data endpoints": the documented example answers, by path.
DOCUMENTED = {
    "aggTrades": b'[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,'
                 b'"T":1498793709153,"m":true,"M":true}]',
    "historicalTrades": b'[{"id":28457,"price":"4.00000100","qty":"12.00000000",'
                        b'"quoteQty":"48.000012","time":1499865549590,"isBuyerMaker":true,'
                        b'"isBestMatch":true}]',
    "klines": b'[[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100",'
              b'"148976.11427815",1499644799999,"2434.19055334",308,"1756.87402397",'
              b'"28.46694368","0"]]',
    "depth": b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],'
             b'"asks":[["4.00000200","12.00000000"]]}',
    "exchangeInfo": b'{"symbols":[{"symbol":"BTCUSDT","status":"TRADING"},'
                    b'{"symbol":"LUNAUSDT","status":"BREAK"}]}',
}


@contextlib.asynccontextmanager
async def answering(bodies: dict[str, bytes]) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A server answering ``/api/v3/<path>`` with ``bodies[path]``; yields its URL and requests."""
    requests: list[web.Request] = []

    async def answer(request: web.Request) -> web.Response:
        requests.append(request)
        return web.Response(body=bodies[request.match_info["path"]],
                            content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v3/{path}", answer)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), requests
    finally:
        await server.close()


async def test_replayed_market_data_comes_back_typed() -> None:
    """aggTrades, klines and depth of a replayed session decode into typed payloads holding the
    streamed values."""
    async with LocalExchange(replay=[bundled_session("cf_2021-04-04")], speed=None,
                             start="manual") as ex, RestClient(ex.rest_url) as rest:
        await ex.start()
        await ex.finished()
        sent = ex.history.events("btcusdt@aggTrade")
        items = await rest.agg_trades("btcusdt", sent[100]["a"], limit=5)
        assert items == [RestAggTrade(e["a"], e["p"], e["q"], e["f"], e["l"], e["T"], e["m"],
                                      e["M"]) for e in sent[100:105]]
        assert rest.used_weight > 0
        final = {e["k"]["t"]: e["k"] for e in ex.history.events("btcusdt@kline_1m")}
        first = min(final)
        klines = await rest.klines("BTCUSDT", "1m", first)
        assert klines and all(isinstance(k, RestKline) for k in klines)
        assert [(k.open_time, k.close, k.trade_count) for k in klines] == [
            (t, final[t]["c"], final[t]["n"]) for t in sorted(final)][:len(klines)]
        snapshot = await rest.depth("btcusdt", limit=5)
        assert isinstance(snapshot, DepthSnapshot) and snapshot.last_update_id > 0
        assert len(snapshot.bids) <= 5


async def test_documented_answers_are_requested_and_typed() -> None:
    """Each market-data call asks its documented endpoint with its parameters and returns the
    documented answer as typed payloads."""
    async with answering(DOCUMENTED) as (url, requests), RestClient(url) as rest:
        assert await rest.agg_trades("ltcbtc", 26129, limit=10) == [RestAggTrade(
            26129, "0.01633102", "4.70443515", 27781, 27781, 1498793709153, True, True)]
        assert await rest.historical_trades("ltcbtc", 28457) == [RestTrade(
            28457, "4.00000100", "12.00000000", 1499865549590, True, True)]
        [kline] = await rest.klines("ltcbtc", "1d", 1499040000000)
        assert (kline.open_time, kline.close_time, kline.trade_count) == (
            1499040000000, 1499644799999, 308)
        assert await rest.depth("ltcbtc", limit=5) == DepthSnapshot(
            1027024, [("4.00000000", "431.00000000")], [("4.00000200", "12.00000000")])
        assert await rest.trading_symbols() == {"BTCUSDT": "TRADING", "LUNAUSDT": "BREAK"}
    assert [(r.match_info["path"], dict(r.query)) for r in requests] == [
        ("aggTrades", {"symbol": "LTCBTC", "fromId": "26129", "limit": "10"}),
        ("historicalTrades", {"symbol": "LTCBTC", "fromId": "28457", "limit": "1000"}),
        ("klines", {"symbol": "LTCBTC", "interval": "1d", "startTime": "1499040000000",
                    "limit": "1000"}),
        ("depth", {"symbol": "LTCBTC", "limit": "5"}),
        ("exchangeInfo", {}),
    ]


WRONG = {
    "aggTrades": b'[{"a":"26129"}]',
    "historicalTrades": b'{"id":1}',
    "klines": b'[[1499040000000,"0.1"]]',
    "depth": b'{"lastUpdateId":1,"bids":[["1"]],"asks":[]}',
    "exchangeInfo": b'{"symbols":[{"status":"TRADING"}]}',
}


async def test_a_body_of_another_shape_is_a_bad_response_naming_the_url() -> None:
    """A body of the wrong shape raises BadResponse with the URL and the offending place,
    never a KeyError or TypeError."""
    async with answering(WRONG) as (url, _), RestClient(url) as rest:
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "aggTrades": lambda: rest.agg_trades("btcusdt", 1),
            "historicalTrades": lambda: rest.historical_trades("btcusdt", 1),
            "klines": lambda: rest.klines("btcusdt", "1m", 0),
            "depth": lambda: rest.depth("btcusdt"),
            "exchangeInfo": lambda: rest.validate_symbols(["BTCUSDT"]),
        }
        for path, call in calls.items():
            with pytest.raises(BadResponse, match=f"/api/v3/{path} answered with an unexpected "
                                                  r"shape: \w"):
                await call()


async def test_a_body_that_is_not_json_is_a_bad_response() -> None:
    """A body that is not JSON at all raises BadResponse quoting its start."""
    async with answering({"aggTrades": b"<html>gateway</html>"}) as (url, _), \
            RestClient(url) as rest:
        with pytest.raises(BadResponse, match=r"invalid JSON: b'<html>gateway"):
            await rest.agg_trades("btcusdt", 1)


async def test_errors_are_translated_at_the_edge() -> None:
    """429 -> RateLimited with Retry-After, 418 too, 5xx -> RestError, -1121 keeps its code."""
    async with LocalExchange(synthetic=["BTCUSDT"]) as ex, RestClient(ex.rest_url) as rest:
        ex.faults.rest_error(429, retry_after=3)
        with pytest.raises(RateLimited) as limited:
            await rest.get("ping")
        assert (limited.value.status, limited.value.retry_after) == (429, 3.0)
        ex.faults.rest_error(418)
        with pytest.raises(RateLimited) as banned:
            await rest.get("ping")
        assert banned.value.status == 418 and banned.value.retry_after > 0
        ex.faults.rest_error(503)
        with pytest.raises(RestError) as unavailable:
            await rest.get("ping")
        assert unavailable.value.status == 503
        with pytest.raises(RestError) as invalid:
            await rest.get("depth", symbol="NOPEUSDT")
        assert invalid.value.code == -1121
        with pytest.raises(UnknownSymbolError, match="NOPEUSDT"):
            await rest.validate_symbols(["BTCUSDT", "NOPEUSDT"])


async def test_an_unreachable_server_is_reported_with_its_url() -> None:
    """No listener: Unreachable names the URL."""
    async with RestClient("http://127.0.0.1:9") as rest:
        with pytest.raises(Unreachable, match=r"127\.0\.0\.1:9"):
            await rest.get("ping")
