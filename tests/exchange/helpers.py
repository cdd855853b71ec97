"""Helpers for the local exchange tests: one timeout constant, a small WS client, the bundled
captures and order books rebuilt from an exchange's published diffs."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
import pytest

from binance_streamer.core.order_book import Gap, Level, OrderBook
from binance_streamer.exchange import LocalExchange
from binance_streamer.exchange.book import OrderBook as ExchangeBook
from binance_streamer.samples import bundled_session

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


APRIL_4 = bundled_session("cf_2021-04-04")
APRIL_5 = bundled_session("cf_2021-04-05")


def book_body(ex: LocalExchange, symbol: str) -> dict[str, Any]:
    """The exchange's whole book of ``symbol`` now, as a REST depth body: the base its next
    published diffs continue (take it before the exchange starts)."""
    return ex.market.symbols[symbol].book_now().top(sys.maxsize)


def rebuilt_book(snapshot: dict[str, Any], diffs: Iterable[dict[str, Any]],
                 last_id: int | None = None) -> OrderBook:
    """A client's book: ``snapshot``, then the ``diffs`` with ``u <= last_id`` (all when None)
    bridged and applied (web-socket-streams.md "How to manage a local order book correctly");
    asserts that none leaves a gap."""
    book = OrderBook()
    book.load_snapshot(snapshot["lastUpdateId"], snapshot["bids"], snapshot["asks"])
    for diff in diffs:
        if last_id is not None and diff["u"] > last_id:
            break
        assert not isinstance(book.apply(diff["U"], diff["u"], diff["b"], diff["a"]), Gap), diff
    return book


Top = tuple[list[Level], list[Level]]


def served_snapshots(monkeypatch: pytest.MonkeyPatch, ex: LocalExchange,
                     symbol: str) -> list[dict[str, Any]]:
    """The REST depth snapshots of ``symbol`` that ``ex`` serves from now on, each whole: the
    exchange's book at its ``lastUpdateId`` (for a synthetic symbol exactly the changes with ids
    up to it, as Binance's; for a replayed one possibly one diff ahead, `OrderBook.ahead`)."""
    state = ex.market.symbols[symbol]
    current_book = state.current_book
    served: list[dict[str, Any]] = []

    def recording() -> ExchangeBook:
        book = current_book()
        served.append(book.top(sys.maxsize))
        return book
    monkeypatch.setattr(state, "current_book", recording)
    return served


def tops_at(snapshot: dict[str, Any], diffs: Iterable[dict[str, Any]], ids: Iterable[int],
            depth: int, served: Iterable[dict[str, Any]] = ()) -> dict[int, Top]:
    """The best ``depth`` levels per side of the book of ``snapshot`` and ``diffs`` at each
    update id of ``ids``, rebuilt in one pass; an id below the snapshot's or beyond the diffs is
    missing from the answer.

    An id strictly inside a diff's ``U..u`` is a REST snapshot's, which a client shows until a
    diff after it arrives (ccxt.pro does). The diffs alone do not say the book at such an id:
    the one in ``served`` (`served_snapshots`) with that ``lastUpdateId`` gives it, else it gets
    the book with that diff applied (a look-ahead snapshot's, `OrderBook.ahead`). Each of
    ``served`` is asserted consistent with the diffs (web-socket-streams.md "How to manage a
    local order book correctly"): at a diff's ``u`` (or the snapshot's id) it is that book; else
    the diff with ``U <= lastUpdateId + 1 <= u``, applied to it, gives the book at that ``u``.
    """
    bodies: dict[int, dict[str, Any]] = {}
    for body in served:
        assert bodies.setdefault(body["lastUpdateId"], body) == body, body["lastUpdateId"]
    start = snapshot["lastUpdateId"]
    inside = sorted(i for i in bodies if i >= start)  # served ids not yet reached
    wanted = sorted(i for i in set(ids) if i >= start)
    book = rebuilt_book(snapshot, [])
    whole = sys.maxsize
    tops: dict[int, Top] = {}
    for diff in [None, *diffs]:
        if diff is not None:
            assert not isinstance(book.apply(diff["U"], diff["u"], diff["b"], diff["a"]), Gap)
        last = book.last_update_id
        assert last is not None
        while inside and inside[0] <= last:
            served_id = inside.pop(0)
            bridged = rebuilt_book(bodies[served_id], [] if diff is None else [diff])
            assert bridged.top(whole) == book.top(whole), served_id
        while wanted and wanted[0] <= last:
            wanted_id = wanted.pop(0)
            inside_body = bodies.get(wanted_id) if wanted_id < last else None
            tops[wanted_id] = book.top(depth) if inside_body is None else rebuilt_book(
                inside_body, []).top(depth)
    return tops
