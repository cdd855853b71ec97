"""What a recorded database holds, read fast enough to ask while a recorder writes to it.

`read_status` opens the database with `open_reader` (never the recorder's lock), reads it in
one short read transaction (one snapshot; it blocks no writer) and returns a
`Status`: per stream (a market table and its key prefix: symbol, plus the kline interval,
ticker window or partial-depth levels) its rows, first and last time, last receive time and
rows received in the last minute; per table its rows; gaps open, filled and silences;
quarantined frames; listing changes; the database's size, time unit and schema version.

Cost. Every figure but the row counts comes from index seeks: the streams are enumerated by a
loose index scan of the natural key (one seek per stream), their first and last rows are the
ends of the key (`storage/id_range.py`: ids grow with time per symbol), and a table's size is
the span of its surrogate ``id``. The last minute's rows are those stored since the first row
received in it (rows are inserted in the order received, give or take a batch): a bisection of
``id`` on ``received_ns`` finds it, then only the ids after it are read (their stream columns,
not the depth levels), so asking costs about one read of the last minute's rows.
Counting rows walks an index (about 0.1 s per million rows on SQLite, warm cache), so rows are
counted exactly only for tables whose id span is at most `EXACT_ROWS_LIMIT` (or with
``exact``); above it a table's rows are its id span, and a stream's rows are its key span where
the key is dense (trade and aggregate trade ids: exact unless ids are missing, see the gaps),
else unknown (None). Each figure says whether it is exact.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binance_streamer.core.sequencing import CAUSE_STALE
from binance_streamer.core.tables import TABLES
from binance_streamer.storage.bookkeeping import exchange_time_scale
from binance_streamer.storage.open import Reader, check_database, open_reader
from binance_streamer.storage.postgres import redact
from binance_streamer.storage.schema import TIME_COLUMN

__all__ = ["EXACT_ROWS_LIMIT", "RATE_WINDOW_S", "GapCount", "Status", "StreamStatus",
           "TableRows", "read_status"]

EXACT_ROWS_LIMIT = 1_000_000  # tables with at most this id span are counted row by row
RATE_WINDOW_S = 60  # "rows in the last minute"
_NS_PER_S = 1_000_000_000
# Keys that are consecutive per symbol: the key span is the row count when nothing is missing.
_DENSE_KEYS = frozenset({"trade", "agg_trade"})
_OTHER_TABLES = ("raw_frame",)  # counted like the market tables (it can be as big)
_UNITS = {"millisecond": "ms", "microsecond": "us"}


@dataclass(frozen=True)
class StreamStatus:
    """One stream's rows in ``table``: ``symbol`` and ``detail`` (the kline interval, ticker
    window or partial-depth levels; None for other tables).

    Times are as stored: ``first_time`` and ``last_time`` are the ``time_column`` of the
    stream's first and last row in key order, in ``time_unit`` (``ms``/``us`` for exchange
    times, ``ns`` for receive times); ``last_received_ns`` is the last row's receive time (None
    for a row fetched over REST). ``rows`` is None when not counted (see the module docstring);
    ``rows_last_minute`` counts the rows stored in ``table`` since its first row received in
    the `RATE_WINDOW_S` before ``Status.read_ns`` (rows fetched over REST after it included).
    """

    table: str
    symbol: str
    detail: str | None
    rows: int | None
    rows_exact: bool
    time_column: str
    time_unit: str
    first_time: int | None
    last_time: int | None
    last_received_ns: int | None
    rows_last_minute: int


@dataclass(frozen=True)
class TableRows:
    """A table's rows: counted (``exact``) or its surrogate id span (an upper bound)."""

    table: str
    rows: int
    exact: bool


@dataclass(frozen=True)
class GapCount:
    """Gaps of one stream and cause: ``open`` not filled yet, ``filled`` over REST. A silence
    (cause ``stale...``) has nothing to fetch: it is counted as neither."""

    stream: str
    cause: str
    open: int
    filled: int
    silences: int


@dataclass
class Status:
    """What a database holds; see `read_status`."""

    database: str
    backend: str  # sqlite or postgresql
    schema_version: int
    time_unit: str  # millisecond or microsecond (exchange times)
    size_bytes: int
    read_ns: int  # the reader's clock when the last-minute window ended
    symbol: str | None = None  # the one symbol asked for, upper case; None: every one
    streams: list[StreamStatus] = field(default_factory=list)
    tables: list[TableRows] = field(default_factory=list)
    gaps: list[GapCount] = field(default_factory=list)
    quarantined: int = 0
    listing_changes: int = 0

    @property
    def gaps_open(self) -> int:
        """Gaps not filled yet, every stream."""
        return sum(g.open for g in self.gaps)

    @property
    def gaps_filled(self) -> int:
        """Gaps filled over REST, every stream."""
        return sum(g.filled for g in self.gaps)

    @property
    def silences(self) -> int:
        """Silences (stale streams) reported, every stream."""
        return sum(g.silences for g in self.gaps)


