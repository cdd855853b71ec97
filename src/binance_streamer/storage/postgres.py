"""PostgreSQL backend (the shared one): the same schema, one transaction per batch.

Selected by a ``postgresql://`` database URL. Inserts use ``executemany`` (pipelined by psycopg 3)
with ``ON CONFLICT`` on the natural keys, exactly as in SQLite; the bookkeeping SQL is the same
as SQLite's (`binance_streamer.storage.bookkeeping`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from binance_streamer.core.tables import TABLES
from binance_streamer.errors import StorageBusy, StorageFatal
from binance_streamer.storage import bookkeeping
from binance_streamer.storage.base import Batch, ResumePoint, WriteResult
from binance_streamer.storage.schema import SCHEMA_VERSION, insert_sql, migrations, statements

__all__ = ["PostgresSink", "first_line", "is_postgres_url", "redact"]

_SQL = statements("postgres")
_T = TypeVar("_T")


def is_postgres_url(database: object) -> bool:
    """True for ``postgresql://`` and ``postgres://`` URLs."""
    return isinstance(database, str) and database.startswith(("postgresql://", "postgres://"))


@functools.cache
def _inserts() -> dict[str, str]:
    return {t.name: insert_sql(t, "postgres") for t in TABLES}


class PostgresSink:
    """Writes batches to a PostgreSQL database; used by one thread at a time (the writer's)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        try:
            self._conn: Any = psycopg.connect(url, autocommit=False)
        except psycopg.Error as exc:
            raise StorageFatal(f"cannot open database {redact(url)}: {first_line(exc)}; check "
                               "the URL and that the server is running") from exc
        try:
            self._migrate()
        except psycopg.Error as exc:
            self._conn.close()
            raise StorageFatal(f"cannot open database {redact(url)}: {first_line(exc)}"
                               ) from exc
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"<PostgresSink {redact(self.url)} schema=v{SCHEMA_VERSION}>"

    def _migrate(self) -> None:
        with self._conn.transaction():
            # One migrator at a time across processes.
            self._conn.execute("SELECT pg_advisory_xact_lock(727274)")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for version, statements_ in migrations(current, "postgres"):
                for sql in statements_:
                    self._conn.execute(sql)
                self._conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))

    def write(self, batch: Batch) -> WriteResult:
        """Store ``batch`` in one transaction; StorageBusy or StorageFatal on failure."""
        def write() -> dict[str, int]:
            inserts = _inserts()
            stored: dict[str, int] = {}
            with self._conn.cursor() as cur:
                for table, rows in batch.rows.items():
                    cur.executemany(inserts[table], rows)
                    stored[table] = cur.rowcount
                bookkeeping.write_bookkeeping(cur, _SQL, batch, stored)
            return stored

        return WriteResult(self._transaction(write))

    def meta(self, key: str, default: str) -> str:
        """The stored value of ``key``, storing ``default`` first if there is none."""
        return self._transaction(lambda: bookkeeping.read_meta(self._conn, _SQL, key, default))

    def last_ids(self, streams: list[str]) -> dict[str, ResumePoint]:
        """The last stored id or kline open time of each id-sequenced stream."""
        return self._transaction(lambda: bookkeeping.last_ids(self._conn, _SQL, streams))

    def unfilled_gaps(self, streams: list[str]) -> list[tuple[str, int, int, str]]:
        """Gaps of ``streams`` not filled yet (a stop or crash came first)."""
        return self._transaction(lambda: bookkeeping.unfilled_gaps(self._conn, _SQL, streams))

    def _transaction(self, work: Callable[[], _T]) -> _T:
        """Run ``work`` in one transaction; psycopg errors become StorageBusy or StorageFatal."""
        import psycopg

        try:
            with self._conn.transaction():
                return work()
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected,
                psycopg.errors.SerializationFailure) as exc:
            # Rolled back whole and retried by the writer, like a locked SQLite file: two
            # collectors inserting the same events in different orders deadlock now and then,
            # and the retry stores each event once (ON CONFLICT).
            raise StorageBusy(str(exc)) from exc
        except psycopg.Error as exc:
            raise StorageFatal(f"cannot write {redact(self.url)}: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (psycopg adds indented hints below it)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def redact(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, cred = head.partition("//")
    return f"{scheme}//{cred.split(':', 1)[0]}:***@{tail}"


_redact = redact  # the name tests and older callers use
