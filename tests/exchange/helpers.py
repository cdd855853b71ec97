"""Helpers for the local exchange tests: one timeout constant and a small WS client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

TIMEOUT = 10.0  # seconds; every wait in these tests is bounded by (a multiple of) this


class Client:
    """A WebSocket test client that decodes text frames as JSON."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, obj: Any) -> None:
        await self.ws.send_str(obj if isinstance(obj, str) else json.dumps(obj))

    async def recv(self, timeout: float = TIMEOUT) -> Any:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"expected a text frame, got {msg.type!r} {msg.data!r}")
        return json.loads(msg.data)

    async def reply(self, req_id: Any) -> Any:
        """The next control reply with ``id == req_id`` (data frames before it are skipped)."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                msg = await self.recv()
                is_reply = isinstance(msg, dict) and ("result" in msg or "error" in msg)
                if is_reply and msg.get("id") == req_id:
                    return msg

    async def until(self, pred: Callable[[Any], bool]) -> Any:
        """The first message satisfying ``pred``."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                msg = await self.recv()
                if pred(msg):
                    return msg

    async def closed(self) -> aiohttp.WSMessage:
        """Wait for the server to close; returns the close message."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSING):
                    return msg
