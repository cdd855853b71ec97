"""SQLite backend (the embedded default): WAL mode, one writer, one transaction per batch.

Opening checks the file first: a missing folder, a folder given as the file, a file that is not
SQLite or a SQLite file of another program is an `InvalidDatabase`; a read-only file or folder
is a `StorageFatal` at open time, not at the first write. One recorder per file, or one per
shard (several processes then write the file, each its own streams, one transaction at a time):
any other gets `DatabaseInUse`. The write-ahead log is kept below ``wal_limit_bytes`` and
folded into the database at close, so the database file alone holds everything.
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
from collections.abc import Callable, Iterator
from pathlib import Path

from binance_streamer.core.sharding import Shard
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
_OPEN_BUSY_TIMEOUT_MS = 10_000
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


# -- one recorder per file, or one per shard -----------------------------------------------------


class RecorderLock:
    """Non-blocking OS locks held while recording, so two recorders never record one stream.

    An unsharded recorder (``shard`` None or ``1/1``) locks ``<db>-recorder.lock`` exclusively:
    one per file. A shard ``i/N`` locks it shared (beside other shards, never beside an
    unsharded recorder) and ``<db>-recorder-shard-<i>of<N>.lock`` exclusively (one per shard),
    then refuses to start while a shard of another count records (their streams overlap).
    The OS releases the locks when the process ends, even by ``kill -9``; readers never lock.
    """

    def __init__(self, database: Path, shard: Shard | None = None) -> None:
        self.database = database
        self.shard = shard if shard is not None and shard.count > 1 else None
        self.path = Path(f"{database}-recorder.lock")
        self._held: list[tuple[Path, int, bool]] = []  # path, descriptor, exclusive
        self.write_path = Path(f"{database}-recorder-write.lock")
        self._write_fd: int | None = None
        try:
            if self.shard is None:
                self._take(self.path, True, self._refuse_whole)
            else:
                self._take(self.path, False, self._refuse_shard_beside_whole)
                self._take(self.shard_path(self.shard.index, self.shard.count), True,
                           self._refuse_same_shard)
                self._refuse_other_counts()
                if sys.platform != "win32":
                    self._write_fd = self._open(self.write_path)
        except BaseException:
            self.release()
            raise

    def __repr__(self) -> str:
        return f"<RecorderLock {self.database} shard={self.shard}>"

    @contextlib.contextmanager
    def write_turn(self) -> Iterator[None]:
        """Shards take turns to write: waiting on an OS lock wakes the next writer the moment
        a transaction ends, where SQLite's busy handler would poll, sleeping up to 100 ms.
        Without a shard, a no-op."""
        fd = self._write_fd
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks without the GIL
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def shard_path(self, index: int, count: int) -> Path:
        """The lock file of shard ``index/count``."""
        return Path(f"{self.database}-recorder-shard-{index}of{count}.lock")

    def _open(self, path: Path) -> int:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            if path.exists():  # someone else's lock file: locking needs no write access
                return os.open(path, os.O_RDONLY)
            raise

    def _take(self, path: Path, exclusive: bool, refusal: Callable[[], str]) -> None:
        for _ in range(10):
            try:
                fd = self._open(path)
            except OSError as exc:
                raise StorageFatal(
                    f"cannot write {self.database}: its folder "
                    f"{self.database.absolute().parent} is read-only ({exc.strerror}); "
                    "check its permissions") from exc
            try:
                _lock(fd, exclusive)
            except (BlockingIOError, PermissionError) as exc:  # held by another process
                os.close(fd)
                raise DatabaseInUse(refusal()) from exc
            # A closing holder unlinks the file before unlocking: lock the file that is there.
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                if exclusive:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, 0)
                        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self._held.append((path, fd, exclusive))
                return
            os.close(fd)
        raise StorageFatal(f"cannot lock {path}: it keeps being replaced; "
                           "stop the other binance-streamer")

    def _live_shards(self) -> list[tuple[int, int, str]]:
        """Shards (index, count, pid) whose lock another process holds now."""
        prefix = f"{self.database.name}-recorder-shard-"
        found = []
        with contextlib.suppress(OSError):
            for entry in self.database.absolute().parent.iterdir():
                match = _SHARD_LOCK.fullmatch(entry.name[len(prefix):]) \
                    if entry.name.startswith(prefix) else None
                if match is None or any(entry == held for held, _, _ in self._held):
                    continue
                if _held_elsewhere(entry):
                    found.append((int(match[1]), int(match[2]), _holder(entry)))
        return sorted(found)

    def _refuse_whole(self) -> str:
        shards = self._live_shards()
        if shards:
            listed = ", ".join(f"shard {i}/{n} (pid {pid})" for i, n, pid in shards)
            return (f"other binance-streamer processes are recording into {self.database} "
                    f"({listed}); stop them or choose another --db")
        return (f"another binance-streamer is recording into {self.database} "
                f"(pid {_holder(self.path)}); stop it or choose another --db")

    def _refuse_shard_beside_whole(self) -> str:
        return (f"another binance-streamer is recording every stream into {self.database} "
                f"(pid {_holder(self.path)}), so shard {self.shard} cannot; stop it or choose "
                "another --db")

    def _refuse_same_shard(self) -> str:
        assert self.shard is not None
        path = self.shard_path(self.shard.index, self.shard.count)
        return (f"another binance-streamer is recording shard {self.shard} into "
                f"{self.database} (pid {_holder(path)}); stop it or choose another --db")

    def _refuse_other_counts(self) -> None:
        """Shards of another count overlap ours: refuse (we hold our locks first, so of two
        starting at once at least one sees the other)."""
        assert self.shard is not None
        for index, count, pid in self._live_shards():
            if count != self.shard.count:
                raise DatabaseInUse(
                    f"shard {index}/{count} (pid {pid}) is recording into {self.database}: "
                    f"shard {self.shard} of another count would record some of the same "
                    f"streams; use {count} shards or stop it")

    def release(self) -> None:
        """Remove the lock files nobody else holds and release every lock (idempotent)."""
        while self._held:
            path, fd, exclusive = self._held.pop()
            if not exclusive:  # a shard: the last one to leave removes the shared lock files
                with contextlib.suppress(OSError):
                    _lock(fd, True)
                    exclusive = True
                    self.write_path.unlink(missing_ok=True)
            if exclusive:  # first: a newcomer then creates and locks a fresh file
                with contextlib.suppress(OSError):
                    path.unlink()
            os.close(fd)  # closing the descriptor releases the lock
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None


_SHARD_LOCK = re.compile(r"(\d+)of(\d+)\.lock")


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _held_elsewhere(path: Path) -> bool:
    """True when another process holds ``path``'s lock (probed with a shared lock)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        _lock(fd, False)
    except (BlockingIOError, PermissionError):
        return True
    finally:
        os.close(fd)
    return False