def read_status(database: str | Path, *, symbol: str | None = None, exact: bool = False,
                exact_limit: int = EXACT_ROWS_LIMIT, now_ns: int | None = None) -> Status:
    """What ``database`` (a SQLite path or ``postgresql://`` URL) holds, optionally only for
    ``symbol``. Tables with an id span up to ``exact_limit`` are counted row by row, every one
    with ``exact``. ``now_ns`` ends the last-minute window (default: the clock).

    Every figure comes from one read snapshot, so they agree with each other while a recorder
    writes (a read transaction blocks no writer; on SQLite it only delays resetting the
    write-ahead log until it ends). Raises `InvalidDatabase`, `MissingExtra` or
    `SchemaTooNew`."""
    target = check_database(database)
    postgres = isinstance(target, str)
    wanted = symbol.upper() if symbol else None
    with open_reader(database) as reader, _snapshot(reader, postgres):
        read_ns = time.time_ns() if now_ns is None else now_ns
        unit = _time_unit(reader)
        present = _tables(reader, postgres)
        status = Status(
            database=redact(str(target)) if postgres else str(target),
            backend="postgresql" if postgres else "sqlite",
            schema_version=_schema_version(reader, postgres), time_unit=unit,
            size_bytes=_size(reader, target), read_ns=read_ns, symbol=wanted)
        for spec in TABLES:
            if spec.name not in present:
                continue
            table_rows = _table_rows(reader, spec.name, exact, exact_limit)
            if table_rows is None:
                continue
            status.tables.append(table_rows)
            status.streams += _streams(reader, spec.name, spec.key, wanted, table_rows.exact,
                                       read_ns, _UNITS[unit], postgres)
        for name in _OTHER_TABLES:
            table_rows = (_table_rows(reader, name, exact, exact_limit) if name in present
                          else None)
            if table_rows is not None:
                status.tables.append(table_rows)
        status.gaps = _gaps(reader, wanted)
        status.quarantined = _quarantined(reader, wanted)
        if "listing_change" in present:  # schema version 3 on
            status.listing_changes = _listing_changes(reader, wanted)
    if wanted is not None:
        status.tables = []  # whole-table figures would not be the symbol's
    return status


@contextlib.contextmanager
def _snapshot(reader: Reader, postgres: bool) -> Iterator[None]:
    """One read transaction (PostgreSQL: REPEATABLE READ, so one snapshot), ended after."""
    conn = reader.conn
    if postgres:
        conn.commit()  # end the transaction open_reader's checks began
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    else:
        conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.rollback()


def _table_rows(reader: Reader, table: str, exact: bool, exact_limit: int) -> TableRows | None:
    """``table``'s rows, counted when ``exact`` or its id span is at most ``exact_limit``; None
    when it is empty."""
    span = _id_span(reader, table)
    if span is None:
        return None
    if exact or span <= exact_limit:
        return TableRows(table, _count(reader, table), True)
    return TableRows(table, span, False)


# -- the database as a whole ---------------------------------------------------------------------


