"""One symbol's rows over a time range, found by bisecting the natural key instead of a time index.

Schema version 4 has no ``(symbol, time)`` read index on the high-volume tables whose natural
key grows with their time column per symbol (`KEY_ORDERED`): Binance assigns trade ids,
aggregate trade ids and diff-depth final update ids in time order, and book tickers arrive in
update-id order. A reader of one symbol over ``[since, until)`` asks `id_bounds` for the key
range ``[lo, hi)`` holding it (about log2 of the symbol's key span indexed probes, each one seek
of the UNIQUE ``(symbol, key)`` index), then scans only that range with the exact time
predicate kept in its SQL.

Exactness: a row is returned iff its time is in range as long as no row's time exceeds that of
a row later in key order by more than the table's ``margin``. Trade, aggregate trade and diff
ids never invert (margin 0; equal times are fine). A book ticker's receive time can run
backwards around a reconnect (the new connection's first rows overlap the old one's last, a
few ms to seconds): its bounds are sought ``margin`` (60 s) wider on each side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from binance_streamer.storage.open import Reader

__all__ = ["KEY_ORDERED", "KeyOrder", "id_bounds", "key_range_sql", "symbol_ranges"]

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class KeyOrder:
    """A table whose natural-key column ``key`` orders its ``time`` column per symbol, up to
    inversions of at most ``margin`` (in the time column's unit)."""

    key: str
    time: str
    margin: int = 0


KEY_ORDERED: dict[str, KeyOrder] = {
    "trade": KeyOrder("trade_id", "trade_time"),
    "agg_trade": KeyOrder("agg_id", "trade_time"),
    "depth_update": KeyOrder("final_update_id", "event_time"),
    "book_ticker": KeyOrder("update_id", "received_ns", 60 * _NS_PER_S),
}


class _Probe:
    """Indexed lookups on one symbol's ``(symbol, key)`` index."""

    def __init__(self, reader: Reader, table: str, order: KeyOrder, symbol: str) -> None:
        m, k = reader.mark, order.key
        self.conn, self.symbol = reader.conn, symbol
        self.first_sql = (f'SELECT "{k}", "{order.time}" FROM {table} WHERE symbol = {m} '  # noqa: S608
                          f'AND "{k}" >= {m} AND "{k}" < {m} ORDER BY "{k}" LIMIT 1')
        # Two subqueries: SQLite answers a lone MIN or MAX from the index's ends, both at once
        # by scanning it.
        self.ends_sql = (f'SELECT (SELECT MIN("{k}") FROM {table} WHERE symbol = {m}), '  # noqa: S608
                         f'(SELECT MAX("{k}") FROM {table} WHERE symbol = {m})')

    def ends(self) -> tuple[int, int] | None:
        row = self.conn.execute(self.ends_sql, (self.symbol, self.symbol)).fetchone()
        return None if row is None or row[0] is None else (int(row[0]), int(row[1]))

    def first(self, lo: int, hi: int) -> tuple[int, int] | None:
        """The (key, time) of the first row with ``lo <= key < hi``."""
        row = self.conn.execute(self.first_sql, (self.symbol, lo, hi)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))


def _first_at_or_after(probe: _Probe, start: tuple[int, int], end: int, target: int
                       ) -> int | None:
    """The first key from row ``start`` (key, time) on, below ``end``, whose time is at least
    ``target`` (for times non-decreasing in key order); None when there is none."""
    below, below_time = start
    if below_time >= target:
        return below
    found, hi = None, end
    # Invariant: the row at ``below`` is before the target, nothing in [hi, found) exists, and
    # (below, hi) is unexplored; each probe halves (below, hi).
    while hi - below > 1:
        mid = (below + hi) // 2
        row = probe.first(mid, hi)
        if row is None:
            hi = mid
        elif row[1] >= target:
            found, hi = row[0], mid
        else:
            below = row[0]
    return found


def id_bounds(reader: Reader, table: str, symbol: str, since: int | None, until: int | None
              ) -> tuple[int, int] | None:
    """The natural-key range ``[lo, hi)`` of ``symbol``'s rows in `KEY_ORDERED` ``table`` that
    can have their time in ``[since, until)`` (in the time column's stored unit; None: open),
    or None when none can. The caller keeps the exact time predicate: the range may hold rows
    out of the time range (up to the table's margin on each side), never misses one in it."""
    order = KEY_ORDERED[table]
    probe = _Probe(reader, table, order, symbol)
    ends = probe.ends()
    if ends is None:
        return None
    first, last = ends
    start = probe.first(first, first + 1)
    if start is None:  # the symbol's rows were deleted between the two statements
        return None
    lo: int | None = first
    if since is not None:
        lo = _first_at_or_after(probe, start, last + 1, since - order.margin)
    hi: int | None = last + 1
    if until is not None:
        hi = _first_at_or_after(probe, start, last + 1, until + order.margin)
    if lo is None:
        return None
    hi = last + 1 if hi is None else hi
    return (lo, hi) if lo < hi else None


def symbol_ranges(reader: Reader, table: str, symbols: Iterable[str], since: int | None,
                  until: int | None) -> dict[str, tuple[int, int]]:
    """`id_bounds` of each of ``symbols`` (upper case as stored), those that can hold a row."""
    ranges = {}
    for symbol in symbols:
        bounds = id_bounds(reader, table, symbol, since, until)
        if bounds is not None:
            ranges[symbol] = bounds
    return ranges


def key_range_sql(table: str, ranges: dict[str, tuple[int, int]], mark: str
                  ) -> tuple[str, list[Any]]:
    """A condition selecting ``ranges`` (symbol -> key range, from `symbol_ranges`): one
    ``(symbol = ? AND key >= ? AND key < ?)`` term per symbol, OR-ed (each an index range on
    both SQLite and PostgreSQL); ``1 = 0`` when empty."""
    if not ranges:
        return "1 = 0", []
    key = KEY_ORDERED[table].key
    term = f'(symbol = {mark} AND "{key}" >= {mark} AND "{key}" < {mark})'
    params: list[Any] = []
    for symbol, (lo, hi) in ranges.items():
        params += [symbol, lo, hi]
    return "(" + " OR ".join(term for _ in ranges) + ")", params
