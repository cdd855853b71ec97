"""``book_snapshot_<N>`` rows: the top ``N`` levels of rebuilt books at a fixed interval.

One row per symbol and tick, as market-data vendors ship book snapshots: ``symbol``, ``time``
(the tick), ``last_update_id`` and ``updated_time`` of the book, then ``bid_price_0``,
``bid_quantity_0``, ``ask_price_0``, ``ask_quantity_0``, ... down to level ``N - 1`` (empty past
the book's depth). Books come from `binance_streamer.books.order_books` (never a wrong book:
unknown moments are skipped).
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from binance_streamer.books import Book, order_books
from binance_streamer.core.tables import TableSpec
from binance_streamer.errors import ConfigError

__all__ = ["book_source", "book_spec"]

_PAGE = 4096


def book_spec(depth: int) -> TableSpec:
    """The table shape of ``book_snapshot_<depth>`` rows."""
    levels = tuple((f"{side}_{what}_{i}", "TEXT") for i in range(depth)
                   for side in ("bid", "ask") for what in ("price", "quantity"))
    head = (("symbol", "TEXT"), ("time", "INTEGER"), ("last_update_id", "INTEGER"),
            ("updated_time", "INTEGER"))
    return TableSpec(f"book_snapshot_{depth}", head + levels, ("symbol", "time"))


def book_source(conn: Any, mark: str, database: str | Path, depth: int, symbols: list[str],
                since: int | None, until: int | None, every: str, per_ms: int = 1
                ) -> tuple[TableSpec, Generator[list[tuple[Any, ...]], None, None]]:
    """The shape and pages of book snapshot rows of ``symbols`` (every symbol with depth
    recorded when empty) from ``since`` to ``until`` (epoch ms; the recording's span when
    None; ``per_ms``: 1000 for microsecond exchange times)."""
    if not 1 <= depth <= 5000:
        raise ConfigError(f"book_snapshot_{depth}: the depth must be 1 to 5000")
    spans: dict[str, tuple[int, int]] = {}
    for symbol in symbols or _symbols(conn):
        first, last = _span(conn, mark, symbol, per_ms)
        if first is not None and last is not None:
            spans[symbol.upper()] = (first if since is None else since,
                                     last if until is None else until)
    return book_spec(depth), _pages(database, spans, depth, every)


def _pages(database: str | Path, spans: dict[str, tuple[int, int]], depth: int, every: str
           ) -> Generator[list[tuple[Any, ...]], None, None]:
    page: list[tuple[Any, ...]] = []
    for symbol, (since, until) in sorted(spans.items()):
        for book in order_books(database, symbol, since, until, depth, every):
            page.append(_row(book, depth))
            if len(page) >= _PAGE:
                yield page
                page = []
    if page:
        yield page


def _row(book: Book, depth: int) -> tuple[Any, ...]:
    levels: list[Any] = []
    for i in range(depth):
        bid = book.bids[i] if i < len(book.bids) else (None, None)
        ask = book.asks[i] if i < len(book.asks) else (None, None)
        levels += [bid[0], bid[1], ask[0], ask[1]]
    return (book.symbol, book.time_ms, book.last_update_id, book.updated_ms, *levels)


def _symbols(conn: Any) -> list[str]:
    rows = conn.execute("SELECT DISTINCT symbol FROM depth_update UNION "
                        "SELECT DISTINCT symbol FROM partial_depth ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def _span(conn: Any, mark: str, symbol: str, per_ms: int) -> tuple[int | None, int | None]:
    """The first and last times (ms) of ``symbol``'s depth rows: event times of diffs
    (``per_ms`` of them a ms), receive times of partial books."""
    lo, hi = None, None
    # The first and last rows by natural key (an index's two ends): depth_update has no time
    # index, and its event times follow final_update_id; partial_depth keeps one on its time.
    for table, col, key, scale in (("depth_update", "event_time", "final_update_id", per_ms),
                                   ("partial_depth", "received_ns", "received_ns", 1_000_000)):
        ends = (f"(SELECT {col} FROM {table} WHERE symbol = {mark} "  # noqa: S608
                f"ORDER BY {key} {{}} LIMIT 1)")
        a, b = conn.execute(f"SELECT {ends.format('ASC')}, {ends.format('DESC')}",
                            (symbol.upper(), symbol.upper())).fetchone()
        if a is not None:
            lo = a // scale if lo is None else min(lo, a // scale)
            hi = b // scale if hi is None else max(hi, b // scale)
    return lo, hi
