"""Subscriptions across all connections and fan-out of published events.

One `Event` is framed at most once per output format and the same bytes are queued on every
subscribed connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from binance_streamer.exchange.frames import Event

if TYPE_CHECKING:
    from binance_streamer.exchange.connection import Connection

__all__ = ["Hub"]


class Hub:
    """Stream name -> subscribed connections (only streams somebody is subscribed to).

    ``version`` changes whenever the subscriptions do (the market recomputes what to derive);
    ``on_subscribe``, when set, sees every connection that subscribes and what it added.
    """

    def __init__(self) -> None:
        self.subs: dict[str, dict[Connection, None]] = {}
        self.connections: dict[Connection, None] = {}
        self.total = 0
        self.version = 0
        self.first_subscribe = asyncio.Event()
        self.on_subscribe: Callable[[Connection, list[str]], None] | None = None
        self._changed = asyncio.Event()

    def add(self, conn: Connection) -> None:
        """Register an open connection."""
        self.connections[conn] = None

    def remove(self, conn: Connection) -> None:
        """Forget a closed connection and all its subscriptions."""
        self.connections.pop(conn, None)
        self.unsubscribe(conn, list(conn.state.subscriptions))

    def subscribe(self, conn: Connection, names: Iterable[str]) -> None:
        """Deliver ``names`` to ``conn`` from now on."""
        added = list(names)
        for name in added:
            subs = self.subs.setdefault(name, {})
            if conn not in subs:
                subs[conn] = None
                self.total += 1
        self._notify()
        if self.total:
            self.first_subscribe.set()
        if added and self.on_subscribe is not None:
            self.on_subscribe(conn, added)

    def unsubscribe(self, conn: Connection, names: Iterable[str]) -> None:
        """Stop delivering ``names`` to ``conn``."""
        for name in names:
            subs = self.subs.get(name)
            if subs is not None and subs.pop(conn, 0) is None:
                self.total -= 1
                if not subs:
                    del self.subs[name]
        self._notify()

    def _notify(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_subscribed(self, n: int) -> None:
        """Return once at least ``n`` (connection, stream) subscriptions exist."""
        while self.total < n:
            await self._changed.wait()

    def publish(self, event: Event) -> None:
        """Queue ``event`` on every connection subscribed to its stream."""
        conns = self.subs.get(event.stream)
        if conns:
            for conn in conns:
                conn.deliver(event)

    def broadcast(self, event: Event) -> None:
        """Queue ``event`` on every open connection (``serverShutdown``)."""
        for conn in list(self.connections):
            conn.deliver(event)

    async def drained(self, limit: int = 4 * 1024 * 1024) -> None:
        """Return once no live, unstalled connection has more than ``limit`` bytes queued."""
        for conn in list(self.connections):
            await conn.wait_below(limit)

    def __repr__(self) -> str:
        return (f"<Hub connections={len(self.connections)} streams={len(self.subs)} "
                f"subscriptions={self.total}>")
