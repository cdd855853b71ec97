"""Where ``binance-streamer history`` stores what it fetches, beside a recorder or not.

History is no recorder: it never takes the SQLite recorder lock (`RecorderLock`), so it can fill
the past of a database that a live ``record`` keeps writing. Both write with the same idempotent
inserts on the natural keys (`binance_streamer.storage.schema.insert_sql`), one short transaction
per page; SQLite serialises the two writers, and a row stored by either is never stored twice.
`HistoryStore.stored_runs` tells which keys of a range are stored already, so a rerun fetches
only what is missing.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from pathlib import Path
from typing import Any

from binance_streamer.core.tables import AGG_TRADE, KLINE, TABLES, Row
from binance_streamer.errors import StorageBusy, StorageFatal
from binance_streamer.storage import bookkeeping
from binance_streamer.storage.base import Batch
from binance_streamer.storage.open import check_database, open_reader, open_sink
from binance_streamer.storage.schema import insert_sql, statements
from binance_streamer.storage.sqlite import check_schema, migrate

__all__ = ["HistoryStore"]

_SQLITE = statements("sqlite")
_SPECS = {t.name: t for t in TABLES}
_KEY = {"agg_trade": ("agg_id", "trade_time"), "trade": ("trade_id", "trade_time"),
        "kline": ("open_time", "open_time")}
_BUSY_TIMEOUT_MS = 10_000  # a recorder's transaction is one batch: far shorter than this
_PAGE = 500  # rows per INSERT statement (13 columns x 500 stays below SQLite's 32,766 variables)


_HIGHEST_AGG = "SELECT MAX(agg_id) FROM agg_trade WHERE symbol = ? AND agg_id < ?"
_HIGHEST_TRADE = "SELECT MAX(trade_id) FROM trade WHERE symbol = ? AND trade_id < ?"


class HistoryStore:
    """An open database for history: `write` pages, ask `stored_runs`; `close` at the end.

    Raises what `open_sink` raises for an unusable database (`InvalidDatabase`,
    `SchemaTooNew`, `MissingExtra`, `StorageFatal`).
    """

    def __init__(self, database: str | Path) -> None:
        target = check_database(database)
        self.database = str(database)
        self._stack = contextlib.ExitStack()
        self._sink: Any = None
        if isinstance(target, str):  # PostgreSQL: its sink takes no lock
            self._sink = open_sink(target)
            self._stack.callback(self._sink.close)
            reader = self._stack.enter_context(open_reader(target))
            self._conn: Any = reader.conn
            self._mark = reader.mark
        else:
            self._conn = _connect(target)
            self._stack.callback(self._conn.close)
            self._mark = "?"

    def __repr__(self) -> str:
        return f"<HistoryStore {self.database}>"

    def time_unit(self) -> str:
        """``millisecond`` or ``microsecond``: the unit of the exchange times stored here
        (``millisecond`` is stored first in a database that has none yet)."""
        if self._sink is not None:
            return str(self._sink.meta("time_unit", "millisecond"))
        # A new database gets milliseconds (the REST default) stored, as a recorder would.
        return bookkeeping.read_meta(self._conn, _SQLITE, "time_unit", "millisecond")

    def write(self, table: str, rows: list[Row]) -> int:
        """Store ``rows`` of ``table`` in one transaction; the rows newly stored."""
        if not rows:
            return 0
        if self._sink is not None:
            batch = Batch()
            batch.add(table, rows)
            return int(self._sink.write(batch).stored.get(table, 0))
        return _write_sqlite(self._conn, table, rows, self.database)

    def stored_runs(self, table: str, symbol: str, interval: str, lo: int, until: int,
                    step: int) -> list[tuple[int, int]]:
        """The runs of consecutive keys (ids; kline open times ``step`` apart, closed klines
        only) of ``symbol`` stored from ``lo`` on, of items at or before time ``until``:
        ``(first, last)`` pairs, ascending."""
        first_sql, runs_sql = _runs_sql(table, self._mark)
        params: list[object] = [symbol, interval] if table == KLINE.name else [symbol]
        params += [lo, until]
        first = self._conn.execute(first_sql, params).fetchone()[0]
        if first is None:
            return []
        ends = self._conn.execute(runs_sql, [*params, step]).fetchall()
        starts = [first] + [nxt for _, nxt in ends if nxt is not None]
        return [(int(s), int(k)) for s, (k, _) in zip(starts, ends, strict=True)]

    def highest_below(self, table: str, symbol: str, start: int) -> int | None:
        """The highest trade or aggregate-trade id of ``symbol`` stored below ``start``."""
        sql = _HIGHEST_AGG if table == AGG_TRADE.name else _HIGHEST_TRADE
        sql = sql.replace("?", self._mark)
        row = self._conn.execute(sql, (symbol, start)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def note_gap(self, stream: str, first: int, last: int, detected_ns: int) -> None:
        """Record ids ``first``..``last`` of ``stream`` as an open gap, so the next recorder
        run fills them over REST (it resumes after its highest stored id, which history's rows
        would otherwise hide)."""
        dialect = "sqlite" if self._mark == "?" else "postgres"
        self._conn.execute(statements(dialect).gap_insert,
                           (stream, first, last, "history", detected_ns))
        self._conn.commit()

    def close(self) -> None:
        """Close the connection(s)."""
        self._stack.close()


@functools.cache
def _runs_sql(table: str, m: str) -> tuple[str, str]:
    """The first stored key of a range, and the last key of each run in it (with the next
    stored key, if any); ``table`` is one of `_KEY`'s, never user input."""
    key, when = _KEY[table]
    extra = f' AND "interval" = {m} AND is_closed' if table == KLINE.name else ""
    where = f'symbol = {m}{extra} AND "{key}" >= {m} AND "{when}" <= {m}'
    first = f'SELECT MIN("{key}") FROM {table} WHERE {where}'  # noqa: S608 - fixed names
    runs = (f'SELECT k, nxt FROM (SELECT "{key}" AS k, LEAD("{key}") OVER (ORDER BY "{key}") '  # noqa: S608 - fixed names
            f"AS nxt FROM {table} WHERE {where}) AS runs WHERE nxt IS NULL OR nxt <> k + {m}")
    return first, runs


def _connect(path: Path) -> sqlite3.Connection:
    """A write connection to ``path`` (created if missing) without the recorder lock."""
    if path.is_dir() or not path.parent.is_dir():
        open_sink(path).close()  # raises the InvalidDatabase that says what is wrong
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        check_schema(conn, path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise StorageFatal(f"cannot open {path} for writing: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _write_sqlite(conn: sqlite3.Connection, table: str, rows: list[Row], where: str) -> int:
    spec, stored = _SPECS[table], 0
    try:
        conn.execute("BEGIN IMMEDIATE")
        for start in range(0, len(rows), _PAGE):
            part = rows[start:start + _PAGE]
            params = [v for row in part for v in row]
            stored += conn.execute(insert_sql(spec, "sqlite", len(part)), params).rowcount
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise StorageBusy(f"{where}: {exc}") from exc
        if isinstance(exc, sqlite3.Error):
            raise StorageFatal(f"cannot write {where}: {exc}") from exc
        raise
    return stored
