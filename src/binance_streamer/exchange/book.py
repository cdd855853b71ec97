"""An order book maintained from a snapshot and diff events (web-socket-streams.md section
"How to manage a local order book correctly"). Pure: no I/O, no clock.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

__all__ = ["OrderBook"]


class OrderBook:
    """Price levels per side, keyed by the price string as Binance sends it.

    ``last_update_id`` is Binance's ``lastUpdateId``: the ``u`` of the last applied diff.
    """

    def __init__(self, last_update_id: int = 0) -> None:
        self.last_update_id = last_update_id
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

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
                if Decimal(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_update_id = last_id
        return chained

    def top(self, limit: int) -> dict[str, Any]:
        """A snapshot body with the best ``limit`` levels per side."""
        bids = sorted(self.bids.items(), key=lambda kv: Decimal(kv[0]), reverse=True)[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: Decimal(kv[0]))[:limit]
        return {
            "lastUpdateId": self.last_update_id,
            "bids": [[p, q] for p, q in bids],
            "asks": [[p, q] for p, q in asks],
        }

    def best(self) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        """The best bid and best ask as ``(price, qty)``, or None for an empty side."""
        bid = max(self.bids.items(), key=lambda kv: Decimal(kv[0]), default=None)
        ask = min(self.asks.items(), key=lambda kv: Decimal(kv[0]), default=None)
        return bid, ask

    def __repr__(self) -> str:
        return f"<OrderBook id={self.last_update_id} bids={len(self.bids)} asks={len(self.asks)}>"
