"""PostgreSQL backend (the shared one): the same schema, one transaction per batch.

Selected by a ``postgresql://`` database URL. Inserts use ``executemany`` (pipelined by psycopg 3)
with ``ON CONFLICT`` on the natural keys, exactly as in SQLite.
"""

from __future__ import annotations

from typing import Any

from binance_streamer.core.tables import TABLES
from binance_streamer.errors import StorageBusy, StorageFatal
from binance_streamer.storage.base import Batch, WriteResult
from binance_streamer.storage.schema import SCHEMA_VERSION, migrations

__all__ = ["PostgresSink", "is_postgres_url"]

_INSERTS: dict[str, str] = {}
_GAP_INSERT = (
    "INSERT INTO gaps (stream, first_missing, last_missing, cause, detected_ns) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_GAP_FILL = (
    "UPDATE gaps SET filled_ns = %s, rows_filled = %s "
    "WHERE stream = %s AND first_missing = %s AND last_missing = %s"
)
_QUARANTINE = "INSERT INTO quarantine (received_ns, stream, reason, raw) VALUES (%s, %s, %s, %s)"
_RAW = "INSERT INTO raw_frame (received_ns, connection, frame) VALUES (%s, %s, %s)"


def is_postgres_url(database: object) -> bool:
    """True for ``postgresql://`` and ``postgres://`` URLs."""
    return isinstance(database, str) and database.startswith(("postgresql://", "postgres://"))


def _inserts() -> dict[str, str]:
    if not _INSERTS:
        from binance_streamer.storage.schema import insert_sql

        _INSERTS.update({t.name: insert_sql(t, "postgres") for t in TABLES})
    return _INSERTS


class PostgresSink:
    """Writes batches to a PostgreSQL database; used by the writer thread only."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        try:
            self._conn: Any = psycopg.connect(url, autocommit=False)
            self._migrate()
        except psycopg.Error as exc:
            raise StorageFatal(f"cannot open database {_redact(url)}: {exc}") from exc

    def __repr__(self) -> str:
        return f"<PostgresSink {_redact(self.url)} schema=v{SCHEMA_VERSION}>"

    def _migrate(self) -> None:
        with self._conn.transaction():
            # One migrator at a time across processes.
            self._conn.execute("SELECT pg_advisory_xact_lock(727274)")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for version, statements in migrations(current, "postgres"):
                for sql in statements:
                    self._conn.execute(sql)
                self._conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))

    def write(self, batch: Batch) -> WriteResult:
        """Store ``batch`` in one transaction; StorageBusy or StorageFatal on failure."""
        import psycopg

        inserts = _inserts()
        stored: dict[str, int] = {}
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                for table, rows in batch.rows.items():
                    cur.executemany(inserts[table], rows)
                    stored[table] = cur.rowcount
                for sql, rows, name in ((_GAP_INSERT, batch.gaps, "gaps"),
                                        (_GAP_FILL, batch.gap_fills, ""),
                                        (_QUARANTINE, batch.quarantine, "quarantine"),
                                        (_RAW, batch.raw_frames, "raw_frame")):
                    if rows:
                        cur.executemany(sql, rows)
                        if name:
                            stored[name] = cur.rowcount
        except psycopg.errors.LockNotAvailable as exc:
            raise StorageBusy(str(exc)) from exc
        except psycopg.Error as exc:
            raise StorageFatal(f"cannot write {_redact(self.url)}: {exc}") from exc
        return WriteResult(stored)

    def meta(self, key: str, default: str) -> str:
        """The stored value of ``key``, storing ``default`` first if there is none."""
        with self._conn.transaction():
            self._conn.execute("INSERT INTO meta (key, value) VALUES (%s, %s) "
                               "ON CONFLICT DO NOTHING", (key, default))
            row = self._conn.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        return str(row[0])

    def last_ids(self, streams: list[str]) -> dict[str, int]:
        """The last stored id or kline open time of each id-sequenced stream."""
        from binance_streamer.storage.query import LAST_ID_SQL, last_id_params

        found: dict[str, int] = {}
        with self._conn.transaction():
            for stream in streams:
                spec = last_id_params(stream)
                if spec is None:
                    continue
                row = self._conn.execute(
                    LAST_ID_SQL[spec[0]].format(mark="%s"), spec[1]).fetchone()
                if row and row[0] is not None:
                    found[stream] = int(row[0])
        return found

    def unfilled_gaps(self, streams: list[str]) -> list[tuple[str, int, int, str]]:
        """Gaps of ``streams`` not filled yet (a stop or crash came first)."""
        from binance_streamer.storage.query import UNFILLED_GAPS_SQL

        wanted = set(streams)
        with self._conn.transaction():
            rows = self._conn.execute(UNFILLED_GAPS_SQL).fetchall()
        return [tuple(r) for r in rows if r[0] in wanted]

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def _redact(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, cred = head.partition("//")
    return f"{scheme}//{cred.split(':', 1)[0]}:***@{tail}"
