"""Reading recorded data back: the queries behind ``binance-streamer query`` and the library API.

Rows are read page by page in time order, so memory stays bounded however many rows match.
For one symbol each page is one indexed seek after the last row of the previous one, and no
read transaction stays open between pages to hold back a live recording's write-ahead log.
The tables of `id_range.KEY_ORDERED` (trade, agg_trade, depth_update, book_ticker) have no time
index: one symbol's rows come in natural-key order (the exchange's order, which is their time
order; ties in time by key), within the key range `id_bounds` bisects for the time range.
Without a symbol no index orders the whole table by time: it is sorted once and read through
one cursor, whose read transaction lasts until the last row is written (a slow reader of a
live SQLite recording lets its write-ahead log grow meanwhile; nothing is lost).
Works on any DB-API connection (sqlite3 or psycopg); ``mark`` is the parameter placeholder.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binance_streamer.core.streams import InvalidStreamName, StreamKind, kind_names, parse_stream
from binance_streamer.core.tables import TABLE_FOR_KIND, TABLES
from binance_streamer.errors import InvalidDatabase
from binance_streamer.storage.bookkeeping import exchange_time_scale
from binance_streamer.storage.id_range import KEY_ORDERED, id_bounds
from binance_streamer.storage.open import Reader, open_reader
from binance_streamer.storage.schema import BOOKKEEPING, TIME_COLUMN

__all__ = [
    "PAGE_SIZE",
    "QueryResult",
    "Rows",
    "Selection",
    "iter_pages",
    "iter_rows",
    "open_rows",
    "query",
    "read_rows",
    "select",
    "table_for",
]

PAGE_SIZE = 5_000
Row = tuple[Any, ...]

# BOOLEAN columns per table: SQLite stores them as 0/1, PostgreSQL returns bools.
_BOOLEANS = {t.name: frozenset(c for c, kind in t.columns if kind == "BOOLEAN") for t in TABLES}
# The column a stream kind's name fixes within its table (kline_5m, ticker_1h, depth5).
_KIND_COLUMN = {StreamKind.KLINE: "interval", StreamKind.WINDOW_TICKER: "window",
                StreamKind.ALL_WINDOW_TICKERS: "window", StreamKind.PARTIAL_DEPTH: "levels"}


@dataclass(frozen=True)
class Selection:
    """What a ``--stream`` value selects: a table, and the values the stream name fixes in it
    (``kline_5m`` is ``kline`` rows with ``interval = '5m'``)."""

    table: str
    match: tuple[tuple[str, str | int], ...] = ()


def select(kind: str) -> Selection:
    """The rows of a stream kind given as on the command line (``ticker``, ``kline_1m``,
    ``depth5``, ``!miniTicker@arr``), or of a table named directly (``agg_trade``, ``gaps``);
    `InvalidStreamName` listing the known kinds otherwise."""
    if kind in TIME_COLUMN:
        return Selection(kind)
    try:
        stream = parse_stream(kind if kind.startswith("!") else f"btcusdt@{kind}")
        table = TABLE_FOR_KIND[stream.kind].name
    except (InvalidStreamName, KeyError) as exc:
        tables = ", ".join(b.name for b in BOOKKEEPING)
        raise InvalidStreamName(f"unknown stream type {kind!r}; known: {', '.join(kind_names())}"
                                f" (or a table: {tables})") from exc
    column = _KIND_COLUMN.get(stream.kind)
    if column is None:
        return Selection(table)
    value: str | int = stream.levels if column == "levels" else stream.interval
    return Selection(table, ((column, value),))


def table_for(kind: str) -> str:
    """The table holding a stream kind (see `select`)."""
    return select(kind).table


@dataclass
class QueryResult:
    """Column names and rows."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def iter_pages(
    conn: Any, selection: Selection | str, symbol: str | None = None, since: int | None = None,
    until: int | None = None, limit: int | None = None, mark: str = "?",
    page_size: int = PAGE_SIZE,
) -> Generator[list[Row], None, None]:
    """Pages of at most ``page_size`` rows of a selection (or a table name), in time order
    (ties by ``id``; one symbol of a `KEY_ORDERED` table: in natural-key order, ties by key,
    and a book ticker's receive times may run backwards around a reconnect), filtered by
    symbol and by time (``since``/``until`` in epoch ms, scaled to the table's time column: ns
    for receive times, µs for exchange times in a database recorded with
    ``timeUnit=MICROSECOND``); at most ``limit`` rows in all. BOOLEAN columns come back as
    Python bools from either backend.

    With a symbol, each page is its own statement seeking an index after the previous page's
    last row (on a `KEY_ORDERED` table: the natural key, in key order, within the key range of
    the time range); without one (no index orders the whole table by time) one statement is
    sorted once and read a page at a time, through a server-side cursor on PostgreSQL.
    """
    sel = Selection(selection) if isinstance(selection, str) else selection
    time_col = TIME_COLUMN[sel.table]
    scale = 1_000_000 if time_col.endswith("_ns") else exchange_time_scale(conn, mark)
    where, params = _filters(sel, symbol, mark)
    if since is not None:
        where.append(f"{time_col} >= {mark}")
        params.append(since * scale)
    if until is not None:
        where.append(f"{time_col} < {mark}")
        params.append(until * scale)
    booleans = [i for i, c in enumerate(columns_of(conn, sel.table))
                if c in _BOOLEANS.get(sel.table, ())]
    seekable = symbol is not None and sel.table in _BOOLEANS  # a market table: (symbol, time)
    if symbol and seekable and sel.table in KEY_ORDERED:
        pages = _key_pages(conn, sel.table, symbol.upper(), where, params, limit, mark, page_size,
                           (None if since is None else since * scale,
                            None if until is None else until * scale))
    else:
        pages = (_keyset_pages if seekable else _cursor_pages)(
            conn, sel.table, where, params, limit, mark, page_size)
    for page in pages:
        yield [_as_bools(r, booleans) for r in page] if booleans else page


