"""Diff depth at a slower speed, and REST depth snapshots one recorded diff ahead. Pure: no
I/O, no clock (times are passed in).

`DepthMerge` turns ``<symbol>@depth@100ms`` diffs into the ``<symbol>@depth`` (1000 ms) stream
(web-socket-streams.md "Diff. Depth Stream"): a diff carries the absolute quantity of each
changed level, so one event with ``U`` of the first diff, ``u`` of the last and the latest
quantity per price changes a book exactly as the diffs one by one do.

`DepthLookahead` lets a REST snapshot fall strictly inside the next diff's ``U..u``, as Binance's
do (the engine moves on between two pushes of the diff stream): the snapshot is the book with the
next recorded diff applied, labelled with an id inside that diff's range, which is exactly the
book a client bridging from it reconstructs (web-socket-streams.md "How to manage a local order
book correctly").
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from binance_streamer.exchange.book import OrderBook

__all__ = ["DepthLookahead", "DepthMerge", "sorted_levels"]

TICK_MS = 100  # the push interval of ``@depth@100ms``


def sorted_levels(levels: dict[str, str], *, descending: bool) -> list[list[str]]:
    """``[[price, qty], ...]`` ordered as Binance orders a side: bids descending, asks
    ascending by price."""
    ordered = sorted(levels.items(), key=lambda kv: Decimal(kv[0]), reverse=descending)
    return [[price, qty] for price, qty in ordered]


class DepthMerge:
    """The diffs added since the last `take`, merged into one ``depthUpdate``.

    Diffs with ``u`` at or below the last one added are stale and ignored (so the merged event,
    published on the same timeline, is never merged into itself). A diff that does not chain
    (``U`` above the last ``u`` + 1) restarts the merge from itself, so the gap shows between
    two merged events as it would on Binance.
    """

    def __init__(self) -> None:
        self.first_id = 0  # U of the first diff since the last take; 0 when there is none
        self.last_id = 0  # u of the last diff added
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def add(self, diff: dict[str, Any]) -> None:
        """Merge one ``depthUpdate`` payload: its levels replace the same prices' quantities."""
        if diff["u"] <= self.last_id:
            return
        if self.first_id and diff["U"] > self.last_id + 1:  # a gap: what came before is lost
            self.first_id = 0
            self.bids, self.asks = {}, {}
        if not self.first_id:
            self.first_id = diff["U"]
        self.last_id = diff["u"]
        self.bids.update(diff["b"])
        self.asks.update(diff["a"])

    def take(self, symbol: str, time_ms: int) -> dict[str, Any] | None:
        """The merged event at ``time_ms`` (zero quantities kept: they remove a level), or None
        when no diff came since the last one; starts the next merge."""
        if not self.first_id:
            return None
        event = {"e": "depthUpdate", "E": time_ms, "s": symbol, "U": self.first_id,
                 "u": self.last_id, "b": sorted_levels(self.bids, descending=True),
                 "a": sorted_levels(self.asks, descending=False)}
        self.first_id = 0
        self.bids, self.asks = {}, {}
        return event

    def __repr__(self) -> str:
        return (f"<DepthMerge U={self.first_id} u={self.last_id} bids={len(self.bids)} "
                f"asks={len(self.asks)}>")


class DepthLookahead:
    """One symbol's recorded ``@depth@100ms`` diffs, to show a REST snapshot one diff ahead.

    Diffs whose ``u`` does not increase are left out (the index is searched by ``u``).
    ``id_step``: what each pass of a looping replay adds to the update ids (0: one pass); a book
    of pass ``k`` is looked up ``k * id_step`` lower, ``k`` counted from the first diff's ``U``
    (so no id a pass publishes may lie below it: leave out the diffs a pass skips).
    """

    def __init__(self, diffs: Iterable[dict[str, Any]], id_step: int = 0) -> None:
        self._diffs: list[dict[str, Any]] = []
        for diff in diffs:
            if not self._diffs or diff["u"] > self._diffs[-1]["u"]:
                self._diffs.append(diff)
        self._ids = [diff["u"] for diff in self._diffs]
        self._origin = self._diffs[0]["U"] - 1 if self._diffs else 0
        self.id_step = id_step

    def snapshot(self, book: OrderBook) -> OrderBook:
        """``book`` with the next recorded diff applied and labelled inside its ``U..u``.

        Only when ``book`` is exactly at a recorded diff's ``u``, the next diff chains onto it
        (``U == u + 1``), holds more than one update id, and follows within one push interval (no
        quiet tick between: the engine was busy, so an id strictly inside is what a request at a
        random moment sees). Otherwise ``book`` itself.
        """
        shift = 0
        if self.id_step > 0:
            shift = max(0, (book.last_update_id - self._origin) // self.id_step) * self.id_step
        last_id = book.last_update_id - shift
        i = bisect_right(self._ids, last_id)
        if i == 0 or i == len(self._diffs):
            return book
        prev, nxt = self._diffs[i - 1], self._diffs[i]
        if (prev["u"] != last_id or nxt["U"] != prev["u"] + 1
                or nxt["u"] == nxt["U"] or nxt["E"] - prev["E"] >= 2 * TICK_MS):
            return book
        return book.ahead(nxt["U"] + shift, nxt["u"] + shift, nxt["b"], nxt["a"])

    def __repr__(self) -> str:
        span = f" u={self._ids[0]}..{self._ids[-1]}" if self._ids else ""
        return f"<DepthLookahead diffs={len(self._ids)}{span}>"
