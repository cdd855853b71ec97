"""Fuzz: no client input crashes the server or disturbs another connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binance_streamer.exchange import Limits, LocalExchange
from tests.exchange.helpers import TIMEOUT

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=10)
requests = st.fixed_dictionaries(
    {"method": st.sampled_from(["SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS",
                                "SET_PROPERTY", "GET_PROPERTY", "subscribe", ""]) | json_values},
    optional={"params": st.lists(st.sampled_from(["btcusdt@trade", "combined", "BTCUSDT@trade",
                                                  "x@depth@100ms", "!miniTicker@arr", "a@b"])
                                 | json_values, max_size=4) | json_values,
              "id": st.integers() | st.text(max_size=40) | json_values})
messages = st.one_of(
    requests.map(json.dumps), json_values.map(json.dumps), st.text(max_size=200), st.binary(
        max_size=200))


async def scenario(inputs: list[str | bytes]) -> None:
    limits = Limits(max_incoming_per_s=10_000)
    async with LocalExchange(synthetic=["BTCUSDT"], rate=500, limits=limits) as ex, \
            aiohttp.ClientSession() as http, asyncio.timeout(TIMEOUT):
        observer = await http.ws_connect(ex.ws_url + "/ws/btcusdt@trade")
        fuzzed = await http.ws_connect(ex.ws_url + "/ws")
        first = json.loads((await observer.receive()).data)
        for item in inputs:
            await (fuzzed.send_bytes(item) if isinstance(item, bytes) else fuzzed.send_str(item))
        await fuzzed.send_str('{"method":"LIST_SUBSCRIPTIONS","id":424242}')
        replies = 0
        while True:
            msg = json.loads((await fuzzed.receive()).data)
            if isinstance(msg, dict) and "id" in msg and ("result" in msg or "error" in msg):
                replies += 1
                if msg["id"] == 424242 and "result" in msg:
                    break
        assert replies == len(inputs) + 1
        ids = [first["t"]]
        for _ in range(20):
            ids.append(json.loads((await observer.receive()).data)["t"])
        assert ids == list(range(ids[0], ids[0] + len(ids)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, max_size=8))
def test_no_input_crashes_the_server_or_other_connections(inputs: list[Any]) -> None:
    """Every message gets one reply, the connection survives and others keep receiving."""
    asyncio.run(scenario(inputs))
