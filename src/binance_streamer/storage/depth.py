"""Reading stored depth for order-book rebuilds: snapshots, diffs in update-id order, partial
books. Works on any DB-API connection of `open_reader` (sqlite3 or psycopg).

Times come back in epoch ms whatever the database's unit: diffs by their event time ``E``
(µs in a database recorded with ``timeUnit=MICROSECOND``), snapshots and partial books by
their receive time (ns). Snapshots are placed on the exchange's timeline by their
``lastUpdateId`` (the diffs around it), never by their receive time: a replay's receive clock
is not the recording's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from binance_streamer.storage.bookkeeping import exchange_time_scale
from binance_streamer.storage.id_range import id_bounds
from binance_streamer.storage.open import Reader

__all__ = ["DepthReader", "StoredDiff", "StoredLevels"]

_NS_PER_MS = 1_000_000
_FETCH = 2000  # diff rows fetched per round trip


class StoredLevels(NamedTuple):
    """A stored snapshot or partial book: its update id, receive time (ms) and level JSON."""

    last_update_id: int
    time_ms: int
    bids: str
    asks: str


class StoredDiff(NamedTuple):
    """A stored ``depthUpdate``: ``U``, ``u``, event time (ms), level JSON, receive time (ns)."""

    first: int
    final: int
    time_ms: int
    bids: str
    asks: str
    received_ns: int


class DepthReader:
    """The depth rows of one recording; ``mark`` is the driver's parameter placeholder."""

    def __init__(self, conn: Any, mark: str) -> None:
        self.conn, self.mark = conn, mark
        self._per_ms = exchange_time_scale(conn, mark)

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return list(self.conn.execute(sql.replace("?", self.mark), params).fetchall())

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def has_diffs(self, symbol: str) -> bool:
        """Whether any ``depthUpdate`` of ``symbol`` is stored."""
        return self._one("SELECT 1 FROM depth_update WHERE symbol = ? LIMIT 1",
                         (symbol,)) is not None

    def latest_received_ns(self) -> int:
        """The receive time of the last stored diff of any symbol (the newest row)."""
        row = self._one("SELECT received_ns FROM depth_update ORDER BY id DESC LIMIT 1", ())
        return int(row[0]) if row and row[0] is not None else 0

    def snapshot_upto_id(self, symbol: str, max_id: int) -> StoredLevels | None:
        """The snapshot with the highest ``lastUpdateId <= max_id``."""
        row = self._one("SELECT last_update_id, received_ns, bids, asks FROM depth_snapshot WHERE "
                        "symbol = ? AND "
                        "last_update_id <= ? ORDER BY last_update_id DESC LIMIT 1",
                        (symbol, max_id))
        return None if row is None else _levels(row)

    def snapshot_from_id(self, symbol: str, min_id: int) -> StoredLevels | None:
        """The snapshot with the lowest ``lastUpdateId >= min_id``."""
        row = self._one("SELECT last_update_id, received_ns, bids, asks FROM depth_snapshot WHERE "
                        "symbol = ? AND "
                        "last_update_id >= ? ORDER BY last_update_id LIMIT 1", (symbol, min_id))
        return None if row is None else _levels(row)

    def last_diff_at(self, symbol: str, at_ms: int) -> StoredDiff | None:
        """The stored diff with the highest ``u`` among those with event time <= ``at_ms``.

        Event times grow with update ids, so this bisects the ``(symbol, final_update_id)``
        key with a few indexed probes (`id_bounds`) instead of scanning every later diff (no
        index on event time is needed); the caller checks the times of the diffs it applies.
        """
        after = (at_ms + 1) * self._per_ms  # the first event time after ``at_ms``
        bounds = id_bounds(Reader(self.conn, self.mark), "depth_update", symbol, None, after)
        if bounds is None:  # no diffs, or all after ``at_ms``
            return None
        return self._diff(self._one(
            "SELECT first_update_id, final_update_id, event_time, bids, asks, received_ns "
            "FROM depth_update WHERE symbol = ? AND final_update_id < ? "
            "ORDER BY final_update_id DESC LIMIT 1", (symbol, bounds[1])))

    def diffs_after(self, symbol: str, after_id: int) -> Iterator[StoredDiff]:
        """Stored diffs with ``u > after_id`` in update-id order, fetched lazily."""
        sql = ("SELECT first_update_id, final_update_id, event_time, bids, asks, received_ns "
               "FROM depth_update WHERE symbol = ? AND final_update_id > ? "
               "ORDER BY final_update_id LIMIT ?")
        size = 16  # most callers look at a few diffs; long walks grow the pages
        while True:
            rows = self._rows(sql, (symbol, after_id, size))
            for row in rows:
                yield self._diff(row)
            if len(rows) < size:
                return
            after_id = rows[-1][1]
            size = min(size * 4, _FETCH)

    def _diff(self, row: Any) -> StoredDiff:
        first, final, time, bids, asks, received = row
        return StoredDiff(first, final, time // self._per_ms, bids, asks, received)

    def partial_before(self, symbol: str, at_ms: int) -> StoredLevels | None:
        """The latest partial book (``@depth<N>``) received at or before ``at_ms``."""
        row = self._one("SELECT last_update_id, received_ns, bids, asks "
                        "FROM partial_depth WHERE symbol = ? AND received_ns <= ? "
                        "ORDER BY received_ns DESC LIMIT 1",
                        (symbol, (at_ms + 1) * _NS_PER_MS - 1))
        return None if row is None else _levels(row)

    def partial_after(self, symbol: str, at_ms: int) -> int | None:
        """The receive time (ms) of the first partial book after ``at_ms``."""
        row = self._one("SELECT MIN(received_ns) FROM partial_depth WHERE symbol = ? AND "
                        "received_ns > ?", (symbol, (at_ms + 1) * _NS_PER_MS - 1))
        return None if row is None or row[0] is None else row[0] // _NS_PER_MS


def _levels(row: Any) -> StoredLevels:
    """A snapshot or partial-book row: update id, receive time (ms), bids, asks."""
    last_update_id, received_ns, bids, asks = row
    return StoredLevels(last_update_id, received_ns // _NS_PER_MS, bids, asks)
