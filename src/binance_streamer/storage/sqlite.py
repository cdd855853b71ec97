"""SQLite backend (the embedded default): WAL mode, one writer, one transaction per batch.

Opening checks the file first: a missing folder, a folder given as the file, a file that is not
SQLite or a SQLite file of another program is an `InvalidDatabase`; a read-only file or folder
is a `StorageFatal` at open time, not at the first write. One recorder per file: a second one
gets `DatabaseInUse`. The write-ahead log is kept below ``wal_limit_bytes`` and folded into the
database at close, so the database file alone holds everything.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import re
import sqlite3
import sys
import threading
from pathlib import Path

from binance_streamer.core.tables import TABLES, Row
from binance_streamer.errors import (
    DatabaseInUse,
    InvalidDatabase,
    SchemaTooNew,
    StorageBusy,
    StorageFatal,
    StreamerError,
)
from binance_streamer.storage import bookkeeping
from binance_streamer.storage.base import Batch, ResumePoint, WriteResult
from binance_streamer.storage.postgres import redact
from binance_streamer.storage.schema import SCHEMA_VERSION, insert_sql, migrations, statements

__all__ = [
    "DEFAULT_WAL_LIMIT_BYTES",
    "RecorderLock",
    "SqliteSink",
    "check_schema",
    "connect_for_reading",
    "last_ids",
    "migrate",
    "sqlite_path",
]

log = logging.getLogger(__name__)

DEFAULT_WAL_LIMIT_BYTES = 32 * 1024 * 1024
_SQL = statements("sqlite")
_SPECS = {t.name: t for t in TABLES}
# Rows per INSERT statement, largest first. One multi-row statement binds many rows, then runs
# as one sqlite3_step: Python's sqlite3 releases the GIL around each step, and re-taking it can
# wait a whole switch interval (5 ms) while the event loop thread is busy, so executemany's step
# per row would crawl (measured: 411 rows/s with a busy loop thread, 149,000 with 5,000-row
# statements). Fixed sizes keep the prepared statements cached; sizes binding more variables
# than the SQLite build allows (32,766 by default) are skipped.
_CHUNKS = (4096, 1024, 256, 64, 16, 4, 1)
_BUSY = ("database is locked", "database table is locked", "database is busy")
_HEADER = b"SQLite format 3\x00"
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


# -- what is at the path -------------------------------------------------------------------------


def sqlite_path(database: str | Path) -> Path:
    """``database`` as a file path; a ``scheme://`` URL (``mysql://``, ``sqlite://``) is an
    `InvalidDatabase` rather than a file in a folder named after the scheme."""
    if isinstance(database, str) and (m := _URL.match(database)):
        raise InvalidDatabase(
            f"{redact(database)}: {m['scheme']}:// databases are not supported; "
            "use a SQLite file path or a postgresql:// URL")
    return Path(database)


def _header(path: Path, action: str) -> bytes:
    """The first 16 bytes of ``path``; a folder or an unreadable file is refused."""
    if path.is_dir():
        raise InvalidDatabase(f"{path} is a folder, not a database file; give a file path such "
                              f"as {path / 'binance_data.db'}")
    try:
        with path.open("rb") as fh:
            return fh.read(len(_HEADER))
    except PermissionError as exc:
        error = StorageFatal if action == "write" else InvalidDatabase
        raise error(f"cannot {action} {path}: permission denied; check its permissions"
                    ) from exc


def _check_header(path: Path, head: bytes) -> None:
    if head and head != _HEADER:
        raise InvalidDatabase(f"{path} is not a SQLite database; choose another file")


def check_schema(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of a database that is ours (0: empty); `InvalidDatabase` for another
    program's SQLite file, `SchemaTooNew` for a newer binance-streamer's."""
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")]
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if "meta" not in tables and (tables or version):
        shown = ", ".join(tables[:10]) + (f" and {len(tables) - 10} more" if len(tables) > 10
                                          else "")
        what = f"tables: {shown}" if tables else f"no tables, user_version {version}"
        raise InvalidDatabase(f"{path} is a SQLite database of another program ({what}); "
                              "choose another file")
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(version, SCHEMA_VERSION)
    return version


