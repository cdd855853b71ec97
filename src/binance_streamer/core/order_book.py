"""A local order book from a REST depth snapshot and ``@depth`` diff events. Pure: no I/O.

web-socket-streams.md, "How to manage a local order book correctly":

- a diff with ``u <= lastUpdateId`` of the snapshot is dropped (step 4): `Stale`;
- the first diff applied has ``U <= lastUpdateId + 1 <= u`` (step 5): `Bridged`;
- every later diff has ``U == previous u + 1`` (step 6, "the previous event's u"): `Applied`;
- anything else (a diff that starts past the next expected id) is a `Gap`: the book is no longer
  known until the next snapshot; a diff before any snapshot is `Unsynced`.

A quantity of zero removes the level (step 7); removing a level the book does not hold is
normal (step 7: "receiving an event that removes a price level that is not in your local order
book can happen and is normal").

Price levels are keyed by Binance's exact decimal strings; order comes from `decimal.Decimal`
values (computed once per price), so no float ever decides a level or its place. Applying a diff
touches dicts only; sorting happens on demand (`top`, `best_bid`, `best_ask`), over the levels
present, with ``heapq``: O(levels) per call.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from decimal import Decimal

import msgspec

__all__ = ["Applied", "BookOutcome", "Bridged", "Gap", "Level", "OrderBook", "Stale", "Unsynced"]

Level = tuple[str, str]  # (price, quantity) exactly as Binance sent them


class Stale(msgspec.Struct, frozen=True):
    """The diff ``first``..``final`` is already in the book (``u <= lastUpdateId``): dropped."""

    first: int
    final: int


class Bridged(msgspec.Struct, frozen=True):
    """The first diff after the snapshot at ``snapshot_id``: ``U <= snapshot_id + 1 <= u``."""

    snapshot_id: int
    first: int
    final: int


class Applied(msgspec.Struct, frozen=True):
    """The diff chains on the previous one (``U == previous u + 1``) and was applied."""

    first: int
    final: int


class Gap(msgspec.Struct, frozen=True):
    """The diff starts after ``expected`` (``U > expected``): updates ``expected..U-1`` are
    missing and the book is unknown until the next snapshot."""

    expected: int
    first: int
    final: int


class Unsynced(msgspec.Struct, frozen=True):
    """No snapshot yet (or none since the last `Gap`): the diff cannot be applied."""

    first: int
    final: int


BookOutcome = Stale | Bridged | Applied | Gap | Unsynced


def is_zero(quantity: str) -> bool:
    """Whether a Binance decimal string is zero (``"0"``, ``"0.00000000"``), without parsing."""
    return not quantity.strip("0.")


class _Side:
    """One side's levels: price string -> quantity string, ordered on demand.

    The best levels last asked for are cached (`best`) until a level is added ahead of the
    last of them or one of them is removed; quantity changes need no re-sort. ``bound`` is the
    worst price of a snapshot that was cut at its limit: levels beyond it are unknown until
    they change, so they are never reported (web-socket-streams.md, the note under "How to
    manage a local order book correctly").
    """

    __slots__ = ("_cache", "_cached", "_highest", "_keys", "_worst", "bound", "levels")

    def __init__(self, highest: bool) -> None:
        self._highest = highest
        self.levels: dict[str, str] = {}
        self._keys: dict[str, Decimal] = {}
        self.bound: Decimal | None = None
        self._forget()

    def _forget(self) -> None:
        self._cache: list[str] | None = None
        self._cached: set[str] = set()
        self._worst = Decimal(0)

    def load(self, levels: Iterable[Sequence[str]], cut: bool) -> None:
        """Replace the side by a snapshot's levels; ``cut``: the snapshot stopped at its limit."""
        self.levels = {price: qty for price, qty in levels if not is_zero(qty)}
        self._forget()
        keys = [self._key(p) for p in self.levels]
        self.bound = (min(keys) if self._highest else max(keys)) if cut and keys else None

    def update(self, levels: Iterable[Sequence[str]]) -> int:
        """Set or remove each ``[price, quantity]``; returns how many were given."""
        book = self.levels
        n = 0
        for price, qty in levels:
            n += 1
            if qty.strip("0."):
                if self._cache is not None and price not in book and self._ahead(price):
                    self._forget()
                book[price] = qty
            elif book.pop(price, None) is not None and price in self._cached:
                self._forget()
        return n

    def _ahead(self, price: str) -> bool:
        """Whether a new level at ``price`` belongs among the cached best levels."""
        key = self._key(price)
        return key > self._worst if self._highest else key < self._worst

    def _key(self, price: str) -> Decimal:
        key = self._keys.get(price)
        if key is None:
            if len(self._keys) > 4 * len(self.levels) + 1024:  # forget prices long gone
                self._keys = {p: k for p, k in self._keys.items() if p in self.levels}
            key = self._keys[price] = Decimal(price)
        return key

    def best(self, n: int) -> list[Level]:
        """The best ``n`` levels (fewer beyond the snapshot's bound), best first."""
        if self._cache is None or len(self._cache) < min(n, len(self.levels)):
            pick = heapq.nlargest if self._highest else heapq.nsmallest
            self._cache = pick(n, self.levels, key=self._key)
            self._cached = set(self._cache)
            if len(self._cache) < len(self.levels):
                self._worst = self._key(self._cache[-1])
            else:  # every level is cached: any new one belongs among them
                self._worst = Decimal("-Infinity") if self._highest else Decimal("Infinity")
        prices = self._cache[:n]
        if self.bound is not None:
            bound = self.bound
            prices = [p for p in prices if (self._key(p) >= bound if self._highest
                                            else self._key(p) <= bound)]
        return [(p, self.levels[p]) for p in prices]


class OrderBook:
    """One symbol's book, kept by `load_snapshot` and `apply`.

    ``last_update_id`` is the ``lastUpdateId`` of the snapshot or the ``u`` of the last diff
    applied; None while the book is unknown (no snapshot yet, or a `Gap` since).
    ``updates`` counts the price-level updates applied (for benchmarks and reports).
    """

    __slots__ = ("_asks", "_bids", "_bridged", "last_update_id", "updates")

    def __init__(self) -> None:
        self._bids = _Side(highest=True)
        self._asks = _Side(highest=False)
        self.last_update_id: int | None = None
        self._bridged = False
        self.updates = 0

    @property
    def synced(self) -> bool:
        """Whether the book is known (a snapshot and no gap since)."""
        return self.last_update_id is not None

    def load_snapshot(self, last_update_id: int, bids: Iterable[Sequence[str]],
                      asks: Iterable[Sequence[str]], cut: tuple[bool, bool] = (False, False)
                      ) -> None:
        """Replace the book by a REST ``/api/v3/depth`` snapshot (rest-api.md "Order book").

        ``cut`` says, per side, that the snapshot stopped at its ``limit``: the levels past its
        worst price are unknown and `top` never reports them.
        """
        self._bids.load(bids, cut[0])
        self._asks.load(asks, cut[1])
        self.last_update_id = last_update_id
        self._bridged = False

    def apply(self, first: int, final: int, bids: Iterable[Sequence[str]],
              asks: Iterable[Sequence[str]]) -> BookOutcome:
        """Apply the diff ``U``=first .. ``u``=final when the rules allow; say what happened."""
        last = self.last_update_id
        if last is None:
            return Unsynced(first, final)
        if final <= last:
            return Stale(first, final)
        if first > last + 1:
            self.last_update_id = None
            return Gap(last + 1, first, final)
        self.updates += self._bids.update(bids) + self._asks.update(asks)
        self.last_update_id = final
        if self._bridged:
            return Applied(first, final)
        self._bridged = True
        return Bridged(last, first, final)

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """The best ``depth`` bids (highest first) and asks (lowest first)."""
        return self._bids.best(depth), self._asks.best(depth)

    def best_bid(self) -> Level | None:
        """The highest bid, or None when the side is empty."""
        best = self._bids.best(1)
        return best[0] if best else None

    def best_ask(self) -> Level | None:
        """The lowest ask, or None when the side is empty."""
        best = self._asks.best(1)
        return best[0] if best else None

    @property
    def depth(self) -> tuple[int, int]:
        """How many bid and ask levels the book holds."""
        return len(self._bids.levels), len(self._asks.levels)

    def __repr__(self) -> str:
        bids, asks = self.depth
        state = self.last_update_id if self.synced else "unsynced"
        return f"<OrderBook lastUpdateId={state} bids={bids} asks={asks}>"
