"""Reading recorded data back: the queries behind ``binance-streamer query`` and the library API.

Works on any DB-API connection (sqlite3 or psycopg); ``mark`` is the parameter placeholder.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binance_streamer.core.streams import StreamKind, parse_stream
from binance_streamer.core.tables import TABLE_FOR_KIND, TABLES

__all__ = [
    "LAST_ID_SQL",
    "UNFILLED_GAPS_SQL",
    "QueryResult",
    "last_id_params",
    "query",
    "read_rows",
    "table_for",
]

# ``{mark}`` is the driver's placeholder. A kline resumes from its last *closed* candle, so one
# stored mid-candle (at a crash or disconnect) is fetched again, complete.
LAST_ID_SQL = {
    StreamKind.AGG_TRADE: "SELECT MAX(agg_id) FROM agg_trade WHERE symbol = {mark}",
    StreamKind.TRADE: "SELECT MAX(trade_id) FROM trade WHERE symbol = {mark}",
    StreamKind.KLINE: "SELECT MAX(open_time) FROM kline WHERE symbol = {mark} "
                      "AND interval = {mark} AND is_closed",
}
# The time column --since/--until filter on, per table (book tickers have only a receive time).
_TIME_COLUMN = {t.name: "event_time" for t in TABLES}
_TIME_COLUMN.update(kline="open_time", book_ticker="received_ns", partial_depth="received_ns",
                    depth_snapshot="received_ns", gaps="detected_ns", quarantine="received_ns",
                    raw_frame="received_ns")


# Gaps a later backfill can still fill (silences have nothing to fetch).
UNFILLED_GAPS_SQL = ("SELECT stream, first_missing, last_missing, cause FROM gaps "
                     "WHERE filled_ns IS NULL AND cause NOT LIKE 'stale%' ORDER BY id")


def last_id_params(stream: str) -> tuple[StreamKind, tuple[str, ...]] | None:
    """Which `LAST_ID_SQL` query, with which parameters, gives ``stream``'s last stored id."""
    s = parse_stream(stream)
    if s.kind in (StreamKind.AGG_TRADE, StreamKind.TRADE):
        return s.kind, (s.symbol.upper(),)
    if s.kind is StreamKind.KLINE:
        return s.kind, (s.symbol.upper(), s.interval)
    return None


def table_for(kind: str) -> str:
    """The table holding a stream kind given as on the command line (``ticker``, ``kline_1m``),
    or a table named directly (``agg_trade``, ``gaps``, ``quarantine``)."""
    if kind in _TIME_COLUMN:
        return kind
    return TABLE_FOR_KIND[parse_stream(f"btcusdt@{kind}").kind].name


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
    in a database recorded with ``timeUnit=MICROSECOND``)."""
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
    return QueryResult([d[0] for d in cur.description], list(cur.fetchall()))


def _exchange_time_scale(conn: Any, mark: str) -> int:
    row = conn.execute(f"SELECT value FROM meta WHERE key = {mark}", ("time_unit",)).fetchone()
    return 1000 if row and row[0] == "microsecond" else 1


def query(
    database: str | Path, kind: str = "ticker", symbol: str | None = None,
    since: int | None = None, until: int | None = None, limit: int | None = None,
) -> QueryResult:
    """Recorded rows of one stream kind (or bookkeeping table) from a SQLite file or a
    ``postgresql://`` URL, oldest first; ``since``/``until`` in epoch ms.

    Raises `FileNotFoundError` for a missing SQLite file and `InvalidStreamName` or
    `KeyError` for an unknown kind.
    """
    table = table_for(kind)
    if isinstance(database, str) and database.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(database) as pg:
            return read_rows(pg, table, symbol, since, until, limit, mark="%s")
    if not Path(database).exists():
        raise FileNotFoundError(f"no database at {database}")
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return read_rows(conn, table, symbol, since, until, limit)
    finally:
        conn.close()
