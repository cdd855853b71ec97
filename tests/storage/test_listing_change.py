"""The listing_change table: written by both backends, added to older databases on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from binance_streamer.storage.base import Batch, ListingChangeRow
from binance_streamer.storage.postgres import PostgresSink
from binance_streamer.storage.schema import MIGRATIONS, SCHEMA_VERSION
from binance_streamer.storage.sqlite import SqliteSink

CHANGES: list[ListingChangeRow] = [
    (1_700_000_000_000_000_000, "DOTUSDT", "listed", None, "TRADING",
     "dotusdt@aggTrade dotusdt@depth@100ms", "", ""),
    (1_700_000_000_000_000_001, "BNBUSDT", "status", "TRADING", "HALT", "",
     "bnbusdt@aggTrade", ""),
    (1_700_000_000_000_000_002, "ETHUSDT", "subscribe_error", None, None, "",
     "ethusdt@trade", "{'code': 4, 'msg': 'Too many subscriptions'}"),
]
SELECT = ("SELECT changed_ns, symbol, change, old_status, new_status, streams_added, "
          "streams_removed, detail FROM listing_change ORDER BY id")


def test_sqlite_stores_listing_changes(db_path: Path) -> None:
    sink = SqliteSink(db_path)
    result = sink.write(Batch(listing_changes=list(CHANGES)))
    sink.close()
    assert result.stored["listing_change"] == 3
    with sqlite3.connect(db_path) as conn:
        assert conn.execute(SELECT).fetchall() == CHANGES


def test_postgres_stores_listing_changes(pg_url: str) -> None:
    sink = PostgresSink(pg_url)
    result = sink.write(Batch(listing_changes=list(CHANGES)))
    sink.close()
    assert result.stored["listing_change"] == 3
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(SELECT).fetchall() == CHANGES


def test_a_version_2_sqlite_database_gains_the_table_on_open(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    for version in (1, 2):
        for sql in MIGRATIONS[version]("sqlite"):
            conn.execute(sql)
    conn.execute("PRAGMA user_version=2")
    assert "listing_change" not in {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    SqliteSink(db_path).close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT COUNT(*) FROM listing_change").fetchone() == (0,)


def test_a_version_2_postgres_database_gains_the_table_on_open(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version in (1, 2):
            for sql in MIGRATIONS[version]("postgres"):
                conn.execute(sql)
            conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
    PostgresSink(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone() == (
            SCHEMA_VERSION,)
        assert conn.execute("SELECT COUNT(*) FROM listing_change").fetchone() == (0,)
