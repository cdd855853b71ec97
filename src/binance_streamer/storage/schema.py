"""The database schema as data, with versioned migrations, for SQLite and PostgreSQL.

Market tables come from `binance_streamer.core.tables`; each has an integer surrogate ``id`` and a
UNIQUE natural key, so an event is stored once however often it arrives. Bookkeeping tables:
``gaps`` (detected holes and their backfill), ``quarantine`` (frames that could not be decoded,
with the reason and raw text), ``raw_frame`` (the optional ``--raw`` archive), ``listing_change``
(symbols listed, delisted or halted while ``record --all`` ran, and refused subscriptions) and
``meta``.
The SQL both backends run on the bookkeeping tables is generated here once per dialect
(`statements`), so SQLite and PostgreSQL differ only in the placeholder.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from binance_streamer.core.sequencing import CAUSE_STALE
from binance_streamer.core.streams import StreamKind
from binance_streamer.core.tables import TABLES, TableSpec
from binance_streamer.errors import SchemaTooNew

__all__ = [
    "BISECTED",
    "BOOKKEEPING",
    "LISTING_CHANGE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TIME_COLUMN",
    "TIME_INDEXES",
    "Dialect",
    "Statements",
    "insert_sql",
    "migrations",
    "statements",
]

Dialect = Literal["sqlite", "postgres"]
MARK: dict[Dialect, str] = {"sqlite": "?", "postgres": "%s"}


@dataclass(frozen=True)
class Bookkeeping:
    """A bookkeeping table: name and column definitions after ``id``."""

    name: str
    columns: tuple[tuple[str, str], ...]
    unique: tuple[str, ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        """The NOT NULL columns: what an insert of a new row gives."""
        return tuple(c for c, k in self.columns if "NOT NULL" in k)


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
# One row per symbol whose listing changed while ``record --all`` ran (change: listed, delisted,
# status) or whose SUBSCRIBE the server refused (subscribe_error); statuses NULL when not listed;
# the streams added and removed, space-separated; detail: the server's error, if any.
LISTING_CHANGE = Bookkeeping(
    "listing_change",
    (("changed_ns", "BIGINT NOT NULL"), ("symbol", "TEXT NOT NULL"), ("change", "TEXT NOT NULL"),
     ("old_status", "TEXT"), ("new_status", "TEXT"), ("streams_added", "TEXT NOT NULL"),
     ("streams_removed", "TEXT NOT NULL"), ("detail", "TEXT NOT NULL")),
)
_VERSION_1_BOOKKEEPING = (GAPS, QUARANTINE, RAW_FRAME)
BOOKKEEPING = (*_VERSION_1_BOOKKEEPING, LISTING_CHANGE)
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
    # The natural key is the only index here; `TIME_INDEXES` are the read indexes (version 2).
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
    for b in _VERSION_1_BOOKKEEPING:  # frozen: later tables come with later versions
        stmts += _bookkeeping_table(b, dialect)
    # The tutorial's table, as a view over the @ticker stream: (id, symbol, price, timestamp).
    stmts.append(
        "CREATE VIEW market_data AS SELECT id, symbol, "
        f"CAST(last_price AS {real}) AS price, event_time AS timestamp FROM ticker"
    )
    return stmts


# The time column of each table: what --since/--until bound and rows are ordered by. Trades use
# their trade time, which rows fetched over REST (backfill, history) have too (their event time
# is NULL); book tickers and partial/snapshot depth carry no exchange time, only the receive time.
# None of these columns is NULL in a row the recorder writes.
TIME_COLUMN: dict[str, str] = {
    **{t.name: "event_time" for t in TABLES},
    "trade": "trade_time", "agg_trade": "trade_time", "block_trade": "trade_time",
    "kline": "open_time", "reference_price": "time", "book_ticker": "received_ns",
    "partial_depth": "received_ns", "depth_snapshot": "received_ns",
    "gaps": "detected_ns", "quarantine": "received_ns", "raw_frame": "received_ns",
    "listing_change": "changed_ns",
}

# Read indexes (symbol, time column) of schema version 2: reading one symbol over a time range
# (query, export, read, book) seeks instead of scanning every row of the symbol. Frozen: version 4
# drops those of `id_range.KEY_ORDERED`, whose natural key orders the time column.
_VERSION_2_TIME_INDEXES = ("trade", "agg_trade", "block_trade", "book_ticker", "partial_depth",
                           "depth_update", "depth_snapshot")
# The read indexes kept (version 4). Tables whose natural key starts with (symbol[, kind column],
# time) need none: ticker, mini_ticker, avg_price, reference_price, window_ticker (symbol,
# window, event_time) and kline (symbol, interval, open_time). Neither do trade, agg_trade,
# depth_update and book_ticker, whose ids grow with their time per symbol: readers bisect the
# natural key (`storage/id_range.py`). Each index costs ingest throughput (about 40% of the
# writer's CPU per row on the high-volume tables, bench/whole_market.py); the low-volume tables
# keep theirs.
BISECTED = ("trade", "agg_trade", "depth_update", "book_ticker")
TIME_INDEXES: dict[str, tuple[str, ...]] = {
    t: ("symbol", TIME_COLUMN[t]) for t in _VERSION_2_TIME_INDEXES if t not in BISECTED
}


def _version_2(dialect: Dialect) -> list[str]:
    # PostgreSQL orders ties by id from the index too (SQLite's index entries end with the rowid).
    tail = ("id",) if dialect == "postgres" else ()
    return [f"CREATE INDEX IF NOT EXISTS {t}_by_time ON {t} "
            f"({_quoted(('symbol', TIME_COLUMN[t]) + tail)})" for t in _VERSION_2_TIME_INDEXES]


def _quoted(columns: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _version_3(dialect: Dialect) -> list[str]:
    # IF NOT EXISTS, like version 2's indexes: opening any older database adds the table.
    return [stmt.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
            for stmt in _bookkeeping_table(LISTING_CHANGE, dialect)]


def _version_4(dialect: Dialect) -> list[str]:
    # IF EXISTS: a database may have lost them by hand (or never had them: bench baselines).
    del dialect  # the same in both
    return [f"DROP INDEX IF EXISTS {t}_by_time" for t in BISECTED]


MIGRATIONS = {1: _version_1, 2: _version_2, 3: _version_3, 4: _version_4}
SCHEMA_VERSION = max(MIGRATIONS)


def migrations(current: int, dialect: Dialect) -> list[tuple[int, list[str]]]:
    """The statements that take a database from version ``current`` to `SCHEMA_VERSION`."""
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(current, SCHEMA_VERSION)
    return [(v, MIGRATIONS[v](dialect)) for v in range(current + 1, SCHEMA_VERSION + 1)]


def insert_sql(t: TableSpec, dialect: Dialect, rows: int = 1) -> str:
    """Parameterised idempotent insert of ``rows`` rows into table ``t`` (an upsert where the
    spec says so)."""
    cols = ", ".join(f'"{c}"' for c in t.column_names)
    mark = MARK[dialect]
    one_row = "(" + ", ".join(mark for _ in t.columns) + ")"
    values = ", ".join([one_row] * rows)
    key = ", ".join(f'"{c}"' for c in t.key)
    sql = f"INSERT INTO {t.name} ({cols}) VALUES {values} ON CONFLICT ({key}) DO "
    if t.upsert_when is None:
        return sql + "NOTHING"
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in t.column_names if c not in t.key)
    return sql + f"UPDATE SET {sets} WHERE {t.upsert_when.format(t=t.name)}"


@dataclass(frozen=True)
class Statements:
    """The bookkeeping SQL of one dialect (see `statements`)."""

    gap_insert: str  # stream, first_missing, last_missing, cause, detected_ns
    gap_fill: str  # filled_ns, rows_filled, stream, first_missing, last_missing
    silence_end: str  # last_missing, stream, first_missing (of a 'stale...' gap)
    quarantine_insert: str  # received_ns, stream, reason, raw
    raw_frame_insert: str  # received_ns, connection, frame
    listing_change_insert: str  # the columns of LISTING_CHANGE, in order
    unfilled_gaps: str  # -> (stream, first_missing, last_missing, cause), oldest first
    meta_insert: str  # key, value; an existing key keeps its value
    meta_select: str  # key -> value
    last_id: dict[StreamKind, str]  # symbol[, interval] -> the last stored id or open time


def _insert(b: Bookkeeping, mark: str, conflict: str = "") -> str:
    cols = b.required
    return (f"INSERT INTO {b.name} ({', '.join(cols)}) "
            f"VALUES ({', '.join(mark for _ in cols)}){conflict}")


@functools.cache
def statements(dialect: Dialect) -> Statements:
    """The bookkeeping SQL for ``dialect``: one definition, the placeholder chosen per dialect."""
    m = MARK[dialect]
    key = " AND ".join(f"{c} = {m}" for c in GAPS.unique)  # stream, first, last
    stream, first, _ = GAPS.unique
    # cause LIKE 'stale%', without a '%' that psycopg would take for a placeholder
    stale = f"substr(cause, 1, {len(CAUSE_STALE)}) = '{CAUSE_STALE}'"
    return Statements(
        gap_insert=_insert(GAPS, m, " ON CONFLICT DO NOTHING"),
        gap_fill=f"UPDATE {GAPS.name} SET filled_ns = {m}, rows_filled = {m} WHERE {key}",
        silence_end=(f"UPDATE {GAPS.name} SET last_missing = {m} WHERE {stream} = {m} "
                     f"AND {first} = {m} AND {stale}"),
        quarantine_insert=_insert(QUARANTINE, m),
        raw_frame_insert=_insert(RAW_FRAME, m),
        listing_change_insert=(
            f"INSERT INTO {LISTING_CHANGE.name} ({', '.join(c for c, _ in LISTING_CHANGE.columns)})"
            f" VALUES ({', '.join(m for _ in LISTING_CHANGE.columns)})"),
        # Gaps a later backfill can still fill (silences have nothing to fetch).
        unfilled_gaps=(f"SELECT stream, first_missing, last_missing, cause FROM {GAPS.name} "
                       f"WHERE filled_ns IS NULL AND NOT {stale} ORDER BY id"),
        meta_insert=f"INSERT INTO meta (key, value) VALUES ({m}, {m}) ON CONFLICT DO NOTHING",
        meta_select=f"SELECT value FROM meta WHERE key = {m}",
        # Resume points: (the last stored id, open time or final update id; whether complete).
        # A kline resumes from its last stored candle, closed or not: an unclosed one (a crash
        # or a run shorter than one interval) is fetched again, complete.
        last_id={
            StreamKind.AGG_TRADE: f"SELECT MAX(agg_id), 1 FROM agg_trade WHERE symbol = {m}",
            StreamKind.TRADE: f"SELECT MAX(trade_id), 1 FROM trade WHERE symbol = {m}",
            StreamKind.KLINE: f"SELECT open_time, is_closed FROM kline WHERE symbol = {m} "
                              f"AND interval = {m} ORDER BY open_time DESC LIMIT 1",
            StreamKind.DIFF_DEPTH: f"SELECT MAX(final_update_id), 1 FROM depth_update "
                                   f"WHERE symbol = {m}",
        },
    )