def _select(table: str, where: list[str], limit: int | None) -> str:
    sql = f"SELECT * FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {TIME_COLUMN[table]}, id"
    return sql if limit is None else sql + f" LIMIT {int(limit)}"


def _keyset_pages(conn: Any, table: str, where: list[str], params: list[Any],
                  limit: int | None, mark: str, page_size: int) -> Iterator[list[Row]]:
    """Pages read by one statement each, the next starting after the last (time, id) read."""
    time_col = TIME_COLUMN[table]
    after = f"{time_col} >= {mark} AND ({time_col} > {mark} OR id > {mark})"
    left = limit
    last: tuple[Any, Any] | None = None
    while left is None or left > 0:
        n = page_size if left is None else min(page_size, left)
        cur = conn.execute(_select(table, where + ([after] if last else []), n),
                           params + ([last[0], last[0], last[1]] if last else []))
        page = cur.fetchall()
        if page:
            time_index = [d[0] for d in cur.description].index(time_col)
            last = (page[-1][time_index], page[-1][0])
            yield page
        if len(page) < n:
            return
        left = None if left is None else left - n


def _key_pages(conn: Any, table: str, symbol: str, where: list[str], params: list[Any],
               limit: int | None, mark: str, page_size: int, span: tuple[int | None, int | None]
               ) -> Iterator[list[Row]]:
    """Pages of one symbol of a `KEY_ORDERED` table in key order, each starting after the last
    key read, within the key range of the time range ``span`` (the time filter stays in
    ``where``: the range may be wider)."""
    key = KEY_ORDERED[table].key
    if span != (None, None):
        bounds = id_bounds(Reader(conn, mark), table, symbol, *span)
        if bounds is None:
            return
        where = [*where, f'"{key}" >= {mark}', f'"{key}" < {mark}']
        params = [*params, *bounds]
    sql = f"SELECT * FROM {table} WHERE " + " AND ".join(where)
    after = f' AND "{key}" > {mark}'
    left = limit
    last: Any = None
    while left is None or left > 0:
        n = page_size if left is None else min(page_size, left)
        cur = conn.execute(sql + (after if last is not None else "")
                           + f' ORDER BY "{key}" LIMIT {int(n)}',
                           params + ([last] if last is not None else []))
        page = cur.fetchall()
        if page:
            last = page[-1][[d[0] for d in cur.description].index(key)]
            yield page
        if len(page) < n:
            return
        left = None if left is None else left - n


def _cursor_pages(conn: Any, table: str, where: list[str], params: list[Any],
                  limit: int | None, mark: str, page_size: int) -> Iterator[list[Row]]:
    """Pages fetched from one statement: on PostgreSQL a named (server-side) cursor, which
    keeps the rows on the server until fetched."""
    named = mark != "?"
    cur = conn.cursor(name="binance_streamer_rows") if named else conn.cursor()
    try:
        cur.execute(_select(table, where, limit), params)
        while page := cur.fetchmany(page_size):
            yield page
    finally:
        cur.close()


