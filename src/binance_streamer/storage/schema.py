"""The database schema as data, with versioned migrations, for SQLite and PostgreSQL.

Market tables come from `binance_streamer.core.tables`; each has an integer surrogate ``id`` and a
UNIQUE natural key, so an event is stored once however often it arrives. Bookkeeping tables:
``gaps`` (detected holes and their backfill), ``quarantine`` (frames that could not be decoded,
with the reason and raw text), ``raw_frame`` (the optional ``--raw`` archive) and ``meta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from binance_streamer.core.tables import TABLES, TableSpec

__all__ = ["BOOKKEEPING", "MIGRATIONS", "SCHEMA_VERSION", "Dialect", "insert_sql", "migrations"]

Dialect = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class Bookkeeping:
    """A bookkeeping table: name and column definitions after ``id``."""

    name: str
    columns: tuple[tuple[str, str], ...]
    unique: tuple[str, ...] = ()


GAPS = Bookkeeping(
    "gaps",
    (("stream", "TEXT NOT NULL"), ("first_missing", "BIGINT NOT NULL"),
     ("last_missing", "BIGINT NOT NULL"), ("cause", "TEXT NOT NULL"),
     ("detected_ns", "BIGINT NOT NULL"), ("filled_ns", "BIGINT"), ("rows_filled", "BIGINT")),
    ("stream", "first_missing", "last_missing"),
)
QUARANTINE = Bookkeeping(
    "quarantine",
    (("received_ns", "BIGINT NOT NULL"), ("stream", "TEXT NOT NULL"), ("reason", "TEXT NOT NULL"),
     ("raw", "TEXT NOT NULL")),
)
RAW_FRAME = Bookkeeping(
    "raw_frame",
    (("received_ns", "BIGINT NOT NULL"), ("connection", "INTEGER NOT NULL"),
     ("frame", "TEXT NOT NULL")),
)
BOOKKEEPING = (GAPS, QUARANTINE, RAW_FRAME)
_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"INTEGER": "INTEGER", "TEXT": "TEXT", "BOOLEAN": "BOOLEAN", "BIGINT": "INTEGER"},
    "postgres": {"INTEGER": "BIGINT", "TEXT": "TEXT", "BOOLEAN": "BOOLEAN", "BIGINT": "BIGINT"},
}


def _id(dialect: Dialect) -> str:
    return "id INTEGER PRIMARY KEY" if dialect == "sqlite" else "id BIGSERIAL PRIMARY KEY"


def _market_table(t: TableSpec, dialect: Dialect) -> list[str]:
    types = _TYPES[dialect]
    cols = ", ".join(f'"{c}" {types[k]}' for c, k in t.columns)
    key = ", ".join(f'"{c}"' for c in t.key)
    # Only the natural key is indexed: every extra index costs ~20% of insert throughput.
    return [f"CREATE TABLE {t.name} ({_id(dialect)}, {cols}, UNIQUE ({key}))"]


def _bookkeeping_table(b: Bookkeeping, dialect: Dialect) -> list[str]:
    types = _TYPES[dialect]
    cols = ", ".join(
        f"{c} {types.get(k.split()[0], k.split()[0])}{k[len(k.split()[0]):]}" for c, k in b.columns
    )
    unique = f", UNIQUE ({', '.join(b.unique)})" if b.unique else ""
    return [f"CREATE TABLE {b.name} ({_id(dialect)}, {cols}{unique})"]


def _version_1(dialect: Dialect) -> list[str]:
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    stmts = ["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"]
    for t in TABLES:
        stmts += _market_table(t, dialect)
    for b in BOOKKEEPING:
        stmts += _bookkeeping_table(b, dialect)
    # The tutorial's table, as a view over the @ticker stream: (id, symbol, price, timestamp).
    stmts.append(
        "CREATE VIEW market_data AS SELECT id, symbol, "
        f"CAST(last_price AS {real}) AS price, event_time AS timestamp FROM ticker"
    )
    return stmts


MIGRATIONS = {1: _version_1}
SCHEMA_VERSION = max(MIGRATIONS)


def migrations(current: int, dialect: Dialect) -> list[tuple[int, list[str]]]:
    """The statements that take a database from version ``current`` to `SCHEMA_VERSION`."""
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {current} is newer than this binance-streamer "
            f"({SCHEMA_VERSION}); upgrade binance-streamer"
        )
    return [(v, MIGRATIONS[v](dialect)) for v in range(current + 1, SCHEMA_VERSION + 1)]


def insert_sql(t: TableSpec, dialect: Dialect, rows: int = 1) -> str:
    """Parameterised idempotent insert of ``rows`` rows into table ``t`` (an upsert where the
    spec says so)."""
    cols = ", ".join(f'"{c}"' for c in t.column_names)
    mark = "?" if dialect == "sqlite" else "%s"
    one_row = "(" + ", ".join(mark for _ in t.columns) + ")"
    values = ", ".join([one_row] * rows)
    key = ", ".join(f'"{c}"' for c in t.key)
    sql = f"INSERT INTO {t.name} ({cols}) VALUES {values} ON CONFLICT ({key}) DO "
    if t.upsert_when is None:
        return sql + "NOTHING"
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in t.column_names if c not in t.key)
    return sql + f"UPDATE SET {sets} WHERE {t.upsert_when.format(t=t.name)}"
