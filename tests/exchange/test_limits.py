"""Binance's connection limits, shrunk through `Limits` so they can be observed quickly."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from binance_streamer.exchange import Limits, LocalExchange
from tests.exchange.helpers import TIMEOUT


async def test_more_than_five_messages_per_second_closes_with_1008(connect: Any) -> None:
    """The sixth control message within one second closes the connection with 1008."""
    async with LocalExchange() as ex:
        client = await connect(ex.ws_url + "/ws")
        for i in range(5):
            await client.send({"method": "LIST_SUBSCRIPTIONS", "id": i})
            assert (await client.reply(i))["result"] == []
        await client.send({"method": "LIST_SUBSCRIPTIONS", "id": 5})
        msg = await client.closed()
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert (msg.data, msg.extra) == (1008, "Too many requests")


async def test_pings_count_towards_the_message_rate(connect: Any) -> None:
    """Client pings are answered with pongs and count like any other message."""
    async with LocalExchange(limits=Limits(max_incoming_per_s=2)) as ex:
        client = await connect(ex.ws_url + "/ws", autoping=False)
        await client.ws.ping(b"a")
        pong = await client.ws.receive(timeout=TIMEOUT)
        assert (pong.type, pong.data) == (aiohttp.WSMsgType.PONG, b"a")
        await client.ws.ping(b"b")
        await client.ws.ping(b"c")
        msg = await client.closed()
        assert msg.data == 1008


async def test_server_pings_and_a_pong_keeps_the_connection(connect: Any) -> None:
    """The server pings every interval; a pong copying the payload keeps the connection open."""
    limits = Limits(ping_interval_s=0.1, pong_timeout_s=0.35)
    async with LocalExchange(limits=limits) as ex:
        client = await connect(ex.ws_url + "/ws", autoping=False)
        for _ in range(5):
            ping = await client.ws.receive(timeout=TIMEOUT)
            assert ping.type is aiohttp.WSMsgType.PING and ping.data
            await client.ws.pong(ping.data)
        assert len(ex.connections) == 1


async def test_no_pong_disconnects(connect: Any) -> None:
    """Without a pong the server closes after the pong timeout; unsolicited pongs do not help."""
    limits = Limits(ping_interval_s=0.05, pong_timeout_s=0.3)
    async with LocalExchange(limits=limits) as ex:
        client = await connect(ex.ws_url + "/ws", autoping=False)
        await client.ws.pong(b"")
        msg = await client.closed()
        assert (msg.data, msg.extra) == (1008, "Pong timeout")


async def test_connection_lifetime(connect: Any) -> None:
    """A connection is closed when its lifetime ends."""
    async with LocalExchange(limits=Limits(lifetime_s=0.2)) as ex:
        client = await connect(ex.ws_url + "/ws")
        msg = await client.closed()
        assert msg.data == 1001


async def test_connection_attempts_per_window(connect: Any, http: Any) -> None:
    """Connection attempts past the per-IP budget are refused with 429."""
    async with LocalExchange(limits=Limits(connect_attempts=2)) as ex:
        kept = [await connect(ex.ws_url + "/ws"), await connect(ex.ws_url + "/ws")]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect(ex.ws_url + "/ws")
        assert refused.value.status == 429
        assert len(kept) == len(ex.connections) == 2


async def test_too_many_streams(connect: Any, http: Any) -> None:
    """A URL or SUBSCRIBE past the stream cap is refused with code 4."""
    async with LocalExchange(limits=Limits(max_streams_per_connection=2)) as ex:
        url = ex.rest_url + "/stream?streams=a@trade/b@trade/c@trade"
        async with http.get(url) as resp:
            assert await resp.json() == {"code": 4, "msg": "Too many subscriptions"}
        client = await connect(ex.ws_url + "/stream?streams=a@trade/b@trade")
        await client.send({"method": "SUBSCRIBE", "params": ["c@trade"], "id": 1})
        assert (await client.reply(1))["error"]["code"] == 4


async def test_wait_subscribed_counts_streams_over_connections(connect: Any) -> None:
    """wait_subscribed returns once the streams of all connections add up."""
    async with LocalExchange() as ex:
        waiter = asyncio.ensure_future(ex.wait_subscribed(3))
        first = await connect(ex.ws_url + "/ws/a@trade/b@trade")
        assert not waiter.done()
        second = await connect(ex.ws_url + "/stream?streams=c@trade")
        async with asyncio.timeout(TIMEOUT):
            await waiter
        assert "streams=2" in repr(ex.connections[0])
        assert not first.ws.closed and not second.ws.closed