def _filters(sel: Selection, symbol: str | None, mark: str) -> tuple[list[str], list[Any]]:
    where: list[str] = [f'"{column}" = {mark}' for column, _ in sel.match]
    params: list[Any] = [value for _, value in sel.match]
    if symbol and sel.table in ("gaps", "quarantine"):
        where.append(f"stream LIKE {mark}")
        params.append(f"{symbol.lower()}@%")
    elif symbol and sel.table != "raw_frame":
        where.append(f"symbol = {mark}")
        params.append(symbol.upper())
    return where, params


def columns_of(conn: Any, table: str) -> list[str]:
    """The column names of ``table``, in stored order."""
    cur = conn.execute(f"SELECT * FROM {table} WHERE 1 = 0")
    columns = [d[0] for d in cur.description]
    cur.fetchall()
    return columns


def read_rows(
    conn: Any, table: Selection | str, symbol: str | None = None, since: int | None = None,
    until: int | None = None, limit: int | None = None, mark: str = "?",
) -> QueryResult:
    """Every row `iter_pages` gives, as one `QueryResult`."""
    sel = Selection(table) if isinstance(table, str) else table
    rows = [r for page in iter_pages(conn, sel, symbol, since, until, limit, mark) for r in page]
    return QueryResult(columns_of(conn, sel.table), rows)


def _as_bools(row: tuple[Any, ...], indexes: list[int]) -> tuple[Any, ...]:
    values = list(row)
    for i in indexes:
        if values[i] is not None:
            values[i] = bool(values[i])
    return tuple(values)


@dataclass
class Rows:
    """Rows being read: the column names, the unit of exchange times (``ms`` or ``us``; receive
    times are always ns) and the rows themselves, read page by page as they are iterated."""

    columns: list[str]
    exchange_time_unit: str
    pages: Iterator[list[Row]]

    def __iter__(self) -> Iterator[Row]:
        for page in self.pages:
            yield from page


@contextlib.contextmanager
def open_rows(
    database: str | Path, kind: str = "ticker", symbol: str | None = None,
    since: int | None = None, until: int | None = None, limit: int | None = None,
    page_size: int = PAGE_SIZE,
) -> Iterator[Rows]:
    """The rows `query` returns, read page by page while the database stays open (same errors)."""
    sel = select(kind)
    with open_reader(database) as reader:
        try:
            unit = "us" if exchange_time_scale(reader.conn, reader.mark) == 1000 else "ms"
            pages = iter_pages(reader.conn, sel, symbol, since, until, limit, reader.mark,
                               page_size)
            try:
                # Errors while the caller iterates come back here, at the yield.
                yield Rows(columns_of(reader.conn, sel.table), unit, pages)
            finally:
                pages.close()  # its cursor, before the connection
        except sqlite3.Error as exc:
            raise InvalidDatabase(f"cannot read {database}: {exc}") from exc


def iter_rows(
    database: str | Path, kind: str = "ticker", symbol: str | None = None,
    since: int | None = None, until: int | None = None, limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The rows `query` returns, one dict per row, read page by page (constant memory)."""
    with open_rows(database, kind, symbol, since, until, limit) as rows:
        for row in rows:
            yield dict(zip(rows.columns, row, strict=True))


def query(
    database: str | Path, kind: str = "ticker", symbol: str | None = None,
    since: int | None = None, until: int | None = None, limit: int | None = None,
) -> QueryResult:
    """Recorded rows of one stream kind (or bookkeeping table) from a SQLite file or a
    ``postgresql://`` URL, oldest first; ``since``/``until`` in epoch ms. A kind naming an
    interval, window or depth (``kline_5m``, ``ticker_1h``, ``depth5``) gives only those rows.

    Raises `InvalidStreamName` for an unknown kind (listing the known ones), `InvalidDatabase`
    when ``database`` holds no recording to read (missing, empty, not SQLite, another program's
    file, unreadable), `MissingExtra` for a PostgreSQL URL without psycopg and `SchemaTooNew`.
    """
    with open_rows(database, kind, symbol, since, until, limit) as rows:
        return QueryResult(rows.columns, list(rows))
