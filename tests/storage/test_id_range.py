"""Time ranges found by bisecting the natural key (storage/id_range.py), and schema version 4,
which drops the read indexes it replaces."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binance_streamer.candles import stored_bars
from binance_streamer.core.tables import AGG_TRADE, BOOK_TICKER, DIFF_DEPTH, TRADE, TableSpec
from binance_streamer.exchange.db_source import ReplayFilter, load_database
from binance_streamer.storage.export_rows import arrow_batches, count_rows, feed_pages, pages
from binance_streamer.storage.export_rows import select as export_select
from binance_streamer.storage.id_range import KEY_ORDERED, id_bounds, key_range_sql
from binance_streamer.storage.open import Reader
from binance_streamer.storage.postgres import PostgresSink
from binance_streamer.storage.query import iter_pages, query
from binance_streamer.storage.schema import (
    BISECTED,
    MIGRATIONS,
    SCHEMA_VERSION,
    TIME_COLUMN,
    TIME_INDEXES,
    insert_sql,
)
from binance_streamer.storage.sqlite import SqliteSink

SPECS: dict[str, TableSpec] = {t.name: t for t in (TRADE, AGG_TRADE, DIFF_DEPTH, BOOK_TICKER)}
SECOND_NS = 1_000_000_000
MARGIN = KEY_ORDERED["book_ticker"].margin


def row_of(spec: TableSpec, symbol: str, key: int, time: int) -> tuple[Any, ...]:
    """A row of ``spec`` with natural key ``key`` and time column ``time``."""
    order = KEY_ORDERED[spec.name]
    values: dict[str, Any] = {"symbol": symbol, order.key: key, order.time: time,
                              "source": "ws", "received_ns": time * 1_000_000}
    if spec.name == "book_ticker":
        values["received_ns"] = time
    if spec.name == "depth_update":
        values["first_update_id"] = key
    default = {"BOOLEAN": False, "INTEGER": 0, "BIGINT": 0}
    return tuple(values.get(c, default.get(kind, "1")) for c, kind in spec.columns)


@pytest.fixture(scope="module")
def mem() -> Iterator[sqlite3.Connection]:
    """A schema-4 database in memory, emptied by each example."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for version in range(1, SCHEMA_VERSION + 1):
        for sql in MIGRATIONS[version]("sqlite"):
            conn.execute(sql)
    yield conn
    conn.close()


@st.composite
def series(draw: st.DrawFn, inverted: bool) -> tuple[list[int], list[int]]:
    """Keys (increasing, with holes) and times (non-decreasing with duplicates; with
    ``inverted``, running backwards by up to the book ticker's margin)."""
    n = draw(st.integers(0, 60))
    steps = draw(st.lists(st.integers(1, 1 << draw(st.integers(0, 40))), min_size=n, max_size=n))
    first = draw(st.integers(0, 1 << 40))
    keys = [first + sum(steps[:i + 1]) for i in range(n)]
    unit = SECOND_NS if inverted else 1
    base = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    times = [sum(base[:i + 1]) * unit * 20 for i in range(n)]
    if inverted:  # monotone plus noise in [0, margin]: no row is later than a later-keyed one
        noise = draw(st.lists(st.integers(0, MARGIN), min_size=n, max_size=n))
        times = [t + e for t, e in zip(times, noise, strict=True)]
    return keys, times


def bound(data: st.DataObject, times: list[int]) -> int | None:
    """None, a stored time, or one around or outside the data."""
    span = max(times, default=0) - min(times, default=0)
    edge = (min(times, default=0) - 2 * MARGIN, max(times, default=0) + 2 * MARGIN + span)
    return data.draw(st.one_of(st.none(), st.sampled_from(times or [0]),
                               st.integers(*edge)))


def fill(conn: sqlite3.Connection, spec: TableSpec, keys: list[int], times: list[int]) -> None:
    conn.execute("BEGIN")
    for table in SPECS:
        conn.execute(f"DELETE FROM {table}")
    rows = [row_of(spec, "BTCUSDT", k, t) for k, t in zip(keys, times, strict=True)]
    # Other symbols interleaved, with their own ids and times: never in BTCUSDT's ranges.
    rows += [row_of(spec, s, k, t + 7) for s in ("AAAUSDT", "ZZZUSDT")
             for k, t in zip(keys, times, strict=True)]
    conn.executemany(insert_sql(spec, "sqlite"), rows)
    conn.execute("COMMIT")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=st.sampled_from(sorted(SPECS)), data=st.data())