def _one(reader: Reader, sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = reader.conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _time_unit(reader: Reader) -> str:
    scale = exchange_time_scale(reader.conn, reader.mark)
    return "microsecond" if scale == 1000 else "millisecond"


def _tables(reader: Reader, postgres: bool) -> set[str]:
    sql = ("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()" if postgres
           else "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {str(r[0]) for r in reader.conn.execute(sql).fetchall()}


def _schema_version(reader: Reader, postgres: bool) -> int:
    if postgres:
        return int(_one(reader, "SELECT MAX(version) FROM schema_version") or 0)
    return int(_one(reader, "PRAGMA user_version"))


def _size(reader: Reader, target: str | Path) -> int:
    """The database's bytes: the SQLite file and its write-ahead log, or PostgreSQL's
    ``pg_database_size``."""
    if isinstance(target, str):
        return int(_one(reader, "SELECT pg_database_size(current_database())"))
    total = 0
    for path in (Path(target), Path(f"{target}-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(path).st_size
    return total


def _id_span(reader: Reader, table: str) -> int | None:
    """MAX(id) - MIN(id) + 1 from the two ends of the primary key (None: empty, or no such
    table in an older schema); two subqueries, as SQLite scans for a lone MIN-and-MAX."""
    row = reader.conn.execute(f"SELECT (SELECT MIN(id) FROM {table}), "  # noqa: S608
                              f"(SELECT MAX(id) FROM {table})").fetchone()
    if row is None or row[0] is None:
        return None
    return int(row[1]) - int(row[0]) + 1


def _count(reader: Reader, table: str) -> int:
    return int(_one(reader, f"SELECT COUNT(*) FROM {table}"))  # noqa: S608


# -- streams -------------------------------------------------------------------------------------


def _quoted(columns: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _next_prefix(table: str, prefix: tuple[str, ...], only: str) -> list[str]:
    """The recursive step of the loose index scan: the prefix after ``s.c0[, s.c1]``, each
    column an index seek (a row-value comparison would seek on the first column only and then
    walk every row of the stream)."""
    first = prefix[0]
    next_first = f'(SELECT MIN("{first}") FROM {table} WHERE "{first}" > s.c0{only})'  # noqa: S608
    if len(prefix) == 1:
        return [next_first]
    second = prefix[1]
    same = f'(SELECT MIN("{second}") FROM {table} WHERE "{first}" = s.c0 AND "{second}" > s.c1)'  # noqa: S608
    after = (f'(SELECT MIN("{second}") FROM {table} WHERE "{first}" = '  # noqa: S608
             f"{next_first})")
    return [f"CASE WHEN {same} IS NULL THEN {next_first} ELSE s.c0 END",
            f"COALESCE({same}, {after})"]


def _stream_sql(table: str, key: tuple[str, ...], m: str, one_symbol: bool, counted: bool
                ) -> str:
    """One statement listing ``table``'s streams (distinct key prefixes, by a loose index scan
    of the natural key) with their first and last rows' times, key ends and, when ``counted``,
    rows."""
    prefix, last = key[:-1], key[-1]
    cols = _quoted(prefix)
    names = ", ".join(f"c{i}" for i in range(len(prefix)))
    first_where = f' WHERE "symbol" = {m}' if one_symbol else ""
    nexts = ", ".join(_next_prefix(table, prefix, f' AND "symbol" = {m}' if one_symbol else ""))
    match = " AND ".join(f'"{c}" = s.c{i}' for i, c in enumerate(prefix))
    time_col = TIME_COLUMN[table]

    def end(column: str, order: str) -> str:
        return (f'(SELECT "{column}" FROM {table} WHERE {match} '  # noqa: S608
                f'ORDER BY "{last}" {order} LIMIT 1)')

    count = f"(SELECT COUNT(*) FROM {table} WHERE {match})"  # noqa: S608
    rows = count if counted else "NULL"
    return (f"WITH RECURSIVE s({names}) AS ("  # noqa: S608 - names from the schema
            f"SELECT * FROM (SELECT {cols} FROM {table}{first_where} ORDER BY {cols} LIMIT 1) f "
            f"UNION ALL SELECT {nexts} FROM s WHERE s.c0 IS NOT NULL) "
            f"SELECT {names}, {end(time_col, 'ASC')}, {end(time_col, 'DESC')}, "
            f"{end('received_ns', 'DESC')}, {end(last, 'ASC')}, {end(last, 'DESC')}, {rows} "
            f"FROM s WHERE s.c0 IS NOT NULL")


def _streams(reader: Reader, table: str, key: tuple[str, ...], symbol: str | None,
             counted: bool, read_ns: int, exchange_unit: str, postgres: bool
             ) -> list[StreamStatus]:
    sql = _stream_sql(table, key, reader.mark, symbol is not None, counted)
    params = (symbol,) * sql.count(reader.mark) if symbol is not None else ()
    width = len(key) - 1
    since_ns = read_ns - RATE_WINDOW_S * _NS_PER_S
    recent = _rows_stored_since(reader, table, key[:-1], since_ns, postgres)
    time_col = TIME_COLUMN[table]
    unit = "ns" if time_col.endswith("_ns") else exchange_unit
    found = []
    for row in reader.conn.execute(sql, params).fetchall():
        prefix = tuple(row[:width])
        first_time, last_time, last_received, first_key, last_key, rows = row[width:]
        exact_rows = counted
        if rows is None and table in _DENSE_KEYS and first_key is not None:
            rows = int(last_key) - int(first_key) + 1
        found.append(StreamStatus(
            table=table, symbol=str(prefix[0]),
            detail=None if width == 1 else str(prefix[1]),
            rows=None if rows is None else int(rows), rows_exact=exact_rows,
            time_column=time_col, time_unit=unit, first_time=_int(first_time),
            last_time=_int(last_time), last_received_ns=_int(last_received),
            rows_last_minute=recent.get(prefix, 0)))
    return found


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _rows_stored_since(reader: Reader, table: str, prefix: tuple[str, ...], since_ns: int,
                       postgres: bool) -> dict[tuple[Any, ...], int]:
    """Rows of each stream (key prefix) stored since the first row received at or after
    ``since_ns``: the ids from that row on (found by bisection), reading only their prefix
    columns, never their receive times, which come after the large columns (depth levels)."""
    lo = _first_id_received_at_or_after(reader, table, since_ns)
    if lo is None:
        return {}
    # SQLite would walk the natural-key index for the GROUP BY (every row of the table); the
    # unary + keeps it on the id range. PostgreSQL plans the id range itself.
    group = _quoted(prefix) if postgres else ", ".join(f'+"{c}"' for c in prefix)
    sql = (f"SELECT {_quoted(prefix)}, COUNT(*) FROM {table} "  # noqa: S608
           f"WHERE id >= {reader.mark} GROUP BY {group}")
    return {tuple(r[:-1]): int(r[-1]) for r in reader.conn.execute(sql, (lo,))}


def _first_id_received_at_or_after(reader: Reader, table: str, since_ns: int) -> int | None:
    """About the first id whose row was received at or after ``since_ns``, by bisection on the
    primary key (rows without a receive time, fetched over REST, are stepped over); None when
    the last row was received before."""
    m = reader.mark
    probe = (f"SELECT id, received_ns FROM {table} WHERE id >= {m} "  # noqa: S608
             f"AND received_ns IS NOT NULL ORDER BY id LIMIT 1")
    last = reader.conn.execute(f"SELECT id, received_ns FROM {table} "  # noqa: S608
                               "WHERE received_ns IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()
    if last is None or int(last[1]) < since_ns:
        return None
    lo, hi = int(_one(reader, f"SELECT MIN(id) FROM {table}")), int(last[0])  # noqa: S608
    # Invariant: the row at (or the first timed one after) hi is received at or after since_ns.
    while lo < hi:
        mid = (lo + hi) // 2
        row = reader.conn.execute(probe, (mid,)).fetchone()
        if row is None or int(row[1]) >= since_ns:
            hi = mid
        else:
            lo = int(row[0]) + 1
    return lo


# -- bookkeeping ---------------------------------------------------------------------------------


def _stream_symbol(stream: str) -> str | None:
    """The symbol (upper case) of a stream name, None for a market-wide one (``!...``)."""
    return None if stream.startswith("!") else stream.split("@", 1)[0].upper()


def _gaps(reader: Reader, symbol: str | None) -> list[GapCount]:
    stale = f"substr(cause, 1, {len(CAUSE_STALE)}) = '{CAUSE_STALE}'"
    sql = (f"SELECT stream, cause, {stale}, filled_ns IS NULL, COUNT(*) FROM gaps "  # noqa: S608
           f"GROUP BY stream, cause, {stale}, filled_ns IS NULL ORDER BY stream, cause")
    counts: dict[tuple[str, str], list[int]] = {}
    for stream, cause, is_stale, is_open, n in reader.conn.execute(sql).fetchall():
        if symbol is not None and _stream_symbol(stream) != symbol:
            continue
        slot = counts.setdefault((stream, cause), [0, 0, 0])
        slot[2 if is_stale else 0 if is_open else 1] += int(n)
    return [GapCount(stream, cause, *n) for (stream, cause), n in counts.items()]


def _quarantined(reader: Reader, symbol: str | None) -> int:
    if symbol is None:
        return int(_one(reader, "SELECT COUNT(*) FROM quarantine"))
    rows = reader.conn.execute("SELECT stream, COUNT(*) FROM quarantine GROUP BY stream")
    return sum(int(n) for stream, n in rows.fetchall() if _stream_symbol(stream) == symbol)


def _listing_changes(reader: Reader, symbol: str | None) -> int:
    if symbol is None:
        return int(_one(reader, "SELECT COUNT(*) FROM listing_change"))
    sql = f"SELECT COUNT(*) FROM listing_change WHERE symbol = {reader.mark}"  # noqa: S608
    return int(_one(reader, sql, (symbol,)))
