"""Control methods, URL forms and their documented replies and error codes."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from binance_streamer.exchange import LocalExchange
from binance_streamer.exchange.control import SessionState, handle_control


def control(text: str, state: SessionState | None = None, max_streams: int = 1024) -> Any:
    return handle_control(text, state or SessionState(), max_streams).reply


@pytest.mark.parametrize(("text", "reply"), [
    ('{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","btcusdt@depth"],"id":1}',
     {"result": None, "id": 1}),
    ('{"method":"UNSUBSCRIBE","params":["btcusdt@depth"],"id":312}', {"result": None, "id": 312}),
    ('{"method":"LIST_SUBSCRIPTIONS","id":3}', {"result": [], "id": 3}),
    ('{"method":"SET_PROPERTY","params":["combined",true],"id":5}', {"result": None, "id": 5}),
    ('{"method":"GET_PROPERTY","params":["combined"],"id":2}', {"result": False, "id": 2}),
    ('{"method":"SUBSCRIBE","params":["xrpxrp@miniTicker"],"id":"abc123"}',
     {"result": None, "id": "abc123"}),
    ('{"method":"SUBSCRIBE","params":["BTCUSDT@trade"],"id":null}', {"result": None, "id": None}),
])
def test_documented_success_replies(text: str, reply: Any) -> None:
    """Each control method answers with the documented result and echoes the id."""
    assert control(text) == reply


@pytest.mark.parametrize(("text", "code", "msg"), [
    ('{"method":"SET_PROPERTY","params":["colour",true],"id":5}', 0, "Unknown property"),
    ('{"method":"SET_PROPERTY","params":["combined","yes"],"id":5}', 1,
     "Invalid value type: expected Boolean"),
    ('{"method":"GET_PROPERTY","params":[1],"id":5}', 2,
     "Invalid request: property name must be a string"),
    ('{"method":"SUBSCRIBE","params":["btcusdt@trade"]}', 2,
     "Invalid request: request ID must be an unsigned integer"),
    ('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1.5}', 2,
     "Invalid request: request ID must be an unsigned integer"),
    ('{"method":"SET_PROPERTY","params":["combined",true,1],"id":5}', 2,
     "Invalid request: too many parameters"),
    ('{"method":"SUBSCRIBE","params":["btcusdt@nonsense"],"id":2}', 2,
     "Invalid request: invalid stream"),
    ('{"method":"SUBSCRIBE","params":["btcusdt"],"id":2}', 2, "Invalid request: invalid stream"),
    ('{"method":', 3, "Invalid JSON: expected value at line 1 column 11"),
])
def test_documented_error_replies(text: str, code: int, msg: str) -> None:
    """Bad requests get Binance's error code and message."""
    assert control(text)["error"] == {"code": code, "msg": msg}


def test_method_typo_names_the_variants() -> None:
    """A method typo answers code 2 listing the five methods."""
    err = control('{"method":"SUBSCRIBEE","params":[],"id":1}')["error"]
    assert err["code"] == 2
    assert err["msg"].startswith("Invalid request: unknown variant `SUBSCRIBEE`, expected one of "
                                 "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`")


def test_missing_method() -> None:
    """A request without a method answers code 2 ``missing field `method```."""
    assert control('{"params":[],"id":1}')["error"]["msg"].startswith(
        "Invalid request: missing field `method`")


def test_subscription_cap() -> None:
    """Going over the per-connection stream cap answers code 4 and subscribes nothing."""
    state = SessionState()
    params = ",".join(f'"s{i}usdt@trade"' for i in range(3))
    reply = control(f'{{"method":"SUBSCRIBE","params":[{params}],"id":9}}', state, max_streams=2)
    assert reply == {"error": {"code": 4, "msg": "Too many subscriptions"}, "id": 9}
    assert state.subscriptions == {}


