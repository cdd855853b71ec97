"""Fixtures for the local exchange tests: an HTTP session and a WebSocket client factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.exchange.helpers import Client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def connect(http: aiohttp.ClientSession) -> Callable[..., Any]:
    async def _connect(url: str, **kwargs: Any) -> Client:
        ws = await http.ws_connect(url, **kwargs)
        return Client(ws)
    return _connect
