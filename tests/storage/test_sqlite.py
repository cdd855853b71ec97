"""SQLite storage: idempotent batches, exact values, schema versions and storage faults."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from binance_streamer.core.tables import AGG_TRADE, TABLES
from binance_streamer.errors import InvalidDatabase, SchemaTooNew, StorageBusy, StorageFatal
from binance_streamer.storage.base import Batch, WriteResult
from binance_streamer.storage.query import query
from binance_streamer.storage.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    TIME_INDEXES,
    insert_sql,
    migrations,
)
from binance_streamer.storage.sqlite import SqliteSink, last_ids
from binance_streamer.storage.writer import Writer
from tests.helpers import TIMEOUT, batch_of, frames
from tests.storage.helpers import EXPECTED_GAPS, GAPS_SQL, gaps_after_silences


def test_a_batch_written_twice_is_stored_once(db_path: Path) -> None:
    """Re-delivered events (same natural key) are ignored: 400 aggTrades stay 400 rows."""
    sink = SqliteSink(db_path)
    first = sink.write(batch_of("binance_spot_aggTrade.head400.jsonl"))
    second = sink.write(batch_of("binance_spot_aggTrade.head400.jsonl", received_ns=2))
    sink.close()
    assert first.stored == {"agg_trade": 400} and second.stored == {"agg_trade": 0}
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT COUNT(*), MIN(received_ns), MAX(received_ns) FROM agg_trade"
                        ).fetchone() == (400, 1, 1)


def test_exact_decimals_zero_and_null_survive(db_path: Path) -> None:
    """Price strings come back byte-identical, 0 stays 0 and an absent field stays NULL."""
    sink = SqliteSink(db_path)
    sink.write(Batch(rows={"trade": [
        ("BTCUSDT", 1, "58001.03000000", "0.00000000", 0, False, None, 0, 5, "ws")]}))
    sink.close()
    row = sqlite3.connect(db_path).execute(
        "SELECT price, quantity, trade_time, buyer_is_maker, best_match, event_time FROM trade"
    ).fetchone()
    assert row == ("58001.03000000", "0.00000000", 0, 0, None, 0)


def test_kline_updates_win_until_the_candle_closes(db_path: Path) -> None:
    """A later update of an open candle replaces it; once closed, later copies change nothing."""
    sink = SqliteSink(db_path)
    base = ("BTCUSDT", "1m", 60_000, 119_999, 1, 2, "1", "2", "3", "0.5", "10", 2)
    def kline(close: str, closed: bool, event_time: int) -> tuple[object, ...]:
        return (*base[:7], close, *base[8:], closed, "q", "V", "Q", event_time, 1, "ws")
    sink.write(Batch(rows={"kline": [kline("2", False, 100)]}))
    sink.write(Batch(rows={"kline": [kline("3", False, 200), kline("4", True, 300)]}))
    sink.write(Batch(rows={"kline": [kline("5", False, 250)]}))
    sink.close()
    assert sqlite3.connect(db_path).execute(
        "SELECT close, is_closed, event_time FROM kline").fetchall() == [("4", 1, 300)]


def test_schema_is_versioned_and_has_every_table(db_path: Path) -> None:
    """A new database is at the current schema version with all market and bookkeeping tables."""
    SqliteSink(db_path).close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {t.name for t in TABLES} | {"gaps", "quarantine", "raw_frame", "market_data"} <= names
    assert migrations(SCHEMA_VERSION, "sqlite") == []


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    """A database written by a newer version raises SchemaTooNew and is not touched."""
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(SchemaTooNew, match="upgrade binance-streamer") as raised:
        SqliteSink(db_path)
    assert (raised.value.found, raised.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert db_path.read_bytes() == before
    with pytest.raises(SchemaTooNew):
        migrations(SCHEMA_VERSION + 1, "postgres")


def test_market_data_view_has_the_tutorial_columns(db_path: Path) -> None:
    """The tutorial's (id, symbol, price, timestamp) are a view over stored tickers."""
    sink = SqliteSink(db_path)
    sink.write(batch_of("binance_spot_24hrTicker.singletons.jsonl"))
    sink.close()
    conn = sqlite3.connect(db_path)
    cur = conn.execute("SELECT * FROM market_data")
    assert [d[0] for d in cur.description] == ["id", "symbol", "price", "timestamp"]
    assert cur.fetchall() == [(1, "BTCUSDT", 9318.48, 1592593727005)]


