"""Several recorders in one SQLite file, one per shard: the locks, and the WAL with many writers.

flock locks belong to open file descriptions, so two sinks in one process lock each other out
exactly as two processes would.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from pathlib import Path

import pytest

from binance_streamer.core.sharding import Shard
from binance_streamer.errors import DatabaseInUse, StorageBusy
from binance_streamer.storage.base import Batch
from binance_streamer.storage.open import open_sink
from binance_streamer.storage.sqlite import SqliteSink
from tests.helpers import batch_of

LIMIT = 256 * 1024


def tickers(start: int, n: int) -> Batch:
    """``n`` new ticker rows (distinct event times from ``start``)."""
    [ticker] = batch_of("binance_spot_24hrTicker.singletons.jsonl").rows["ticker"]
    return Batch(rows={"ticker": [(ticker[0], start + i, *ticker[2:]) for i in range(n)]})


def test_different_shards_record_into_one_file(db_path: Path) -> None:
    first, second = open_sink(db_path, shard=Shard(1, 2)), open_sink(db_path, shard=Shard(2, 2))
    first.write(tickers(0, 10))
    second.write(tickers(10, 10))
    first.close()
    assert Path(f"{db_path}-recorder.lock").exists()  # the second shard still holds it
    second.close()
    assert not list(db_path.parent.glob("*.lock"))


def test_the_same_shard_twice_is_refused(db_path: Path) -> None:
    sink = open_sink(db_path, shard=Shard(2, 3))
    try:
        with pytest.raises(DatabaseInUse, match=r"recording shard 2/3 into .*test.db \(pid \d+\)"):
            open_sink(db_path, shard=Shard(2, 3))
    finally:
        sink.close()
    open_sink(db_path, shard=Shard(2, 3)).close()


def test_a_whole_recorder_and_a_shard_refuse_each_other(db_path: Path) -> None:
    whole = open_sink(db_path)
    try:
        with pytest.raises(DatabaseInUse, match=r"every stream .* so shard 1/2 cannot"):
            open_sink(db_path, shard=Shard(1, 2))
    finally:
        whole.close()
    shard = open_sink(db_path, shard=Shard(1, 2))
    try:
        with pytest.raises(DatabaseInUse, match=r"\(shard 1/2 \(pid \d+\)\)"):
            open_sink(db_path)
        with pytest.raises(DatabaseInUse, match="shard 1/2"):
            open_sink(db_path, shard=Shard(1, 1))  # one shard of one is every stream
    finally:
        shard.close()


def test_shards_of_another_count_are_refused(db_path: Path) -> None:
    sink = open_sink(db_path, shard=Shard(1, 2))
    try:
        with pytest.raises(DatabaseInUse, match=r"shard 1/2 \(pid \d+\) .* shard 3/3 of another"):
            open_sink(db_path, shard=Shard(3, 3))
        assert not Path(f"{db_path}-recorder-shard-3of3.lock").exists()  # released on refusal
    finally:
        sink.close()


def test_a_stale_lock_file_of_a_dead_shard_is_no_obstacle(db_path: Path) -> None:
    Path(f"{db_path}-recorder-shard-1of4.lock").write_text("12345\n")  # kill -9 left it
    open_sink(db_path, shard=Shard(2, 2)).close()
    open_sink(db_path).close()


def test_the_wal_stays_bounded_with_two_writers(db_path: Path) -> None:
    """Two shards writing as fast as they can: both finish (no starvation) and the -wal file,
    folded by whichever writer finds it past the limit, stays near the limit."""
    sinks = [SqliteSink(db_path, wal_limit_bytes=LIMIT, shard=Shard(i, 2)) for i in (1, 2)]
    wal = Path(f"{db_path}-wal")
    sizes: list[int] = []
    busy = [0, 0]

    def write(index: int) -> None:
        for i in range(150):
            batch = tickers((index * 1000 + i) * 100, 100)
            while True:
                try:
                    sinks[index].write(batch)
                    break
                except StorageBusy:
                    busy[index] += 1
            sizes.append(wal.stat().st_size if wal.exists() else 0)

    threads = [threading.Thread(target=write, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    for sink in sinks:
        sink.close()
    assert db_path.stat().st_size > 10 * LIMIT  # far more than the limit went through the WAL
    resets = sum(1 for before, after in itertools.pairwise(sizes) if after < before)
    assert resets >= 5, sizes  # folded again and again: neither writer starves the checkpoint
    # A reset can miss while a background checkpoint runs (the next batch retries): the log
    # stays within a few limits, never growing with what is written.
    assert max(sizes) <= 8 * LIMIT, (max(sizes), busy, sizes)
    assert not wal.exists() or wal.stat().st_size == 0  # the last one to close folded it
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ticker").fetchone() == (300 * 100,)
