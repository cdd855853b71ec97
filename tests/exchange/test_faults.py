"""Fault injection through ``ex.faults``."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp
import pytest

from binance_streamer.exchange import LocalExchange
from tests.exchange.helpers import TIMEOUT


async def raw_messages(client: Any, n: int) -> list[aiohttp.WSMessage]:
    out = []
    async with asyncio.timeout(TIMEOUT):
        for _ in range(n):
            out.append(await client.ws.receive())
    return out


async def test_drop_after_n_messages(connect: Any) -> None:
    """The connection is cut (no close frame) right after the n-th data message."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=200) as ex:
        ex.faults.drop_after(5)  # armed before connecting: no message is in flight yet
        client = await connect(ex.ws_url + "/ws/btcusdt@aggTrade")
        msgs = await raw_messages(client, 6)
    assert [m.type for m in msgs[:5]] == [aiohttp.WSMsgType.TEXT] * 5
    assert msgs[5].type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


async def test_drop_with_close_code_for_the_next_connection(connect: Any) -> None:
    """Armed with no connection open, the fault hits the next one, closing with the code."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=200) as ex:
        ex.faults.drop_after(3, code=1011)
        client = await connect(ex.ws_url + "/ws/btcusdt@trade")
        msgs = await raw_messages(client, 4)
    assert msgs[3].type is aiohttp.WSMsgType.CLOSE and msgs[3].data == 1011


async def test_drop_in_seconds_with_a_code(connect: Any) -> None:
    """``drop_in`` closes the connection with the code after the delay."""
    async with LocalExchange() as ex:
        client = await connect(ex.ws_url + "/ws")
        # Polling on purpose: a bare /ws connection subscribes nothing to wait for.
        while not ex.connections:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        ex.faults.drop_in(0.1, code=4001)
        assert (await client.closed()).data == 4001


async def test_skip_makes_an_id_gap_that_rest_fills(connect: Any, http: Any) -> None:
    """Skipped aggTrades leave a gap of exactly n ids, and REST aggTrades returns them."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=200) as ex:
        client = await connect(ex.ws_url + "/ws/btcusdt@aggTrade")
        before = await client.recv()
        ex.faults.skip(4, stream="btcusdt@aggTrade")
        after = await client.recv()
        assert after["a"] == before["a"] + 5
        url = f"{ex.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&fromId={before['a'] + 1}&limit=4"
        async with http.get(url) as resp:
            rows = await resp.json()
    assert [r["a"] for r in rows] == list(range(before["a"] + 1, after["a"]))


async def test_stall_keeps_the_socket_open_and_sends_nothing(connect: Any) -> None:
    """A stall is a silent pause of the stall's length; the queued events then follow in order."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=200) as ex:
        client = await connect(ex.ws_url + "/ws/btcusdt@trade")
        last = await client.recv()
        loop = asyncio.get_running_loop()
        ex.faults.stall(0.4)
        arrivals = [(loop.time(), last["t"])]
        async with asyncio.timeout(TIMEOUT):
            while arrivals[-1][0] - arrivals[0][0] < 0.6:
                msg = await client.recv()
                arrivals.append((loop.time(), msg["t"]))
    gaps = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(arrivals)]
    assert max(g[0] for g in gaps) >= 0.3
    assert {g[1] for g in gaps} == {1}


async def test_malformed_and_truncated_frames(connect: Any) -> None:
    """A malformed frame carries cut JSON; a truncated frame ends the connection."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=200) as ex:
        client = await connect(ex.ws_url + "/ws/btcusdt@trade")
        await client.recv()
        ex.faults.malformed()
        texts = [m.data for m in await raw_messages(client, 3)]
        broken = [t for t in texts if not _is_json(t)]
        assert broken and broken[0].startswith('{"e":"trade"')
        ex.faults.truncated()
        end = await client.closed()
    assert end.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


async def test_refuse_connections_for_a_while(connect: Any) -> None:
    """While refusing, connection attempts fail; afterwards they succeed."""
    async with LocalExchange() as ex:
        ex.faults.refuse_connections(0.3)
        with pytest.raises(aiohttp.ClientError):
            await connect(ex.ws_url + "/ws")
        await asyncio.sleep(0.35)  # the refusal window is a duration by definition
        client = await connect(ex.ws_url + "/ws")
        assert not client.ws.closed


async def test_rest_errors_and_slowness(http: Any) -> None:
    """Armed REST faults answer 503, 429 with Retry-After, and late; then normal answers."""
    async with LocalExchange() as ex:
        url = ex.rest_url + "/api/v3/ping"
        ex.faults.rest_error(503)
        ex.faults.rest_error(429, retry_after=7)
        ex.faults.rest_slow(0.2)
        async with http.get(url) as resp:
            assert resp.status == 503
        async with http.get(url) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "7"
        t0 = asyncio.get_running_loop().time()
        async with http.get(url) as resp:
            assert resp.status == 200 and await resp.json() == {}
        assert asyncio.get_running_loop().time() - t0 >= 0.2


async def test_server_shutdown_event(connect: Any) -> None:
    """serverShutdown arrives bare on /ws and wrapped as ``!serverShutdown`` on /stream."""
    async with LocalExchange() as ex:
        raw = await connect(ex.ws_url + "/ws")
        combined = await connect(ex.ws_url + "/stream")
        await ex.wait_subscribed(0)
        # Polling on purpose: bare connections subscribe nothing to wait for.
        while len(ex.connections) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        ex.faults.server_shutdown(close_after_s=0.05)
        bare = await raw.recv()
        wrapped = await combined.recv()
        assert bare["e"] == "serverShutdown" and isinstance(bare["E"], int)
        assert wrapped == {"stream": "!serverShutdown", "data": bare}
        assert (await raw.closed()).data == 1001
