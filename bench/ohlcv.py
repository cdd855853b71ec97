"""Candle building speed and memory: ``ohlcv`` over ``--rows`` stored agg trades of one symbol,
side by side with the baseline of only reading the same rows (the same paged SELECT, no fold).

1. Builds a SQLite database (in a temporary folder) of ``--rows`` agg_trade rows of one symbol
   over one day, prices and quantities with 8 decimals as Binance sends them.
2. Baseline: the rows read page by page (``PAGE_ROWS`` each) and dropped.
3. ``ohlcv(db, symbol, "1m")`` and ``"1s"``: rows folded per second of wall time.
4. Memory: the peak of Python allocations (tracemalloc) while folding the whole day, for
   ``--rows`` and for a tenth of it (constant memory: the two peaks stay alike).

    .venv/bin/python bench/ohlcv.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from binance_streamer import ohlcv
from binance_streamer.candles import PAGE_ROWS
from binance_streamer.storage.sqlite import SqliteSink

DAY_START_MS = 1_617_494_400_000  # 2021-04-04T00:00:00Z
DAY_MS = 86_400_000


def agg_trades(total: int) -> Iterator[tuple[object, ...]]:
    """``total`` agg trades of BTCUSDT spread over the day."""
    step = DAY_MS / total
    for i in range(total):
        t = DAY_START_MS + int(i * step)
        yield ("BTCUSDT", i, f"{58000 + i % 997}.{i % 100:02d}000000", f"0.{i % 9973:08d}",
               i * 2, i * 2 + 1, t, i % 2, 1, t + 1, (t + 3) * 1_000_000, "ws")


def build(path: Path, total: int) -> None:
    SqliteSink(path).close()  # the schema at its current version
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO agg_trade (symbol, agg_id, price, quantity, first_trade_id, "
                     "last_trade_id, trade_time, buyer_is_maker, best_match, event_time, "
                     "received_ns, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     agg_trades(total))
    conn.execute("COMMIT")
    conn.close()


def read_only(path: Path) -> int:
    """The baseline: the rows ohlcv reads, read the same way, and dropped."""
    conn = sqlite3.connect(path)
    sql = ("SELECT price, quantity, trade_time, buyer_is_maker, first_trade_id, last_trade_id, "
           f"agg_id FROM agg_trade WHERE symbol = ? AND agg_id >= ? ORDER BY agg_id "
           f"LIMIT {PAGE_ROWS}")
    rows, start = 0, 0
    while True:
        page = conn.execute(sql, ("BTCUSDT", start)).fetchall()
        rows += len(page)
        if len(page) < PAGE_ROWS:
            break
        start = page[-1][-1] + 1
    conn.close()
    return rows


def timed(label: str, rows: int, run: object) -> None:
    started = time.perf_counter()
    out = run()  # type: ignore[operator]
    seconds = time.perf_counter() - started
    print(f"{label:<34} {seconds:7.2f} s {rows / seconds:12,.0f} rows/s   ({out})")


def peak_mib(path: Path, until: int | None) -> float:
    tracemalloc.start()
    sum(1 for _ in ohlcv(path, "BTCUSDT", "1m", until=until))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ohlcv.db"
        build(path, args.rows)
        print(f"{args.rows:,} agg_trade rows of BTCUSDT over one day")
        timed("baseline: read the rows only", args.rows, lambda: f"{read_only(path):,} rows")
        for interval in ("1m", "1s"):
            timed(f"ohlcv {interval} (read + fold + format)", args.rows,
                  lambda i=interval: f"{sum(1 for _ in ohlcv(path, 'BTCUSDT', i)):,} candles")
        tenth = DAY_START_MS + DAY_MS // 10
        print(f"peak Python memory folding 1m: whole day {peak_mib(path, None):.1f} MiB, "
              f"first tenth {peak_mib(path, tenth):.1f} MiB")


if __name__ == "__main__":
    main()