def _open_error(exc: sqlite3.Error, path: Path) -> StreamerError:
    """A failure while opening ``path`` for recording, as the error the user can act on."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_READONLY_DIRECTORY" or (
            name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN"))
            and not os.access(path.absolute().parent, os.W_OK)):
        return StorageFatal(f"cannot write {path}: its folder {path.absolute().parent} is "
                            "read-only; check its permissions")
    if name.startswith("SQLITE_READONLY"):
        return StorageFatal(f"cannot write {path}: the file is read-only; check its permissions")
    if name == "SQLITE_NOTADB":
        return InvalidDatabase(f"{path} is not a SQLite database; choose another file")
    return _translate(exc, str(path))


# -- one recorder per file -----------------------------------------------------------------------


class RecorderLock:
    """An exclusive, non-blocking OS lock on ``<db>-recorder.lock``, held while recording.

    The OS releases it when the process ends, even by ``kill -9``; readers never take it.
    """

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = Path(f"{database}-recorder.lock")
        self._fd: int | None = self._acquire()

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            if self.path.exists():  # someone else's lock file: locking needs no write access
                return os.open(self.path, os.O_RDONLY)
            raise

    def _acquire(self) -> int:
        for _ in range(10):
            try:
                fd = self._open()
            except OSError as exc:
                raise StorageFatal(
                    f"cannot write {self.database}: its folder "
                    f"{self.database.absolute().parent} is read-only ({exc.strerror}); "
                    "check its permissions") from exc
            try:
                _lock(fd)
            except (BlockingIOError, PermissionError) as exc:  # held by another process
                holder = self._holder()
                os.close(fd)
                raise DatabaseInUse(
                    f"another binance-streamer is recording into {self.database} "
                    f"(pid {holder}); stop it or choose another --db") from exc
            # A closing holder unlinks the file before unlocking: lock the file that is there.
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
            os.close(fd)
        raise StorageFatal(f"cannot lock {self.path}: it keeps being replaced; "
                           "stop the other binance-streamer")

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # first: a newcomer then creates and locks a fresh file
        os.close(self._fd)  # closing the descriptor releases the lock
        self._fd = None


if sys.platform == "win32":  # pragma: no cover
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


# -- connections ---------------------------------------------------------------------------------


def _connect_for_writing(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """Open ``path`` (created if missing) for recording: checked, writable, WAL, migrated."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           cached_statements=512)
    try:
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        check_schema(conn, path)
        _probe_write(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (kill -9); only power loss can lose the
        # last committed batches.
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise _open_error(exc, path) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _probe_write(conn: sqlite3.Connection) -> None:
    """Write page 1 in a transaction rolled back: a read-only file or folder fails here."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute(f"PRAGMA user_version={version}")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def connect_for_reading(database: str | Path) -> sqlite3.Connection:
    """Open a recorded SQLite file for reading, or raise `InvalidDatabase` saying what it is.

    The connection is ``query_only`` and opened read-write where it may be, so that, as the last
    one to close, it removes the ``-wal`` and ``-shm`` files reading a WAL database creates. With
    no write-ahead log present (no recorder is writing) a file or folder we cannot write is
    opened as immutable: a read-only folder cannot even get the ``-shm`` file.
    """
    path = sqlite_path(database)
    if not path.exists() and not path.is_symlink():
        raise InvalidDatabase(f"no database at {path}; check the path (or record into it first)")
    head = _header(path, "read")
    if not head:
        raise InvalidDatabase(f"{path} holds no recording")
    _check_header(path, head)
    uri = path.absolute().as_uri()  # percent-encodes '#', '?' and '%'
    wal = Path(f"{path}-wal")
    writable = os.access(path, os.W_OK) and os.access(path.absolute().parent, os.W_OK)
    if not writable and not wal.exists():
        version, conn = _open_immutable(uri, path)
    else:
        try:
            version, conn = _open_checked(f"{uri}?mode=rw", path)
        except sqlite3.Error as exc:
            if wal.exists() and wal.stat().st_size:
                raise InvalidDatabase(
                    f"cannot read {path}: {exc}; if its folder is read-only, copy {path} and "
                    f"{wal.name} to a writable folder") from exc
            version, conn = _open_immutable(uri, path)
    if version == 0:
        conn.close()
        raise InvalidDatabase(f"{path} holds no recording")
    return conn


def _open_checked(uri: str, path: Path) -> tuple[int, sqlite3.Connection]:
    """A query-only connection to ``uri`` and the schema version `check_schema` found there."""
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        conn.execute("PRAGMA query_only=1")
        return check_schema(conn, path), conn
    except BaseException:
        conn.close()
        raise


def _open_immutable(uri: str, path: Path) -> tuple[int, sqlite3.Connection]:
    try:
        return _open_checked(f"{uri}?immutable=1", path)
    except sqlite3.Error as exc:
        raise InvalidDatabase(f"cannot read {path}: {exc}") from exc


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to `SCHEMA_VERSION`; returns the version found before."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    for version, statements_ in migrations(current, "sqlite"):
        conn.execute("BEGIN IMMEDIATE")
        for sql in statements_:
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
        try:
            conn = sqlite3.connect(self._path, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("%s: no background checkpoints (%s)", self._path, exc)
            return
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
    """Writes batches to one SQLite file; used by one thread at a time (the writer's).

    ``wal_limit_bytes`` bounds the write-ahead log: past it, the writer folds the log into the
    database and truncates it between two batches. After `close`, ``wal_folded`` tells whether
    the database file alone holds everything.
    """

    def __init__(self, path: str | Path, *, wal_limit_bytes: int = DEFAULT_WAL_LIMIT_BYTES,
                 busy_timeout_ms: int = 200) -> None:
        p = sqlite_path(path)
        self.path = str(p)
        self.wal_limit_bytes = wal_limit_bytes
        self.wal_folded: bool | None = None  # set by close()
        self.wal_resets_blocked = 0  # times a reader kept the WAL from being reset
        self._wal = f"{p}-wal"
        _check_folder(p)
        _check_header(p, _header(p, "write") if p.exists() else b"")
        self._lock = RecorderLock(p)
        try:
            self._conn = _connect_for_writing(p, busy_timeout_ms)
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
            self._conn.execute(f"PRAGMA journal_size_limit={int(wal_limit_bytes)}")
        except BaseException:
            self._lock.release()
            raise
        self._checkpointer = Checkpointer(self.path)
        self._closed = False

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
        self._bound_wal()
        return WriteResult(stored)

    @staticmethod
    def _write_rows(conn: sqlite3.Connection, batch: Batch) -> dict[str, int]:
        stored: dict[str, int] = {}
        max_vars = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        for table, rows in batch.rows.items():
            stored[table] = _insert_rows(conn, table, rows, _chunk_sizes(table, max_vars))
        bookkeeping.write_bookkeeping(conn.cursor(), _SQL, batch, stored)
        return stored

    def _bound_wal(self) -> None:
        """Past ``wal_limit_bytes``, fold the WAL into the database and truncate it (a passive
        checkpoint never resets a log that the writer keeps appending to)."""
        try:
            if os.stat(self._wal).st_size <= self.wal_limit_bytes:
                return
        except FileNotFoundError:
            return
        try:
            busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as exc:  # the batch is committed; a later one retries
            busy, reason = 1, str(exc)
        else:
            reason = "a reader or a checkpoint is using it"
        if busy:
            self.wal_resets_blocked += 1
            if self.wal_resets_blocked % 100 == 1:
                log.warning("%s: the write-ahead log is past %g MB and could not be reset (%s); "
                            "retrying after the next batches", self.path,
                            self.wal_limit_bytes / 2**20, reason)

    def meta(self, key: str, default: str) -> str:
        """The stored value of ``key``, storing ``default`` first if there is none."""
        try:
            return bookkeeping.read_meta(self._conn, _SQL, key, default)
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    def last_ids(self, streams: list[str]) -> dict[str, ResumePoint]:
        """See `last_ids`; called once before recording starts."""
        try:
            return last_ids(self._conn, streams)
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    def unfilled_gaps(self, streams: list[str]) -> list[tuple[str, int, int, str]]:
        """Gaps of ``streams`` not filled yet (a stop or crash came first)."""
        try:
            return bookkeeping.unfilled_gaps(self._conn, _SQL, streams)
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    def close(self) -> None:
        """Stop checkpointing, fold the WAL into the database, close and release the lock.

        Sets ``wal_folded``; when the WAL could not be folded in (a reader holds it, or an
        error) a warning says so, and the ``-wal`` file must stay next to the database.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._checkpointer.close()
            self.wal_folded = self._fold_wal()
            self._conn.close()
        finally:
            self._lock.release()

    def _fold_wal(self) -> bool:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as exc:
            reason = str(exc)
        else:
            if not busy:
                return True
            reason = "another connection is reading it"
        log.warning("%s: could not fold the write-ahead log into the database at close (%s); "
                    "keep %s next to it: it holds the latest rows", self.path, reason, self._wal)
        return False


def _check_folder(path: Path) -> None:
    """The folder of ``path`` must exist (it is not created) and ``path`` must not be one."""
    parent = path.parent
    if path.is_dir():
        raise InvalidDatabase(f"{path} is a folder, not a database file; give a file path such "
                              f"as {path / 'binance_data.db'}")
    if not parent.exists():
        raise InvalidDatabase(f"folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise InvalidDatabase(f"{parent} is not a folder; choose another database path")


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


def _translate(exc: sqlite3.Error, path: str) -> StorageBusy | StorageFatal:
    text = str(exc).lower()
    if any(b in text for b in _BUSY):
        return StorageBusy(f"{path}: {exc}")
    return StorageFatal(f"cannot write {path}: {exc}")


def last_ids(conn: sqlite3.Connection, streams: list[str]) -> dict[str, ResumePoint]:
    """The last stored id (trade, aggTrade) or open time (kline) of each id-sequenced stream."""
    return bookkeeping.last_ids(conn, _SQL, streams)