if sys.platform == "win32":  # pragma: no cover
    import msvcrt

    def _lock(fd: int, exclusive: bool) -> None:
        # msvcrt has no shared locks: on Windows a shard locks the whole file (one shard).
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
else:
    import fcntl

    def _lock(fd: int, exclusive: bool) -> None:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)


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
    if current >= SCHEMA_VERSION:
        return current
    conn.execute("BEGIN IMMEDIATE")  # read again inside: another shard may have migrated
    try:
        current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for version, statements_ in migrations(current, "sqlite"):
            for sql in statements_:
                conn.execute(sql)
            conn.execute(f"PRAGMA user_version={version}")
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
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
    the database file alone holds everything. With ``shard``, other processes may record the
    other shards into the same file (see `RecorderLock`).
    """

    def __init__(self, path: str | Path, *, wal_limit_bytes: int = DEFAULT_WAL_LIMIT_BYTES,
                 busy_timeout_ms: int = 200, shard: Shard | None = None) -> None:
        p = sqlite_path(path)
        self.path = str(p)
        self.wal_limit_bytes = wal_limit_bytes
        self.wal_folded: bool | None = None  # set by close()
        self.wal_resets_blocked = 0  # times a reader kept the WAL from being reset
        self._wal = f"{p}-wal"
        _check_folder(p)
        _check_header(p, _header(p, "write") if p.exists() else b"")
        self._lock = RecorderLock(p, shard)
        self.shard = self._lock.shard
        try:
            # Opening may wait for another shard creating or migrating the file.
            self._conn = _connect_for_writing(p, max(busy_timeout_ms, _OPEN_BUSY_TIMEOUT_MS))
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
            self._conn.execute(f"PRAGMA journal_size_limit={int(wal_limit_bytes)}")
        except BaseException:
            self._lock.release()
            raise
        self._checkpointer = Checkpointer(self.path)
        self._closed = False

    def __repr__(self) -> str:
        shard = "" if self.shard is None else f" shard={self.shard}"
        return f"<SqliteSink {self.path}{shard} schema=v{SCHEMA_VERSION}>"

    def write(self, batch: Batch) -> WriteResult:
        """Store ``batch`` in one transaction; StorageBusy or StorageFatal on failure."""
        conn = self._conn
        max_vars = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        # Parameters are flattened before the transaction: other shards wait less for it.
        plan = {table: _insert_plan(table, rows, _chunk_sizes(table, max_vars))
                for table, rows in batch.rows.items()}
        with self._lock.write_turn():
            try:
                conn.execute("BEGIN IMMEDIATE")
                stored = self._write_rows(conn, batch, plan)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _translate(exc, self.path) from exc
                raise
            self._bound_wal()  # in our turn: no other shard writes while the log is reset
        return WriteResult(stored)

    @staticmethod
    def _write_rows(conn: sqlite3.Connection, batch: Batch,
                    plan: dict[str, list[tuple[str, list[object]]]]) -> dict[str, int]:
        stored = {table: sum(conn.execute(sql, params).rowcount for sql, params in statements_)
                  for table, statements_ in plan.items()}
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
            with self._lock.write_turn():  # between other shards' transactions
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
            if self.shard is not None:  # another shard still writes: the last one folds it
                log.info("%s: shard %s leaves the write-ahead log to the shards still "
                         "recording", self.path, self.shard)
                return False
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


def _insert_plan(table: str, rows: list[Row], chunks: tuple[int, ...]
                 ) -> list[tuple[str, list[object]]]:
    """The few multi-row idempotent INSERT statements (and their parameters) storing ``rows``."""
    plan, start = [], 0
    for size in chunks:
        while len(rows) - start >= size:
            part = rows[start:start + size]
            plan.append((_multi_row_insert(table, size),
                         list(itertools.chain.from_iterable(part))))
            start += size
    return plan


def _translate(exc: sqlite3.Error, path: str) -> StorageBusy | StorageFatal:
    text = str(exc).lower()
    if any(b in text for b in _BUSY):
        return StorageBusy(f"{path}: {exc}")
    return StorageFatal(f"cannot write {path}: {exc}")


def last_ids(conn: sqlite3.Connection, streams: list[str]) -> dict[str, ResumePoint]:
    """The last stored id (trade, aggTrade) or open time (kline) of each id-sequenced stream."""
    return bookkeeping.last_ids(conn, _SQL, streams)