async def test_empty_ws_then_subscribe_list_and_combined(connect: Any) -> None:
    """``/ws`` + SUBSCRIBE gives bare payloads, SET_PROPERTY combined switches to wrapped ones."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        client = await connect(ex.ws_url + "/ws")
        await client.send({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1})
        assert await client.reply(1) == {"result": None, "id": 1}
        bare = await client.until(lambda m: "e" in m)
        assert bare["e"] == "trade"
        await client.send({"method": "GET_PROPERTY", "params": ["combined"], "id": 2})
        assert (await client.reply(2))["result"] is False
        await client.send({"method": "SET_PROPERTY", "params": ["combined", True], "id": 3})
        await client.reply(3)
        wrapped = await client.until(lambda m: "stream" in m)
        assert wrapped["stream"] == "btcusdt@trade" and wrapped["data"]["e"] == "trade"
        await client.send({"method": "LIST_SUBSCRIPTIONS", "id": 4})
        assert (await client.reply(4))["result"] == ["btcusdt@trade"]


async def test_stream_endpoint_is_combined_and_unsubscribe_stops_data(connect: Any) -> None:
    """``/stream`` + SUBSCRIBE wraps events; after UNSUBSCRIBE no more events of that stream."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=100) as ex:
        client = await connect(ex.ws_url + "/stream")
        await client.send({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 1})
        await client.until(lambda m: m.get("stream") == "btcusdt@aggTrade")
        await client.send({"method": "UNSUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 2})
        await client.reply(2)
        await client.send({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 3})
        await client.reply(3)
        msg = await client.until(lambda m: "stream" in m)
        assert msg["stream"] == "btcusdt@trade"
        assert ex.connections[0].state.subscriptions == {"btcusdt@trade": None}


async def test_unknown_symbol_is_acknowledged_and_silent(connect: Any) -> None:
    """A well-formed unknown symbol is acknowledged and then sends nothing."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=100) as ex:
        client = await connect(ex.ws_url + "/ws")
        await client.send({"method": "SUBSCRIBE",
                           "params": ["xrpxrp@miniTicker", "btcusdt@trade"], "id": 1})
        assert await client.reply(1) == {"result": None, "id": 1}
        for _ in range(20):
            assert (await client.recv())["s"] == "BTCUSDT"
        assert ex.history.events("xrpxrp@miniTicker") == []


async def test_microsecond_time_unit(connect: Any) -> None:
    """``timeUnit=MICROSECOND`` multiplies event and trade times by 1000, and ids are untouched."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=100) as ex:
        client = await connect(ex.ws_url + "/stream?streams=btcusdt@trade&timeUnit=MICROSECOND")
        msg = (await client.recv())["data"]
        sent = next(t for t in ex.history.events("btcusdt@trade") if t["t"] == msg["t"])
    assert msg["E"] == sent["E"] * 1000 and msg["T"] == sent["T"] * 1000


async def test_invalid_stream_in_url_is_refused(http: Any) -> None:
    """A malformed stream name in the URL fails the handshake with code 2."""
    async with LocalExchange() as ex, http.get(ex.rest_url + "/ws/btcusdt@nonsense") as resp:
        assert resp.status == 400
        assert await resp.json() == {"code": 2, "msg": "Invalid request: invalid stream"}


UUID = "5b854d65-3982-4b08-ae71-3d65f25b6260"  # as binance-sdk-spot sends it


@pytest.mark.parametrize("req_id", [UUID, "A" * 36, "abc123", 0, -(2**63), 2**63 - 1, None])
@pytest.mark.parametrize(("method", "params", "result"), [
    ("SUBSCRIBE", ["btcusdt@trade"], None),
    ("UNSUBSCRIBE", ["btcusdt@trade"], None),
    ("LIST_SUBSCRIPTIONS", [], []),
    ("SET_PROPERTY", ["combined", True], None),
    ("GET_PROPERTY", ["combined"], False),
])
def test_every_method_echoes_each_documented_id_form(method: str, params: list[Any],
                                                     result: Any, req_id: Any) -> None:
    """Every control method accepts a 64-bit signed integer, a string of at most 36 letters,
    digits and hyphens (a UUID), or null as its id, and echoes it in the reply."""
    text = json.dumps({"method": method, "params": params, "id": req_id})
    assert control(text) == {"result": result, "id": req_id}


@pytest.mark.parametrize("req_id", ["A" * 37, UUID + "0", "a b", "", "a_b", "abc\n", 2**63,
                                    -(2**63) - 1, True, 1.5, [1], {"id": 1}])
def test_ids_outside_the_documented_forms_get_code_2(req_id: Any) -> None:
    """An id that is not a 64-bit signed integer, a string of at most 36 letters, digits and
    hyphens, or null is refused with code 2 and nothing is subscribed."""
    state = SessionState()
    text = json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": req_id})
    assert control(text, state) == {
        "error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"},
        "id": None}
    assert state.subscriptions == {}


async def test_a_raw_path_without_a_stream_upgrades_and_subscribes(connect: Any) -> None:
    """``/ws/0`` (as ccxt opens it) is a raw connection without streams: it upgrades, and
    SUBSCRIBE then delivers bare payloads."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=100) as ex:
        client = await connect(ex.ws_url + "/ws/0")
        await client.send({"method": "LIST_SUBSCRIPTIONS", "id": 1})
        assert await client.reply(1) == {"result": [], "id": 1}
        await client.send({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 2})
        assert await client.reply(2) == {"result": None, "id": 2}
        trade = await client.until(lambda m: "e" in m)
        sent = next(t for t in ex.history.events("btcusdt@trade") if t["t"] == trade["t"])
        assert trade == sent
        assert ex.connections[0].state.subscriptions == {"btcusdt@trade": None}


async def test_a_combined_url_with_1024_streams_connects_and_1025_are_refused(
        connect: Any, http: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A ``/stream?streams=`` URL naming 1024 streams (about 20 KB) connects with all of them
    subscribed; one naming 1025 is refused with Binance's JSON error before the upgrade, and
    the server logs no error for either."""
    names = [f"s{i:04d}usdt@aggTrade" for i in range(1025)]
    async with LocalExchange() as ex:
        url = "/stream?streams=" + "/".join(names[:1024])
        assert len(url) > 16_000
        client = await connect(ex.ws_url + url)
        await client.send({"method": "LIST_SUBSCRIPTIONS", "id": 1})
        assert (await client.reply(1))["result"] == names[:1024]
        too_many = "/stream?streams=" + "/".join(names)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect(ex.ws_url + too_many)
        assert refused.value.status == 400
        async with http.get(ex.rest_url + too_many) as resp:
            assert resp.status == 400 and resp.content_type == "application/json"
            assert await resp.json() == {"code": 4, "msg": "Too many subscriptions"}
        assert len(ex.connections) == 1
    assert [r.getMessage() for r in caplog.records if r.name.startswith("aiohttp")] == []
