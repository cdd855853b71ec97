"""Opening the database the user named: a SQLite file path, or a ``postgresql://`` URL.

`open_sink` opens it for recording, `open_reader` for reading. Both refuse what is not (and
cannot become) a binance-streamer database with `InvalidDatabase`, and a PostgreSQL URL without
psycopg installed with `MissingExtra`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from binance_streamer.core.sharding import Shard
from binance_streamer.errors import InvalidDatabase, MissingExtra, SchemaTooNew
from binance_streamer.storage.base import Sink
from binance_streamer.storage.postgres import first_line, is_postgres_url, redact
from binance_streamer.storage.schema import SCHEMA_VERSION
from binance_streamer.storage.sqlite import DEFAULT_WAL_LIMIT_BYTES, sqlite_path

__all__ = ["Reader", "check_database", "open_reader", "open_sink"]

def check_database(database: str | Path) -> str | Path:
    """A ``postgresql://`` URL as it is, or a SQLite file path; any other ``scheme://`` is an
    `InvalidDatabase`."""
    if is_postgres_url(database):
        return str(database)
    return sqlite_path(database)


def _psycopg() -> ModuleType:
    try:
        import psycopg
    except ImportError as exc:
        raise MissingExtra("a postgresql:// database", "postgres") from exc
    return psycopg


def open_sink(database: str | Path, *,
              wal_limit_bytes: int = DEFAULT_WAL_LIMIT_BYTES, shard: Shard | None = None) -> Sink:
    """Open ``database`` for recording: a `PostgresSink` for a ``postgresql://`` URL, else a
    `SqliteSink` (``wal_limit_bytes`` bounds its write-ahead log) locked for ``shard`` (None:
    every stream), so other processes may record the other shards into the same file.

    Raises `InvalidDatabase` (bad scheme, missing folder, a folder, not SQLite, another
    program's file), `MissingExtra`, `SchemaTooNew`, `DatabaseInUse` (another recorder holds
    the SQLite file or this shard of it) or `StorageFatal` (read-only file or folder, server
    unreachable).
    """
    target = check_database(database)
    if isinstance(target, str):
        _psycopg()
        from binance_streamer.storage.postgres import PostgresSink

        return PostgresSink(target)
    from binance_streamer.storage.sqlite import SqliteSink

    return SqliteSink(target, wal_limit_bytes=wal_limit_bytes, shard=shard)


@dataclass
class Reader:
    """An open read connection (sqlite3 or psycopg) and its parameter placeholder."""

    conn: Any
    mark: str


@contextlib.contextmanager
def open_reader(database: str | Path) -> Iterator[Reader]:
    """Open a recorded ``database`` for reading; never takes the recorder's lock.

    Raises `InvalidDatabase` (no database there, empty, not SQLite, another program's file, no
    recording in it, PostgreSQL unreachable), `MissingExtra` or `SchemaTooNew`.
    """
    target = check_database(database)
    if isinstance(target, str):
        with _postgres_reader(target) as conn:
            yield Reader(conn, "%s")
        return
    from binance_streamer.storage.sqlite import connect_for_reading

    sqlite_conn = connect_for_reading(target)
    try:
        yield Reader(sqlite_conn, "?")
    finally:
        sqlite_conn.close()


@contextlib.contextmanager
def _postgres_reader(url: str) -> Iterator[Any]:
    psycopg = _psycopg()
    try:
        conn = psycopg.connect(url)
    except psycopg.Error as exc:
        raise InvalidDatabase(f"cannot connect to {redact(url)}: {first_line(exc)}; check the "
                              "URL and that the server is running") from exc
    with conn:
        if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
            raise InvalidDatabase(f"{redact(url)} holds no recording")
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(version, SCHEMA_VERSION)
        try:
            yield conn
        except psycopg.Error as exc:
            raise InvalidDatabase(f"cannot read {redact(url)}: {exc}") from exc
