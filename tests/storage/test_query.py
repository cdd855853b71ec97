"""Reading a recording back: what is refused, read-only folders, odd paths, booleans."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

import psycopg
import pytest

from binance_streamer.core.streams import kind_names
from binance_streamer.errors import ConfigError, InvalidDatabase, InvalidStreamName, MissingExtra
from binance_streamer.storage.base import Batch
from binance_streamer.storage.id_range import KEY_ORDERED
from binance_streamer.storage.postgres import PostgresSink
from binance_streamer.storage.query import (
    Selection,
    iter_pages,
    iter_rows,
    query,
    read_rows,
    select,
    table_for,
)
from binance_streamer.storage.schema import TIME_INDEXES
from binance_streamer.storage.sqlite import SqliteSink
from tests.helpers import batch_of
from tests.storage.helpers import outcome, unprivileged


def recorded(db: Path) -> Path:
    """``db`` holding 400 aggTrades, closed as a recorder leaves it."""
    sink = SqliteSink(db)
    sink.write(batch_of("binance_spot_aggTrade.head400.jsonl"))
    sink.close()
    return db


def test_a_missing_file_is_invalid_and_not_created(tmp_path: Path) -> None:
    """Reading a path where nothing exists is InvalidDatabase 'no database at', creating nothing."""
    with pytest.raises(InvalidDatabase, match=r"no database at .*missing\.db"):
        query(tmp_path / "missing.db")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_file_holds_no_recording(tmp_path: Path) -> None:
    """A 0-byte file is InvalidDatabase 'holds no recording' and stays 0 bytes."""
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(InvalidDatabase, match=r"empty\.db holds no recording"):
        query(empty)
    assert empty.stat().st_size == 0


def test_a_text_file_is_not_read(tmp_path: Path) -> None:
    """A file that is not SQLite is InvalidDatabase."""
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    with pytest.raises(InvalidDatabase, match=r"notes\.txt is not a SQLite database"):
        query(notes)


def test_another_programs_sqlite_file_is_not_read(tmp_path: Path) -> None:
    """Another program's SQLite file is InvalidDatabase listing its tables."""
    other = tmp_path / "other.db"
    sqlite3.connect(other).executescript("CREATE TABLE ticker (x); CREATE TABLE z (y);")
    with pytest.raises(InvalidDatabase, match=r"another program \(tables: ticker, z\)"):
        query(other)


def test_other_schemes_and_folders_are_invalid(tmp_path: Path) -> None:
    """A mysql:// URL and a folder are InvalidDatabase for reading too."""
    with pytest.raises(InvalidDatabase, match="postgresql:// URL"):
        query("mysql://u@h/db")
    with pytest.raises(InvalidDatabase, match="is a folder"):
        query(tmp_path)


def test_postgres_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a postgresql:// URL without psycopg raises MissingExtra('postgres')."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingExtra, match="postgres"):
        query("postgresql://u@h/db")


def test_an_empty_postgres_database_holds_no_recording(pg_url: str) -> None:
    """A PostgreSQL database never recorded into is InvalidDatabase 'holds no recording'."""
    with pytest.raises(InvalidDatabase, match="holds no recording"):
        query(pg_url)


def test_an_unknown_stream_kind_lists_the_known_ones(db_path: Path) -> None:
    """An unknown kind is InvalidStreamName (a ConfigError) listing every known kind."""
    with pytest.raises(InvalidStreamName) as raised:
        query(recorded(db_path), "tickr")
    assert isinstance(raised.value, ConfigError)
    assert "'tickr'" in str(raised.value) and ", ".join(kind_names()) in str(raised.value)
    assert table_for("!miniTicker@arr") == "mini_ticker" and table_for("gaps") == "gaps"


@pytest.mark.parametrize("name", ["a#b.db", "q?mode=rw.db", "50%.db", "%23#.db"])
def test_odd_characters_in_paths_are_read(tmp_path: Path, name: str) -> None:
    """Paths with '#', '?' or '%' are read, and reading leaves no file behind (not even -wal)."""
    recorded(tmp_path / name)
    assert len(query(tmp_path / name, "aggTrade").rows) == 400
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_read_only_file_is_readable_without_side_files(tmp_path: Path) -> None:
    """A recording we may not write is read, and no -wal or -shm file is left next to it."""
    db = recorded(tmp_path / "x.db")
    db.chmod(0o444)
    out = unprivileged("from binance_streamer.storage.query import query\n"
                       + outcome(f"print(len(query({str(db)!r}, 'aggTrade').rows))"))
    assert out == "400\nopened"
    assert [p.name for p in tmp_path.iterdir()] == ["x.db"]


