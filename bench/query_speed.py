"""Query speed: one symbol over one minute out of 10,000,000 agg_trade rows, with and without the
schema's read index (``agg_trade_by_time`` on (symbol, trade_time), schema version 2), and what
that index costs the writer, all in one run.

1. Builds (once, kept in /tmp) a SQLite database of ``--rows`` agg_trade rows in the schema's own
   shape: 20 symbols interleaved over one day (a row every ~9 ms), so each symbol has 500,000
   rows spread over the whole day. Built without the read index.
2. Without the index: the time to the first page (what ``query``, ``export`` and ``read`` wait
   before writing anything) and to the whole minute, for ``--probes`` random (symbol, minute)
   pairs, with SQLite's EXPLAIN QUERY PLAN of the page query.
3. Creates the index (the migration an existing database runs once on open; timed), then the
   same probes again.
4. Ingest: `SqliteSink.write` of ``--ingest-rows`` rows in batches of 5,000 (the recorder's
   batch size) into a fresh database, without the index and with it, alternately, ``--rounds``
   times each (the machine is shared: compare the medians).

    .venv/bin/python bench/query_speed.py [--rows 10000000] [--probes 20] [--ingest-rows 1000000]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from binance_streamer.storage.base import Batch
from binance_streamer.storage.query import Selection, iter_pages
from binance_streamer.storage.schema import TIME_INDEXES
from binance_streamer.storage.sqlite import SqliteSink

SYMBOLS = [f"SYM{i:02d}USDT" for i in range(20)]
DAY_START_MS = 1_617_494_400_000  # 2021-04-04T00:00:00Z
DAY_MS = 86_400_000
INDEX = "agg_trade_by_time"
BATCH_ROWS = 5_000


def agg_trades(first: int, count: int, total: int) -> Iterator[tuple[object, ...]]:
    """Rows ``first``..``first + count`` of ``total`` spread evenly over the day."""
    step = DAY_MS / total
    for i in range(first, first + count):
        t = DAY_START_MS + int(i * step)
        agg_id = i // len(SYMBOLS)
        yield (SYMBOLS[i % len(SYMBOLS)], agg_id, f"{58000 + i % 997}.{i % 100:02d}000000",
               "0.01000000", agg_id * 2, agg_id * 2 + 1, t, i % 2, 1, t + 1,
               (t + 3) * 1_000_000, "ws")


def insert_sql() -> str:
    return ("INSERT INTO agg_trade (symbol, agg_id, price, quantity, first_trade_id, "
            "last_trade_id, trade_time, buyer_is_maker, best_match, event_time, received_ns, "
            "source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def build(path: Path, total: int) -> None:
    """The database of ``total`` rows without the read index (reused when already built)."""
    if path.exists():
        conn = sqlite3.connect(path)
        if conn.execute("SELECT MAX(id) FROM agg_trade").fetchone()[0] == total:
            conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
            conn.close()
            print(f"reusing {path} ({total:,} rows)")
            return
        conn.close()
        path.unlink()
    SqliteSink(path).close()  # the schema at its current version
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"DROP INDEX {INDEX}")
    conn.execute("PRAGMA synchronous=OFF")
    started = time.perf_counter()
    chunk = 200_000
    for first in range(0, total, chunk):
        conn.execute("BEGIN")
        conn.executemany(insert_sql(), agg_trades(first, min(chunk, total - first), total))
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print(f"built {path}: {total:,} rows in {time.perf_counter() - started:.0f} s")


def probes(count: int) -> list[tuple[str, int]]:
    rng = random.Random(7)
    return [(rng.choice(SYMBOLS), DAY_START_MS + rng.randrange(DAY_MS // 60_000 - 1) * 60_000)
            for _ in range(count)]


def timed_reads(path: Path, picks: list[tuple[str, int]]) -> tuple[list[float], list[float], int]:
    """Seconds to the first page and to the whole minute per probe, and rows read in all."""
    conn = sqlite3.connect(path)
    first_page, whole, rows = [], [], 0
    for symbol, since in picks:
        started = time.perf_counter()
        pages = iter_pages(conn, Selection("agg_trade"), symbol, since, since + 60_000)
        page = next(pages)
        first_page.append(time.perf_counter() - started)
        rows += len(page) + sum(len(p) for p in pages)
        whole.append(time.perf_counter() - started)
    conn.close()
    return first_page, whole, rows


def plan(path: Path) -> str:
    conn = sqlite3.connect(path)
    sql = ("EXPLAIN QUERY PLAN SELECT * FROM agg_trade WHERE symbol = ? AND trade_time >= ? "
           "AND trade_time < ? ORDER BY trade_time, id LIMIT 5000")
    rows = conn.execute(sql, ("SYM03USDT", DAY_START_MS, DAY_START_MS + 60_000)).fetchall()
    conn.close()
    return "; ".join(r[-1] for r in rows)


def ingest_rate(rows: int, with_index: bool) -> tuple[float, float]:
    """Rows per wall second and per CPU second (every thread of this process) of
    `SqliteSink.write` into a fresh database, with or without the read index."""
    with tempfile.TemporaryDirectory() as tmp:
        sink = SqliteSink(Path(tmp) / "ingest.db")
        if not with_index:
            sink._conn.execute(f"DROP INDEX {INDEX}")  # bench only: the baseline
        batches = [Batch(rows={"agg_trade": list(agg_trades(first, BATCH_ROWS, rows))})
                   for first in range(0, rows, BATCH_ROWS)]
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            sink.write(batch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        sink.close()
    return rows / wall, rows / cpu


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:9.2f} {max(values) * 1000:9.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--ingest-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="ingest runs of each, alternated")
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir())
                        / "bs_query_speed.db")
    args = parser.parse_args()
    assert TIME_INDEXES["agg_trade"] == ("symbol", "trade_time")
    build(args.db, args.rows)
    picks = probes(args.probes)
    before_plan = plan(args.db)
    before = timed_reads(args.db, picks)
    conn = sqlite3.connect(args.db)
    started = time.perf_counter()
    conn.execute(f"CREATE INDEX {INDEX} ON agg_trade (symbol, trade_time)")
    conn.commit()
    conn.close()
    index_s = time.perf_counter() - started
    after_plan = plan(args.db)
    after = timed_reads(args.db, picks)
    rates: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for with_index in (False, True):
            rates[with_index].append(ingest_rate(args.ingest_rows, with_index))

    print(f"\nagg_trade: {args.rows:,} rows, 20 symbols over one day; {args.probes} probes of "
          "one symbol x one minute (p50 / max, ms)")
    print(f"{'':34} {'first page':>19} {'whole minute':>19} {'rows':>8}")
    for name, (first, whole, rows) in (("natural key only (baseline)", before),
                                       (f"+ {INDEX} (schema v2)", after)):
        print(f"{name:34} {ms(first)} {ms(whole)} {rows:8,}")
    ratio = statistics.median(before[0]) / statistics.median(after[0])
    print(f"first page p50: {ratio:,.0f}x faster with the index")
    print(f"plan without: {before_plan}\nplan with:    {after_plan}")
    print(f"creating the index on {args.rows:,} rows (migration to v2): {index_s:.1f} s")
    print(f"\ningest, SqliteSink.write, {args.ingest_rows:,} rows in batches of {BATCH_ROWS:,}"
          f"; {args.rounds} runs each, alternated; medians")
    print(f"{'':34} {'rows/s (wall)':>14} {'rows/CPU-s':>14}")
    medians = {}
    for with_index, name in ((False, "natural key only (baseline)"), (True, f"+ {INDEX}")):
        wall = statistics.median(r[0] for r in rates[with_index])
        cpu = statistics.median(r[1] for r in rates[with_index])
        medians[with_index] = (wall, cpu)
        print(f"{name:34} {wall:14,.0f} {cpu:14,.0f}")
    (base_wall, base_cpu), (wall, cpu) = medians[False], medians[True]
    print(f"the index costs {(1 - wall / base_wall) * 100:.0f}% of the writer's throughput "
          f"(wall), {(1 - cpu / base_cpu) * 100:.0f}% of it per CPU second")

if __name__ == "__main__":
    main()