def test_the_key_range_holds_exactly_the_rows_in_the_time_range(
        mem: sqlite3.Connection, table: str, data: st.DataObject) -> None:
    """The rows of the bisected key range with the time predicate kept are exactly those of
    a brute-force time filter: duplicate times, holes in the ids, empty ranges, bounds outside
    the data, and book ticker receive times inverted by up to the margin."""
    spec = SPECS[table]
    keys, times = data.draw(series(inverted=table == "book_ticker"))
    since, until = bound(data, times), bound(data, times)
    fill(mem, spec, keys, times)
    expected = [k for k, t in zip(keys, times, strict=True)
                if (since is None or t >= since) and (until is None or t < until)]
    bounds = id_bounds(Reader(mem, "?"), table, "BTCUSDT", since, until)
    if bounds is None:
        assert expected == []
        return
    lo, hi = bounds
    found = [k for k, t in zip(keys, times, strict=True) if lo <= k < hi
             and (since is None or t >= since) and (until is None or t < until)]
    assert found == expected
    assert lo in keys and (hi in keys or hi == max(keys) + 1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=st.sampled_from(sorted(SPECS)), data=st.data())
def test_every_reader_gives_the_rows_of_a_brute_force_filter(
        mem: sqlite3.Connection, table: str, data: st.DataObject) -> None:
    """query's pages, export's pages, count and feed give the symbol's rows in the time
    range (epoch ms), in key order."""
    spec, order = SPECS[table], KEY_ORDERED[table]
    keys, times = data.draw(series(inverted=table == "book_ticker"))
    fill(mem, spec, keys, times)
    since, until = bound(data, times), bound(data, times)
    scale = 1_000_000 if order.time == "received_ns" else 1
    since_ms, until_ms = (None if b is None else b // scale for b in (since, until))
    expected = [k for k, t in zip(keys, times, strict=True)
                if (since_ms is None or t >= since_ms * scale)
                and (until_ms is None or t < until_ms * scale)]
    key_at = spec.column_names.index(order.key)
    got = [r[key_at + 1] for p in iter_pages(mem, table, "btcusdt", since_ms, until_ms,
                                               page_size=7) for r in p]
    assert got == expected
    sel = export_select(table, ["BTCUSDT", "ZZZUSDT"], since_ms, until_ms, "?", 1)
    exported = [(r[0], r[key_at]) for p in pages(mem, sel, "?", page_rows=5) for r in p]
    assert [k for s, k in exported if s == "BTCUSDT"] == expected
    assert count_rows(mem, sel) == len(exported)
    if table == "book_ticker":
        fed = [r[key_at] for p in feed_pages(mem, sel, "?") for r in p if r[0] == "BTCUSDT"]
        assert sorted(fed) == expected


def test_candles_read_the_trades_of_the_range(mem: sqlite3.Connection) -> None:
    """ohlcv's trades of [since, until) come from the bisected id range."""
    keys = [10, 11, 15, 40, 41, 42, 90]
    times = [1000, 1000, 1500, 2000, 2000, 2999, 3000]
    fill(mem, TRADE, keys, times)
    bars = list(stored_bars(mem, "BTCUSDT", "trade", 1000, 3000))
    assert [b.last_trade_id for b in bars] == keys[:-1]
    assert list(stored_bars(mem, "BTCUSDT", "trade", 3001, 4000)) == []
    assert [b.last_trade_id for b in stored_bars(mem, "BTCUSDT", "trade", None, 2000)] == keys[:3]


def test_key_range_sql_is_one_index_range_per_symbol() -> None:
    assert key_range_sql("trade", {}, "?") == ("1 = 0", [])
    sql, params = key_range_sql("trade", {"A": (1, 5), "B": (7, 9)}, "%s")
    assert sql == ('((symbol = %s AND "trade_id" >= %s AND "trade_id" < %s) OR '
                   '(symbol = %s AND "trade_id" >= %s AND "trade_id" < %s))')
    assert params == ["A", 1, 5, "B", 7, 9]


def test_the_bisected_tables_are_those_without_a_read_index() -> None:
    assert set(KEY_ORDERED) == set(BISECTED)
    assert not set(KEY_ORDERED) & set(TIME_INDEXES)
    assert all(TIME_COLUMN[t] == o.time for t, o in KEY_ORDERED.items())


def test_a_symbol_without_rows_has_no_range(mem: sqlite3.Connection) -> None:
    fill(mem, TRADE, [1, 2], [5, 6])
    assert id_bounds(Reader(mem, "?"), "trade", "ETHUSDT", 0, 10) is None
    assert id_bounds(Reader(mem, "?"), "trade", "BTCUSDT", None, None) == (1, 3)


def test_probes_grow_with_the_log_of_the_id_span(mem: sqlite3.Connection) -> None:
    """One symbol's range is found in a few dozen indexed probes, whatever the row count."""
    keys = list(range(0, 2_000_000, 3))
    fill(mem, AGG_TRADE, keys, keys)
    statements: list[str] = []
    mem.set_trace_callback(statements.append)
    bounds = id_bounds(Reader(mem, "?"), "agg_trade", "BTCUSDT", 1_000_000, 1_000_300)
    mem.set_trace_callback(None)
    assert bounds == (1_000_002, 1_000_302)
    assert len(statements) <= 2 * 22 + 3
    plans = {r[-1] for s in statements for r in mem.execute(f"EXPLAIN QUERY PLAN {s}")}
    assert not any(p.startswith("SCAN agg_trade") for p in plans), plans


# -- schema version 4 ------------------------------------------------------------------------


def version_3_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for version in (1, 2, 3):
        for sql in MIGRATIONS[version]("sqlite"):
            conn.execute(sql)
    conn.execute("PRAGMA user_version=3")
    fill(conn, TRADE, [5, 6, 9], [100, 200, 300])
    conn.executemany(insert_sql(BOOK_TICKER, "sqlite"),
                     [row_of(BOOK_TICKER, "BTCUSDT", k, k * SECOND_NS) for k in (1, 2, 3)])
    conn.close()


def by_time_indexes(conn: Any, postgres: bool = False) -> set[str]:
    sql = ("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%\\_by\\_time'" if postgres
           else "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%by_time'")
    return {r[0] for r in conn.execute(sql)}


def test_a_version_3_sqlite_database_loses_the_bisected_indexes_on_open(db_path: Path) -> None:
    """Read as it is (indexes and all), then migrated by opening it for recording: the
    indexes of the bisected tables are gone, the others kept, the rows intact and read alike."""
    version_3_sqlite(db_path)
    with sqlite3.connect(db_path) as conn:
        assert by_time_indexes(conn) == {f"{t}_by_time" for t in (*TIME_INDEXES, *BISECTED)}
    reads = [query(db_path, "trade", "BTCUSDT", 150, 301).rows,
             query(db_path, "bookTicker", "BTCUSDT", 2000, 3001).rows]
    assert [[r[2] for r in rows] for rows in reads] == [[6, 9], [2, 3]]
    SqliteSink(db_path).close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        assert by_time_indexes(conn) == {f"{t}_by_time" for t in TIME_INDEXES}
        assert conn.execute("SELECT COUNT(*) FROM trade").fetchone() == (9,)
    assert [query(db_path, "trade", "BTCUSDT", 150, 301).rows,
            query(db_path, "bookTicker", "BTCUSDT", 2000, 3001).rows] == reads


def test_a_version_3_postgres_database_loses_the_bisected_indexes_on_open(pg_url: str) -> None:
    rows = [row_of(TRADE, s, k, t) for s in ("BTCUSDT", "ETHUSDT")
            for k, t in ((5, 100), (6, 200), (9, 300))]
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version in (1, 2, 3):
            for sql in MIGRATIONS[version]("postgres"):
                conn.execute(sql)
            conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
        conn.cursor().executemany(insert_sql(TRADE, "postgres"), rows)
        assert by_time_indexes(conn, True) >= {f"{t}_by_time" for t in BISECTED}
    before = query(pg_url, "trade", "BTCUSDT", 150, 301).rows
    PostgresSink(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone() == (4,)
        assert by_time_indexes(conn, True) == {f"{t}_by_time" for t in TIME_INDEXES}
        stored = conn.execute(f"SELECT {', '.join(TRADE.column_names)} FROM trade "
                              "ORDER BY id").fetchall()
        assert stored == rows
        reader = Reader(conn, "%s")
        assert id_bounds(reader, "trade", "BTCUSDT", 150, 301) == (6, 10)
        assert id_bounds(reader, "trade", "BTCUSDT", 301, None) is None
    after = query(pg_url, "trade", "BTCUSDT", 150, 301).rows
    assert [r[1:] for r in after] == [r[1:] for r in before]
    assert [r[2] for r in after] == [6, 9]


def test_a_replay_of_a_database_takes_the_rows_of_the_range(db_path: Path) -> None:
    """replay --data db: live book tickers by receive time and backfilled trades by trade
    time, of the symbols asked, within the bisected key ranges."""
    SqliteSink(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    tickers = [(k, k * SECOND_NS - (k % 3) * SECOND_NS) for k in range(1, 200)]  # inverted
    conn.executemany(insert_sql(BOOK_TICKER, "sqlite"),
                     [row_of(BOOK_TICKER, s, k, t) for s in ("BTCUSDT", "ETHUSDT")
                      for k, t in tickers])
    trades = [row_of(TRADE, s, k, 1000 * k)[:-1] + ("rest",) for s in ("BTCUSDT", "ETHUSDT")
              for k in range(1, 200)]
    conn.executemany(insert_sql(TRADE, "sqlite"), trades)
    conn.close()
    flt = ReplayFilter(symbols=("btcusdt",), since_ms=50_000, until_ms=120_000)
    src = load_database(db_path, flt)
    live = [i.payload["u"] for i in src.items if i.stream]
    assert sorted(live) == [k for k, t in tickers if 50 * SECOND_NS <= t < 120 * SECOND_NS]
    assert {i.payload["s"] for i in src.items} == {"BTCUSDT"}
    assert sorted(i.payload["t"] for i in src.items if not i.stream) == list(range(50, 120))


def test_readers_give_the_same_rows_from_postgres(pg_url: str) -> None:
    """query, export (pages, count, feed) and candles on PostgreSQL, through the bisected
    key ranges."""
    PostgresSink(pg_url).close()
    keys = [3, 4, 8, 20, 21, 22, 50, 51]
    times = [100, 100, 150, 200, 260, 260, 300, 400]
    with psycopg.connect(pg_url) as conn:
        cur = conn.cursor()
        for spec in (TRADE, BOOK_TICKER):
            cur.executemany(insert_sql(spec, "postgres"),
                            [row_of(spec, s, k, t * (1_000_000 if spec is BOOK_TICKER else 1))
                             for s in ("BTCUSDT", "ETHUSDT") for k, t in zip(keys, times,
                                                                             strict=True)])
    with psycopg.connect(pg_url) as conn:
        got = [r[2] for p in iter_pages(conn, "trade", "BTCUSDT", 150, 300, mark="%s",
                                        page_size=2) for r in p]
        assert got == [8, 20, 21, 22]
        assert list(iter_pages(conn, "trade", "BTCUSDT", 401, None, mark="%s")) == []
        sel = export_select("trade", ["btcusdt", "ethusdt"], 150, 300, "%s", 1)
        assert [(r[0], r[1]) for p in pages(conn, sel, "%s") for r in p] == [
            (s, k) for s in ("BTCUSDT", "ETHUSDT") for k in (8, 20, 21, 22)]
        assert count_rows(conn, sel) == 8
        feed = export_select("book_ticker", ["BTCUSDT"], 150, 300, "%s", 1, by_receive_time=True)
        assert [r[1] for p in feed_pages(conn, feed, "%s") for r in p] == [8, 20, 21, 22]
        bars = stored_bars(conn, "BTCUSDT", "trade", 150, 300, mark="%s")
        assert [b.last_trade_id for b in bars] == [8, 20, 21, 22]


def test_arrow_batches_read_each_symbols_key_range(db_path: Path) -> None:
    """export's columnar path (ADBC) reads the same rows as its pages, symbol by symbol."""
    pytest.importorskip("adbc_driver_sqlite")
    SqliteSink(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    fill(conn, AGG_TRADE, [3, 4, 8, 20, 21], [100, 150, 150, 200, 300])
    sel = export_select("agg_trade", ["ZZZUSDT", "BTCUSDT"], 150, 300, "?", 1)
    expected = [r for p in pages(conn, sel, "?") for r in p]
    conn.close()
    batches = arrow_batches(db_path, sel)
    assert batches is not None
    got = [row for b in batches for row in zip(*(c.to_pylist() for c in b.columns), strict=True)]
    assert [(r[0], r[1]) for r in got] == [(r[0], r[1]) for r in expected] == [
        ("BTCUSDT", 4), ("BTCUSDT", 8), ("BTCUSDT", 20), ("ZZZUSDT", 4), ("ZZZUSDT", 8),
        ("ZZZUSDT", 20)]
