"""The SQLite write-ahead log stays bounded while recording and is folded in at close."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from binance_streamer.storage.base import Batch
from binance_streamer.storage.sqlite import SqliteSink
from tests.helpers import batch_of

LIMIT = 256 * 1024


def tickers(start: int, n: int) -> Batch:
    """``n`` new ticker rows (distinct event times from ``start``)."""
    [ticker] = batch_of("binance_spot_24hrTicker.singletons.jsonl").rows["ticker"]
    return Batch(rows={"ticker": [(ticker[0], start + i, *ticker[2:]) for i in range(n)]})


def wal_size(db: Path) -> int:
    """The size of ``db``'s -wal file, 0 when there is none."""
    wal = Path(f"{db}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_the_wal_stays_under_its_limit_however_much_is_written(db_path: Path) -> None:
    """300 quick batches write ~40x the limit; the -wal file never grows past limit + a batch."""
    sink = SqliteSink(db_path, wal_limit_bytes=LIMIT)
    largest_batch = 0
    sizes = []
    for i in range(300):
        before = wal_size(db_path)
        sink.write(tickers(i * 200, 200))
        sizes.append(wal_size(db_path))
        largest_batch = max(largest_batch, sizes[-1] - before)
    sink.close()
    assert db_path.stat().st_size > 20 * LIMIT  # far more than the limit went through the WAL
    assert max(sizes) <= LIMIT + largest_batch
    assert largest_batch < LIMIT // 2


def test_a_reader_delays_the_reset_and_the_wal_shrinks_after_it(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While a reader holds an old snapshot the WAL cannot reset (a warning says so); once the
    reader is done, the next batch brings it back under the limit."""
    sink = SqliteSink(db_path, wal_limit_bytes=LIMIT, busy_timeout_ms=10)
    sink.write(tickers(0, 200))
    reader = sqlite3.connect(db_path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM ticker").fetchone()
    with caplog.at_level(logging.WARNING, "binance_streamer.storage.sqlite"):
        for i in range(1, 40):
            sink.write(tickers(i * 200, 200))
    assert wal_size(db_path) > LIMIT and sink.wal_resets_blocked > 0
    assert "could not be reset" in caplog.text
    reader.execute("COMMIT")
    sink.write(tickers(100_000, 200))
    assert wal_size(db_path) <= LIMIT
    sink.close()


def test_close_folds_the_wal_so_the_database_file_alone_holds_everything(
    db_path: Path, tmp_path: Path
) -> None:
    """After close the -wal is gone or empty, and a copy of the .db file alone has every row."""
    sink = SqliteSink(db_path)
    for i in range(20):
        sink.write(tickers(i * 100, 100))
    sink.close()
    assert sink.wal_folded is True and wal_size(db_path) == 0
    alone = tmp_path / "copy" / "alone.db"
    alone.parent.mkdir()
    shutil.copyfile(db_path, alone)
    assert sqlite3.connect(alone).execute("SELECT COUNT(*) FROM ticker").fetchone() == (2000,)


def test_a_wal_that_cannot_be_folded_at_close_is_reported(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When a reader keeps the WAL from being folded in at close, a warning says so and
    ``wal_folded`` is False."""
    sink = SqliteSink(db_path, busy_timeout_ms=10)
    sink.write(tickers(0, 100))
    reader = sqlite3.connect(db_path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM ticker").fetchone()
    sink.write(tickers(100, 100))
    with caplog.at_level(logging.WARNING, "binance_streamer.storage.sqlite"):
        sink.close()
    reader.close()
    assert sink.wal_folded is False
    assert "could not fold the write-ahead log" in caplog.text and "-wal" in caplog.text