def test_last_ids_give_resume_points(db_path: Path) -> None:
    """The last stored aggregate id per stream (always complete) is what a restart resumes from."""
    sink = SqliteSink(db_path)
    sink.write(batch_of("binance_spot_aggTrade.head400.jsonl"))
    found = sink.last_ids(
        ["btcusdt@aggTrade", "ethusdt@aggTrade", "xyz@aggTrade", "btcusdt@ticker"])
    sink.close()
    rows = [r for r in frames("binance_spot_aggTrade.head400.jsonl") if b"btcusdt" in r[:30]]
    assert found["btcusdt@aggTrade"] == (
        max(int(r.split(b'"a":')[1].split(b",")[0]) for r in rows), True)
    assert "xyz@aggTrade" not in found and "btcusdt@ticker" not in found
    assert last_ids(sqlite3.connect(db_path), ["ethusdt@aggTrade"]) == {
        "ethusdt@aggTrade": found["ethusdt@aggTrade"]}


def test_a_locked_database_raises_busy_and_then_succeeds(db_path: Path) -> None:
    """While another connection holds the write lock, writes raise StorageBusy; then they pass."""
    sink = SqliteSink(db_path)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StorageBusy):
        sink.write(batch_of("binance_spot_trade.singletons.jsonl"))
    other.execute("COMMIT")
    assert sink.write(batch_of("binance_spot_trade.singletons.jsonl")).stored == {"trade": 1}
    sink.close()


async def test_the_writer_retries_a_locked_database_without_losing_rows(db_path: Path) -> None:
    """The writer keeps retrying through a lock and stores every row once the lock is released."""
    sink = SqliteSink(db_path)
    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    written: asyncio.Queue[WriteResult] = asyncio.Queue()
    writer = Writer(sink, asyncio.get_running_loop(), lambda b, r: written.put_nowait(r),
                    lambda e: pytest.fail(str(e)), busy_delays=lambda: iter(lambda: 0.01, None))
    retried = threading.Event()
    original = sink.write
    def write(batch: Batch) -> WriteResult:
        try:
            return original(batch)
        except StorageBusy:
            retried.set()
            raise
    sink.write = write  # type: ignore[method-assign]
    writer.start()
    writer.submit(batch_of("binance_spot_aggTrade.head400.jsonl"))
    assert await asyncio.to_thread(retried.wait, TIMEOUT)
    other.execute("COMMIT")
    result = await asyncio.wait_for(written.get(), TIMEOUT)
    await writer.close()
    assert result.stored == {"agg_trade": 400} and writer.busy_retries >= 1


def test_a_read_only_connection_is_fatal_for_writes(db_path: Path) -> None:
    """A database that refuses writes (opened read-only) gives StorageFatal, not a crash."""
    sink = SqliteSink(db_path)
    sink._conn.close()
    sink._conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(StorageFatal, match="readonly"):
        sink.write(batch_of("binance_spot_trade.singletons.jsonl"))


def test_a_path_under_a_regular_file_is_invalid(tmp_path: Path) -> None:
    """A database path whose folder would have to be inside a regular file is InvalidDatabase."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidDatabase, match="does not exist; create it first"):
        SqliteSink(blocker / "sub" / "x.db")
    assert blocker.read_text() == "x"


def test_a_full_disk_is_fatal(db_path: Path) -> None:
    """When SQLite reports the disk full (max_page_count reached), the write is StorageFatal."""
    sink = SqliteSink(db_path)
    pages = sink._conn.execute("PRAGMA page_count").fetchone()[0]
    sink._conn.execute(f"PRAGMA max_page_count={pages + 1}")
    with pytest.raises(StorageFatal, match="full"):
        sink.write(batch_of("binance_spot_depthUpdate_100ms.head600.jsonl"))
    assert sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM depth_update").fetchone() == (0,)


def test_multi_row_inserts_respect_the_variable_limit(db_path: Path) -> None:
    """With SQLite's default limit of 32,766 variables, 5,000 tickers are still stored at once."""
    sink = SqliteSink(db_path)
    sink._conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)
    [ticker] = batch_of("binance_spot_24hrTicker.singletons.jsonl").rows["ticker"]
    rows = [(ticker[0], i, *ticker[2:]) for i in range(5_000)]
    assert sink.write(Batch(rows={"ticker": rows})).stored == {"ticker": 5_000}
    sink.close()


def test_a_value_sqlite_cannot_bind_is_fatal_not_a_hang(db_path: Path) -> None:
    """A row SQLite cannot bind (an int beyond 64 bits) rolls the batch back and raises."""
    sink = SqliteSink(db_path)
    good = batch_of("binance_spot_trade.singletons.jsonl").rows["trade"][0]
    with pytest.raises(OverflowError):
        sink.write(Batch(rows={"trade": [good, (good[0], 2**70, *good[2:])]}))
    assert not sink._conn.in_transaction
    assert sink.write(Batch(rows={"trade": [good]})).stored == {"trade": 1}
    sink.close()


