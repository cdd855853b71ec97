"""Reading recorded data back: the queries behind ``binance-streamer query`` and the library API.

Works on any DB-API connection (sqlite3 or psycopg); ``mark`` is the parameter placeholder.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binance_streamer.core.streams import InvalidStreamName, kind_names, parse_stream
from binance_streamer.core.tables import TABLE_FOR_KIND, TABLES
from binance_streamer.errors import InvalidDatabase
from binance_streamer.storage.open import open_reader
from binance_streamer.storage.schema import BOOKKEEPING, statements

__all__ = ["QueryResult", "query", "read_rows", "table_for"]

# The time column --since/--until filter on, per table (book tickers have only a receive time).
_TIME_COLUMN = {t.name: "event_time" for t in TABLES}
_TIME_COLUMN.update(kline="open_time", book_ticker="received_ns", partial_depth="received_ns",
                    depth_snapshot="received_ns", gaps="detected_ns", quarantine="received_ns",
                    raw_frame="received_ns")
# BOOLEAN columns per table: SQLite stores them as 0/1, PostgreSQL returns bools.
_BOOLEANS = {t.name: frozenset(c for c, kind in t.columns if kind == "BOOLEAN") for t in TABLES}


def table_for(kind: str) -> str:
    """The table holding a stream kind given as on the command line (``ticker``, ``kline_1m``,
    ``!miniTicker@arr``), or a table named directly (``agg_trade``, ``gaps``, ``quarantine``);
    `InvalidStreamName` listing the known kinds otherwise."""
    if kind in _TIME_COLUMN:
        return kind
    try:
        stream = parse_stream(kind if kind.startswith("!") else f"btcusdt@{kind}")
        return TABLE_FOR_KIND[stream.kind].name
    except (InvalidStreamName, KeyError) as exc:
        tables = ", ".join(b.name for b in BOOKKEEPING)
        raise InvalidStreamName(f"unknown stream type {kind!r}; known: {', '.join(kind_names())}"
                                f" (or a table: {tables})") from exc


@dataclass
class QueryResult:
    """Column names and rows."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def read_rows(
    conn: Any, table: str, symbol: str | None = None, since: int | None = None,
    until: int | None = None, limit: int | None = None, mark: str = "?",
) -> QueryResult:
    """Rows of ``table`` in time order, filtered by symbol and by time (``since``/``until`` in
    epoch ms, scaled to the table's time column: ns for receive times, µs for exchange times
    in a database recorded with ``timeUnit=MICROSECOND``). BOOLEAN columns come back as
    Python bools from either backend."""
    where: list[str] = []
    params: list[Any] = []
    time_col = _TIME_COLUMN[table]
    scale = 1_000_000 if time_col.endswith("_ns") else _exchange_time_scale(conn, mark)
    since = None if since is None else since * scale
    until = None if until is None else until * scale
    if symbol and table in ("gaps", "quarantine"):
        where.append(f"stream LIKE {mark}")
        params.append(f"{symbol.lower()}@%")
    elif symbol:
        where.append(f"symbol = {mark}")
        params.append(symbol.upper())
    if since is not None:
        where.append(f"{time_col} >= {mark}")
        params.append(since)
    if until is not None:
        where.append(f"{time_col} < {mark}")
        params.append(until)
    sql = f"SELECT * FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {time_col}, id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    cur = conn.execute(sql, params)
    columns = [d[0] for d in cur.description]
    rows = list(cur.fetchall())
    booleans = [i for i, c in enumerate(columns) if c in _BOOLEANS.get(table, ())]
    if booleans:
        rows = [_as_bools(r, booleans) for r in rows]
    return QueryResult(columns, rows)


def _as_bools(row: tuple[Any, ...], indexes: list[int]) -> tuple[Any, ...]:
    values = list(row)
    for i in indexes:
        if values[i] is not None:
            values[i] = bool(values[i])
    return tuple(values)


def _exchange_time_scale(conn: Any, mark: str) -> int:
    sql = statements("sqlite" if mark == "?" else "postgres").meta_select
    row = conn.execute(sql, ("time_unit",)).fetchone()
    return 1000 if row and row[0] == "microsecond" else 1


def query(
    database: str | Path, kind: str = "ticker", symbol: str | None = None,
    since: int | None = None, until: int | None = None, limit: int | None = None,
) -> QueryResult:
    """Recorded rows of one stream kind (or bookkeeping table) from a SQLite file or a
    ``postgresql://`` URL, oldest first; ``since``/``until`` in epoch ms.

    Raises `InvalidStreamName` for an unknown kind (listing the known ones), `InvalidDatabase`
    when ``database`` holds no recording to read (missing, empty, not SQLite, another program's
    file, unreadable), `MissingExtra` for a PostgreSQL URL without psycopg and `SchemaTooNew`.
    """
    table = table_for(kind)
    with open_reader(database) as reader:
        try:
            return read_rows(reader.conn, table, symbol, since, until, limit, mark=reader.mark)
        except sqlite3.Error as exc:
            raise InvalidDatabase(f"cannot read {database}: {exc}") from exc
