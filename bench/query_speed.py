"""Query speed: one symbol over one minute and over one hour out of 10,000,000 agg_trade rows, read
three ways in one run: by bisecting the natural key (schema version 4, `storage/id_range.py`),
through the read index of schema versions 2-3 (``agg_trade_by_time`` on (symbol, trade_time),
dropped by version 4), and by a plain scan of the symbol's rows (the natural key only, no
bisection); and what that index costs the writer.

1. Builds (once, kept in /tmp) a SQLite database of ``--rows`` agg_trade rows in the schema's own
   shape: 20 symbols interleaved over one day (a row every ~9 ms), so each symbol has 500,000
   rows spread over the whole day. Built without the read index (schema version 4).
2. Without the index: the time to the first page (what ``query``, ``export`` and ``read`` wait
   before writing anything) and to the whole range, for ``--probes`` random (symbol, start)
   pairs per range length, read by `iter_pages` (bisection) and by the version-3 page query
   (a plain scan here), with SQLite's EXPLAIN QUERY PLAN of each page query.
3. Creates the index (what the version-2 migration did; timed), reads the same probes through it
   with the version-3 page query, and drops it again.
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
from binance_streamer.storage.id_range import KEY_ORDERED, id_bounds
from binance_streamer.storage.open import Reader
from binance_streamer.storage.query import PAGE_SIZE, _keyset_pages, iter_pages
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
    conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
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


def probes(count: int, length_ms: int) -> list[tuple[str, int]]:
    rng = random.Random(7)
    return [(rng.choice(SYMBOLS), DAY_START_MS + rng.randrange((DAY_MS - length_ms) // 60_000)
             * 60_000) for _ in range(count)]


def v3_pages(conn: sqlite3.Connection, symbol: str, since: int, until: int
             ) -> Iterator[list[tuple[object, ...]]]:
    """The page query of schema versions 2-3 (keyset pages in (trade_time, id) order): through
    ``agg_trade_by_time`` where it exists, else a plain scan of the symbol's rows."""
    where = ["symbol = ?", "trade_time >= ?", "trade_time < ?"]
    return _keyset_pages(conn, "agg_trade", where, [symbol, since, until], None, "?", PAGE_SIZE)


def bisected_pages(conn: sqlite3.Connection, symbol: str, since: int, until: int
                   ) -> Iterator[list[tuple[object, ...]]]:
    """What ``query``, ``export`` and ``read`` run on schema version 4."""
    return iter_pages(conn, "agg_trade", symbol, since, until)


Reads = tuple[list[float], list[float], set[int]]


def timed_reads(path: Path, picks: list[tuple[str, int]], length_ms: int, how: str) -> Reads:
    """Seconds to the first page and to the whole range per probe, and the ids read."""
    read = bisected_pages if how == "bisect" else v3_pages
    conn = sqlite3.connect(path)
    first_page: list[float] = []
    whole: list[float] = []
    ids: set[int] = set()
    for symbol, since in picks:
        started = time.perf_counter()
        pages = read(conn, symbol, since, since + length_ms)
        page = next(pages, [])
        first_page.append(time.perf_counter() - started)
        for p in (page, *pages):
            ids.update(int(str(r[0])) for r in p)
        whole.append(time.perf_counter() - started)
    conn.close()
    return first_page, whole, ids


def probe_count(path: Path, picks: list[tuple[str, int]], length_ms: int) -> float:
    """The mean number of statements `id_bounds` runs per range."""
    conn = sqlite3.connect(path)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    for symbol, since in picks:
        id_bounds(Reader(conn, "?"), "agg_trade", symbol, since, since + length_ms)
    conn.close()
    return len(statements) / len(picks)