def test_a_read_only_folder_is_readable(tmp_path: Path) -> None:
    """A recording in a read-only folder (no -shm can be created there) is still read."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = recorded(folder / "x.db")
    folder.chmod(0o555)
    try:
        out = unprivileged("from binance_streamer.storage.query import query\n"
                           + outcome(f"print(len(query({str(db)!r}, 'aggTrade').rows))"))
    finally:
        folder.chmod(0o755)
    assert out == "400\nopened"
    assert [p.name for p in folder.iterdir()] == ["x.db"]


def test_a_read_only_folder_with_a_pending_log_says_what_to_do(tmp_path: Path) -> None:
    """A WAL still holding rows in a read-only folder gives InvalidDatabase saying to copy both."""
    live = recorded(tmp_path / "live.db")
    sink = SqliteSink(live)
    sink.write(batch_of("binance_spot_trade.singletons.jsonl"))
    folder = tmp_path / "ro"  # what a crash mid-recording leaves: the database and its WAL
    folder.mkdir()
    db = folder / "x.db"
    shutil.copyfile(live, db)
    shutil.copyfile(f"{live}-wal", f"{db}-wal")
    sink.close()
    assert Path(f"{db}-wal").stat().st_size > 0
    folder.chmod(0o555)
    try:
        out = unprivileged("from binance_streamer.storage.query import query\n"
                           + outcome(f"query({str(db)!r}, 'trade')"))
    finally:
        folder.chmod(0o755)
    assert out.startswith("InvalidDatabase: cannot read ") and "x.db-wal" in out
    assert len(query(db, "trade").rows) == 1  # in a writable folder the same files are read


def test_booleans_are_bools_from_sqlite(db_path: Path) -> None:
    """SQLite's 0/1 in BOOLEAN columns come back as False/True; NULL stays None."""
    sink = SqliteSink(db_path)
    sink.write(batch_of("binance_spot_aggTrade.head400.jsonl"))
    sink.close()
    result = query(db_path, "aggTrade", limit=1)
    row = dict(zip(result.columns, result.rows[0], strict=True))
    assert row["buyer_is_maker"] is True and row["best_match"] is True
    conn = sqlite3.connect(db_path)
    raw = read_rows(conn, "agg_trade", limit=1)
    assert raw.rows == result.rows


def test_booleans_are_bools_from_postgres(pg_url: str) -> None:
    """PostgreSQL and SQLite give the same Python bools for the same rows."""
    sink = PostgresSink(pg_url)
    sink.write(batch_of("binance_spot_kline_1m.0404.jsonl"))
    sink.close()
    result = query(pg_url, "kline_1m")
    closed = [r[result.columns.index("is_closed")] for r in result.rows]
    assert set(closed) == {True, False} and all(type(c) is bool for c in closed)
    with psycopg.connect(pg_url) as conn:
        assert read_rows(conn, "kline", mark="%s").rows == result.rows


