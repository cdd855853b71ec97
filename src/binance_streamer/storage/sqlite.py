"""SQLite backend (the embedded default): WAL mode, one writer, one transaction per batch."""

from __future__ import annotations

import contextlib
import functools
import itertools
import sqlite3
import threading
from pathlib import Path

from binance_streamer.core.tables import TABLES, Row
from binance_streamer.errors import StorageBusy, StorageFatal
from binance_streamer.storage.base import Batch, WriteResult
from binance_streamer.storage.schema import SCHEMA_VERSION, insert_sql, migrations

__all__ = ["SqliteSink", "connect", "last_ids", "migrate"]

_SPECS = {t.name: t for t in TABLES}
# Rows per INSERT statement, largest first. One multi-row statement binds many rows, then runs
# as one sqlite3_step: Python's sqlite3 releases the GIL around each step, and re-taking it can
# wait a whole switch interval (5 ms) while the event loop thread is busy, so executemany's step
# per row would crawl (measured: 411 rows/s with a busy loop thread, 149,000 with 5,000-row
# statements). Fixed sizes keep the prepared statements cached; sizes binding more variables
# than the SQLite build allows (32,766 by default) are skipped.
_CHUNKS = (4096, 1024, 256, 64, 16, 4, 1)
_GAP_INSERT = (
    "INSERT INTO gaps (stream, first_missing, last_missing, cause, detected_ns) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_GAP_FILL = (
    "UPDATE gaps SET filled_ns = ?, rows_filled = ? "
    "WHERE stream = ? AND first_missing = ? AND last_missing = ?"
)
_QUARANTINE = "INSERT INTO quarantine (received_ns, stream, reason, raw) VALUES (?, ?, ?, ?)"
_RAW = "INSERT INTO raw_frame (received_ns, connection, frame) VALUES (?, ?, ?)"
_BUSY = ("database is locked", "database table is locked", "database is busy")


def connect(
    path: str | Path, *, readonly: bool = False, busy_timeout_ms: int = 200
) -> sqlite3.Connection:
    """Open ``path`` (creating it unless ``readonly``); errors become StorageFatal."""
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   cached_statements=512)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (kill -9); only power loss can lose
            # the last committed batches.
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    except (sqlite3.Error, OSError) as exc:
        raise StorageFatal(f"cannot open database {path}: {exc}") from exc
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to `SCHEMA_VERSION`; returns the version found before."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    for version, statements in migrations(current, "sqlite"):
        conn.execute("BEGIN IMMEDIATE")
        for sql in statements:
            conn.execute(sql)
        conn.execute(f"PRAGMA user_version={version}")
        conn.execute("COMMIT")
    return current


class Checkpointer:
    """Moves WAL pages into the database from its own thread and connection, so the writer's
    COMMITs stay short (SQLite's automatic checkpoint would run inside them)."""

    def __init__(self, path: str, interval_s: float = 1.0) -> None:
        self._path = path
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, check_same_thread=False)
        try:
            while not self._stop.wait(self._interval_s):
                with contextlib.suppress(sqlite3.Error):  # busy now: the next round catches up
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._thread.join()


class SqliteSink:
    """Writes batches to one SQLite file; used by the writer thread only."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn = connect(path)
        try:
            migrate(self._conn)
        except sqlite3.Error as exc:
            self._conn.close()
            raise _translate(exc, self.path) from exc
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = Checkpointer(self.path)

    def __repr__(self) -> str:
        return f"<SqliteSink {self.path} schema=v{SCHEMA_VERSION}>"

    def write(self, batch: Batch) -> WriteResult:
        """Store ``batch`` in one transaction; StorageBusy or StorageFatal on failure."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            stored = self._write_rows(conn, batch)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc, self.path) from exc
            raise
        return WriteResult(stored)

    @staticmethod
    def _write_rows(conn: sqlite3.Connection, batch: Batch) -> dict[str, int]:
        stored: dict[str, int] = {}
        max_vars = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        for table, rows in batch.rows.items():
            stored[table] = _insert_rows(conn, table, rows, _chunk_sizes(table, max_vars))
        if batch.gaps:
            stored["gaps"] = conn.executemany(_GAP_INSERT, batch.gaps).rowcount
        if batch.gap_fills:
            conn.executemany(_GAP_FILL, batch.gap_fills)
        if batch.quarantine:
            stored["quarantine"] = conn.executemany(_QUARANTINE, batch.quarantine).rowcount
        if batch.raw_frames:
            stored["raw_frame"] = conn.executemany(_RAW, batch.raw_frames).rowcount
        return stored

    def meta(self, key: str, default: str) -> str:
        """The stored value of ``key``, storing ``default`` first if there is none."""
        self._conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                           (key, default))
        return str(self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def last_ids(self, streams: list[str]) -> dict[str, int]:
        """See `last_ids`; called once before recording starts."""
        return last_ids(self._conn, streams)

    def unfilled_gaps(self, streams: list[str]) -> list[tuple[str, int, int, str]]:
        """Gaps of ``streams`` not filled yet (a stop or crash came first)."""
        from binance_streamer.storage.query import UNFILLED_GAPS_SQL

        wanted = set(streams)
        return [r for r in self._conn.execute(UNFILLED_GAPS_SQL) if r[0] in wanted]

    def close(self) -> None:
        """Stop checkpointing and close (the last close checkpoints the whole WAL)."""
        self._checkpointer.close()
        self._conn.close()


@functools.cache
def _chunk_sizes(table: str, max_variables: int) -> tuple[int, ...]:
    columns = len(_SPECS[table].columns)
    return tuple(n for n in _CHUNKS if n * columns <= max_variables)


@functools.cache
def _multi_row_insert(table: str, rows: int) -> str:
    return insert_sql(_SPECS[table], "sqlite", rows)


def _insert_rows(
    conn: sqlite3.Connection, table: str, rows: list[Row], chunks: tuple[int, ...]
) -> int:
    """Insert ``rows`` idempotently with few multi-row statements; the rows newly stored."""
    stored, start = 0, 0
    for size in chunks:
        while len(rows) - start >= size:
            part = rows[start:start + size]
            params = list(itertools.chain.from_iterable(part))
            stored += conn.execute(_multi_row_insert(table, size), params).rowcount
            start += size
    return stored


def _translate(exc: sqlite3.Error, path: str) -> Exception:
    text = str(exc).lower()
    if any(b in text for b in _BUSY):
        return StorageBusy(f"{path}: {exc}")
    return StorageFatal(f"cannot write {path}: {exc}")



def last_ids(conn: sqlite3.Connection, streams: list[str]) -> dict[str, int]:
    """The last stored id (trade, aggTrade) or open time (kline) of each id-sequenced stream."""
    from binance_streamer.storage.query import LAST_ID_SQL, last_id_params

    found: dict[str, int] = {}
    for stream in streams:
        spec = last_id_params(stream)
        if spec is None:
            continue
        kind, params = spec
        row = conn.execute(LAST_ID_SQL[kind].format(mark="?"), params).fetchone()
        if row and row[0] is not None:
            found[stream] = int(row[0])
    return found