def plans(path: Path) -> dict[str, str]:
    """EXPLAIN QUERY PLAN of the first page query of each way."""
    conn = sqlite3.connect(path)
    out = {}
    for how, read in (("bisect", bisected_pages), ("v3", v3_pages)):
        sql: list[str] = []
        conn.set_trace_callback(sql.append)
        next(read(conn, SYMBOLS[3], DAY_START_MS, DAY_START_MS + 60_000), None)
        conn.set_trace_callback(None)
        page = next(s for s in sql if s.startswith("SELECT *") and "ORDER BY" in s)
        out[how] = "; ".join(r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {page}"))
    conn.close()
    return out


def ingest_rate(rows: int, with_index: bool) -> tuple[float, float]:
    """Rows per wall second and per CPU second (every thread of this process) of
    `SqliteSink.write` into a fresh database, with or without the read index."""
    with tempfile.TemporaryDirectory() as tmp:
        sink = SqliteSink(Path(tmp) / "ingest.db")
        if with_index:  # bench only: the read index of schema versions 2-3
            sink._conn.execute(f"CREATE INDEX {INDEX} ON agg_trade (symbol, trade_time)")
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


RANGES = {"one minute": 60_000, "one hour": 3_600_000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--ingest-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="ingest runs of each, alternated")
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir())
                        / "bs_query_speed.db")
    args = parser.parse_args()
    assert "agg_trade" not in TIME_INDEXES and KEY_ORDERED["agg_trade"].time == "trade_time"
    build(args.db, args.rows)
    picks = {name: probes(args.probes, length) for name, length in RANGES.items()}
    reads: dict[tuple[str, str], Reads] = {}
    for name, length in RANGES.items():
        for how in ("bisect", "scan"):
            reads[name, how] = timed_reads(args.db, picks[name], length, how)
    count = {name: probe_count(args.db, picks[name], length) for name, length in RANGES.items()}
    no_index_plans = plans(args.db)
    conn = sqlite3.connect(args.db)
    started = time.perf_counter()
    conn.execute(f"CREATE INDEX {INDEX} ON agg_trade (symbol, trade_time)")
    conn.commit()
    index_s = time.perf_counter() - started
    index_plan = plans(args.db)["v3"]
    for name, length in RANGES.items():
        reads[name, "index"] = timed_reads(args.db, picks[name], length, "v3")
    conn.execute(f"DROP INDEX {INDEX}")
    conn.commit()
    conn.close()
    rates: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for with_index in (False, True):
            rates[with_index].append(ingest_rate(args.ingest_rows, with_index))

    print(f"\nagg_trade: {args.rows:,} rows, 20 symbols over one day; {args.probes} probes of "
          "one symbol x one range each (p50 / max, ms)")
    print(f"{'':46} {'first page':>19} {'whole range':>19} {'rows':>9}")
    labels = {"scan": "plain scan, natural key only (baseline)",
              "index": f"{INDEX} (schema v2-3)",
              "bisect": "bisected natural key (schema v4)"}
    for name in RANGES:
        print(f"{name}:")
        for how in ("scan", "index", "bisect"):
            first, whole, ids = reads[name, how]
            print(f"  {labels[how]:44} {ms(first)} {ms(whole)} {len(ids):9,}")
        assert reads[name, "bisect"][2] == reads[name, "index"][2] == reads[name, "scan"][2]
        scan, index, bisect = (statistics.median(reads[name, how][0])
                               for how in ("scan", "index", "bisect"))
        print(f"  first page p50: bisection {scan / bisect:,.0f}x faster than the scan, "
              f"{bisect / index:.1f}x the index's time; {count[name]:.0f} statements to "
              "bisect per range")
    print("same rows read all three ways")
    print(f"plan, bisection:  {no_index_plans['bisect']}\nplan, scan:       "
          f"{no_index_plans['v3']}\nplan, with index: {index_plan}")
    print(f"creating the index on {args.rows:,} rows (migration to v2): {index_s:.1f} s")
    print(f"\ningest, SqliteSink.write, {args.ingest_rows:,} rows in batches of {BATCH_ROWS:,}"
          f"; {args.rounds} runs each, alternated; medians")
    print(f"{'':34} {'rows/s (wall)':>14} {'rows/CPU-s':>14}")
    medians = {}
    for with_index, name in ((False, "natural key only (schema v4)"), (True, f"+ {INDEX}")):
        wall = statistics.median(r[0] for r in rates[with_index])
        cpu = statistics.median(r[1] for r in rates[with_index])
        medians[with_index] = (wall, cpu)
        print(f"{name:34} {wall:14,.0f} {cpu:14,.0f}")
    (base_wall, base_cpu), (wall, cpu) = medians[False], medians[True]
    print(f"the index costs {(1 - wall / base_wall) * 100:.0f}% of the writer's throughput "
          f"(wall), {(1 - cpu / base_cpu) * 100:.0f}% of it per CPU second")


if __name__ == "__main__":
    main()