@pytest.mark.parametrize("symbol", [None, "BTCUSDT"])
def test_pages_follow_each_other_in_time_order(db_path: Path, symbol: str | None) -> None:
    """iter_pages reads pages of page_size rows that together are every row in (time, id) order,
    one statement per page (with a symbol) or one cursor (without)."""
    conn = sqlite3.connect(recorded(db_path))
    expected = [r[0] for r in conn.execute(
        "SELECT id FROM agg_trade WHERE symbol = coalesce(?, symbol) ORDER BY trade_time, id",
        (symbol,))]
    pages = list(iter_pages(conn, "agg_trade", symbol, page_size=7))
    assert [len(p) for p in pages] == [7] * (len(expected) // 7) + [len(expected) % 7]
    assert [r[0] for p in pages for r in p] == expected
    ties = conn.execute("SELECT COUNT(*) - COUNT(DISTINCT trade_time) FROM agg_trade").fetchone()
    assert ties[0] > 0  # rows sharing a trade time straddle page boundaries too


def test_a_limit_ends_the_pages_exactly(db_path: Path) -> None:
    """A limit across a page boundary gives that many rows: a full page, then the rest."""
    conn = sqlite3.connect(recorded(db_path))
    pages = list(iter_pages(conn, "agg_trade", "BTCUSDT", limit=10, page_size=7))
    assert [len(p) for p in pages] == [7, 3]
    assert [r[2] for p in pages for r in p] == [665076760 + i for i in range(10)]


def test_a_stream_name_selects_its_interval_window_or_depth() -> None:
    """The interval, ticker window or depth a stream name states becomes a filter on its column."""
    assert select("kline_5m") == Selection("kline", (("interval", "5m"),))
    assert select("ticker_1h") == Selection("window_ticker", (("window", "1h"),))
    assert select("!ticker_4h@arr") == Selection("window_ticker", (("window", "4h"),))
    assert select("depth10@100ms") == Selection("partial_depth", (("levels", 10),))
    assert select("aggTrade") == Selection("agg_trade")
    assert select("kline") == Selection("kline") and select("depth") == Selection("depth_update")


def test_partial_depth_levels_are_told_apart(db_path: Path) -> None:
    """--stream depth5 reads the 5-level books and depth20 the 20-level ones."""
    sink = SqliteSink(db_path)
    sink.write(Batch(rows={"partial_depth": [("BTCUSDT", 5, 100, "[]", "[]", 1, "ws"),
                                             ("BTCUSDT", 20, 100, "[]", "[]", 2, "ws")]}))
    sink.close()
    assert [r[2] for r in query(db_path, "depth5").rows] == [5]
    assert [r[2] for r in query(db_path, "depth20@100ms").rows] == [20]


def test_rows_fetched_over_rest_are_in_their_time_range(db_path: Path) -> None:
    """A backfilled aggTrade (no event time) is read in order by its trade time."""
    sink = SqliteSink(db_path)
    sink.write(batch_of("binance_spot_aggTrade.head400.jsonl"))
    [live] = query(db_path, "aggTrade", "BTCUSDT", limit=1).rows
    rest = ("BTCUSDT", live[2] - 1, "1.00000000", "2.00000000", 1, 1, live[7] - 1, False, True,
            None, None, "rest")
    sink.write(Batch(rows={"agg_trade": [rest]}))
    sink.close()
    rows = query(db_path, "aggTrade", "BTCUSDT", since=live[7] - 1, until=live[7] + 1).rows
    assert [(r[2], r[-1]) for r in rows][:2] == [(live[2] - 1, "rest"), (live[2], "ws")]


def test_iter_rows_gives_dicts_in_order(db_path: Path) -> None:
    """iter_rows yields one dict per row, oldest first, as query() returns them."""
    recorded(db_path)
    dicts = list(iter_rows(db_path, "aggTrade", "ETHUSDT"))
    result = query(db_path, "aggTrade", "ETHUSDT")
    assert dicts == [dict(zip(result.columns, r, strict=True)) for r in result.rows]
    assert dicts and dicts[0]["symbol"] == "ETHUSDT"


def test_every_symbol_and_time_read_seeks_an_index(db_path: Path) -> None:
    """Each page query over one symbol and a time range uses an index, with no sort step."""
    recorded(db_path)
    conn = sqlite3.connect(db_path)
    for kind in ("trade", "aggTrade", "blockTrade", "kline_1m", "ticker", "ticker_1h",
                 "miniTicker", "bookTicker", "avgPrice", "referencePrice", "depth5", "depth",
                 "depth_snapshot"):
        sql: list[str] = []
        conn.set_trace_callback(sql.append)
        list(iter_pages(conn, select(kind), "BTCUSDT", 1, 4_102_444_800_000, page_size=150))
        conn.set_trace_callback(None)
        pages = [s for s in sql if s.startswith("SELECT *") and "ORDER BY" in s]
        table = select(kind).table
        index = f"{table}_by_time" if table in TIME_INDEXES else f"sqlite_autoindex_{table}_1"
        # no time index: the natural key's range bisected for the time range (schema v4)
        key = f" AND {KEY_ORDERED[table].key}>?" if table in KEY_ORDERED else ""
        for page in pages:  # the first page, and those after a row (aggTrade has 400 rows)
            plan = " ".join(r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {page}"))
            assert f"USING INDEX {index} (symbol=?{key}" in plan and "B-TREE" not in plan, plan


def test_pages_read_the_same_rows_from_postgres(pg_url: str, db_path: Path) -> None:
    """PostgreSQL gives the same pages in the same order as SQLite."""
    sink = PostgresSink(pg_url)
    sink.write(batch_of("binance_spot_aggTrade.head400.jsonl"))
    sink.close()
    sqlite_pages = list(iter_pages(sqlite3.connect(recorded(db_path)), "agg_trade",
                                   page_size=33))
    with psycopg.connect(pg_url) as conn:
        pg_pages = list(iter_pages(conn, "agg_trade", mark="%s", page_size=33))
    assert [[r[1:] for r in p] for p in pg_pages] == [[r[1:] for r in p] for p in sqlite_pages]
    with psycopg.connect(pg_url) as conn:  # page by page after the last row read
        pg_btc = list(iter_pages(conn, "agg_trade", "BTCUSDT", mark="%s", page_size=33))
    assert [r[1:] for p in pg_btc for r in p] == [
        r[1:] for p in sqlite_pages for r in p if r[1] == "BTCUSDT"]
