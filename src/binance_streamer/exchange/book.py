"""An order book maintained from a snapshot and diff events (web-socket-streams.md section
"How to manage a local order book correctly"). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from binance_streamer.core.order_book import is_zero

__all__ = ["OrderBook"]


class OrderBook:
    """Price levels per side, keyed by the price string as Binance sends it.

    ``last_update_id`` is Binance's ``lastUpdateId``: the ``u`` of the last applied diff.
    Prices are ordered by their `Decimal` values, parsed once per price and cached.
    """

    def __init__(self, last_update_id: int = 0) -> None:
        self.last_update_id = last_update_id
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self._keys: dict[str, Decimal] = {}  # price -> its value

    @classmethod
    def from_snapshot(cls, body: dict[str, Any]) -> OrderBook:
        """A book equal to a REST ``/api/v3/depth`` body."""
        book = cls(int(body["lastUpdateId"]))
        book.bids = {p: q for p, q in body["bids"]}
        book.asks = {p: q for p, q in body["asks"]}
        return book

    def apply(self, first_id: int, last_id: int, bids: Any, asks: Any) -> bool:
        """Apply one diff (``U``=first_id, ``u``=last_id); stale diffs are ignored.

        Returns False when the diff does not chain (``U > lastUpdateId + 1``); the book then
        restarts from this diff, as a book whose unknown levels fill in as they change.
        """
        if last_id <= self.last_update_id:
            return True
        chained = self.last_update_id == 0 or first_id <= self.last_update_id + 1
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if is_zero(qty):
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_update_id = last_id
        return chained

    def copy(self) -> OrderBook:
        """A copy that later diffs to either book do not change (the price cache is shared)."""
        book = OrderBook(self.last_update_id)
        book.bids, book.asks, book._keys = dict(self.bids), dict(self.asks), self._keys
        return book

    def ahead(self, first_id: int, last_id: int, bids: Any, asks: Any) -> OrderBook:
        """A copy with the next diff (``U``=first_id, ``u``=last_id, with ``U < u``) applied and
        labelled ``U + (u - U) // 2``: an id strictly inside the diff, as a snapshot taken while
        the exchange is between two pushes of the diff stream. A client bridging from it applies
        that diff again (its quantities are absolute), which changes nothing."""
        book = self.copy()
        book.apply(first_id, last_id, bids, asks)
        book.last_update_id = first_id + (last_id - first_id) // 2
        return book

    def top(self, limit: int) -> dict[str, Any]:
        """A snapshot body with the best ``limit`` levels per side."""
        key = self._keyed()  # bench/exchange_book_top.py
        bids = sorted(self.bids, key=key, reverse=True)[:limit]
        asks = sorted(self.asks, key=key)[:limit]
        return {
            "lastUpdateId": self.last_update_id,
            "bids": [[p, self.bids[p]] for p in bids],
            "asks": [[p, self.asks[p]] for p in asks],
        }

    def best(self) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        """The best bid and best ask as ``(price, qty)``, or None for an empty side."""
        key = self._keyed()
        bid = max(self.bids, key=key, default=None)
        ask = min(self.asks, key=key, default=None)
        return (None if bid is None else (bid, self.bids[bid]),
                None if ask is None else (ask, self.asks[ask]))

    def _keyed(self) -> Callable[[str], Decimal]:
        """The value of each price in the book (parsing only prices new to the cache)."""
        keys = self._keys
        if len(keys) > 4 * (len(self.bids) + len(self.asks)) + 1024:  # forget prices long gone
            keys = self._keys = {p: k for p, k in keys.items() if p in self.bids or p in self.asks}
        for side in (self.bids, self.asks):
            for price in side.keys() - keys.keys():
                keys[price] = Decimal(price)
        return keys.__getitem__

    def __repr__(self) -> str:
        return f"<OrderBook id={self.last_update_id} bids={len(self.bids)} asks={len(self.asks)}>"