class BrokenSink:
    """A sink whose writes fail with an error no storage layer anticipated."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, batch: Batch) -> WriteResult:
        self.writes += 1
        raise RuntimeError("disk controller on fire")

    def close(self) -> None:
        pass


async def test_any_writer_error_is_fatal_and_accounted_for() -> None:
    """An unexpected exception in the writer reports StorageFatal once; later batches are
    skipped but counted down, so nothing waits forever."""
    fatal: asyncio.Queue[Exception] = asyncio.Queue()
    sink = BrokenSink()
    writer = Writer(sink, asyncio.get_running_loop(), lambda b, r: pytest.fail("written"),
                    fatal.put_nowait)  # type: ignore[arg-type]
    writer.start()
    for _ in range(3):
        writer.submit(batch_of("binance_spot_trade.singletons.jsonl"))
    error = await asyncio.wait_for(fatal.get(), TIMEOUT)
    await writer.close()
    assert isinstance(error, StorageFatal) and "disk controller on fire" in str(error)
    assert sink.writes == 1 and writer.pending == 0 and fatal.empty()


def test_a_silence_end_extends_only_its_stale_gap_in_sqlite(db_path: Path) -> None:
    """A silence end sets last_missing of its 'stale' gap, atomically with its batch; other
    gaps keep theirs."""
    def read() -> list[tuple[object, ...]]:
        return sqlite3.connect(db_path).execute(GAPS_SQL).fetchall()
    assert gaps_after_silences(SqliteSink(db_path), read) == EXPECTED_GAPS


class NotingSink:
    """A sink noting which thread wrote and closed it, in order."""

    def __init__(self, close_error: Exception | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.close_error = close_error

    def write(self, batch: Batch) -> WriteResult:
        self.calls.append(("write", threading.current_thread().name))
        return WriteResult({})

    def close(self) -> None:
        self.calls.append(("close", threading.current_thread().name))
        if self.close_error is not None:
            raise self.close_error


async def test_the_writer_thread_closes_the_sink_as_its_last_act() -> None:
    """The sink is closed on the writer thread, after the last batch, before close() returns."""
    sink = NotingSink()
    writer = Writer(sink, asyncio.get_running_loop(), lambda b, r: None,  # type: ignore[arg-type]
                    lambda e: pytest.fail(str(e)))
    writer.start()
    writer.submit(batch_of("binance_spot_trade.singletons.jsonl"))
    await writer.close()
    assert sink.calls == [("write", "writer"), ("close", "writer")]
    assert writer.failed is None


async def test_a_failing_close_is_reported_as_fatal() -> None:
    """An error while the writer thread closes the sink reaches on_fatal as a StorageError."""
    fatal: list[Exception] = []
    sink = NotingSink(close_error=RuntimeError("fsync failed"))
    writer = Writer(sink, asyncio.get_running_loop(), lambda b, r: None,  # type: ignore[arg-type]
                    fatal.append)
    writer.start()
    await writer.close()  # the thread queued on_fatal before it ended, so it has run
    assert [type(e) for e in fatal] == [StorageFatal] and "fsync failed" in str(fatal[0])
    assert writer.failed is fatal[0]


def test_resume_points_of_klines_and_depth(db_path: Path) -> None:
    """A kline stream resumes from its newest stored candle, closed or not; a diff-depth stream
    from its newest stored final update id."""
    sink = SqliteSink(db_path)
    sink.write(batch_of("binance_spot_kline_1m.0404.jsonl"))
    sink.write(batch_of("binance_spot_depthUpdate_100ms.head600.jsonl"))
    found = sink.last_ids(["ethusdt@kline_1m", "ethusdt@kline_5m", "btcusdt@depth@100ms"])
    sink.close()
    assert found["ethusdt@kline_1m"] == (1617566640000, False)
    assert "ethusdt@kline_5m" not in found
    depth = [json.loads(f)["data"] for f in frames("binance_spot_depthUpdate_100ms.head600.jsonl")]
    assert found["btcusdt@depth@100ms"] == (max(d["u"] for d in depth if d["s"] == "BTCUSDT"),
                                            True)


def test_a_version_1_database_gains_the_read_indexes_on_open(db_path: Path) -> None:
    """A schema-1 database is read as it is, and opening it for recording migrates it to the
    current version: the read indexes exist and the stored rows are intact."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    for sql in MIGRATIONS[1]("sqlite"):
        conn.execute(sql)
    conn.execute("PRAGMA user_version=1")
    conn.executemany(insert_sql(AGG_TRADE, "sqlite"),
                     batch_of("binance_spot_aggTrade.head400.jsonl").rows["agg_trade"])
    conn.close()
    before = query(db_path, "aggTrade").rows
    assert len(before) == 400
    SqliteSink(db_path).close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    indexes = {name: sql for name, sql in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND name LIKE '%by_time'")}
    assert set(indexes) == {f"{t}_by_time" for t in TIME_INDEXES}
    assert '("symbol", "trade_time")' in indexes["block_trade_by_time"]
    assert query(db_path, "aggTrade").rows == before
