"""Export benchmark: agg_trade rows from SQLite to Parquet, beside a csv-module baseline.

Builds (once, kept in ``--folder``) a recording of N synthetic agg_trade rows over two symbols,
exactly as the recorder stores them (decimal strings with 8 decimals, ms times, ns receive times),
then runs each scenario in its own process so the peak RSS printed is that export's own:

* ``csv module (baseline)``: sqlite3 cursor -> Python's ``csv.writer``, the obvious script;
* ``export csv``: `binance_streamer.export.export(..., fmt="csv")` (sqlite3 pages, csv module);
* ``export parquet``: `export(..., fmt="parquet")`, decimal128(38, 8), UTC timestamps, zstd,
  read columnar by the ADBC SQLite driver when installed (else sqlite3 pages);
* ``export parquet, no ADBC``: the same with the driver hidden (the row-by-row reader);
* ``export folder``: Parquet partitioned by symbol and day (the row-by-row reader).

Rows/s is rows over wall time; CPU s is the process's user + system time (the machine is
shared: compare ratios within one run). Peak RSS at several sizes shows memory stays flat.

    .venv/bin/python bench/export.py [--rows 2000000,4000000] [--folder /tmp/bs_export_bench]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCENARIOS = {
    "baseline": "csv module (baseline)",
    "csv": "export csv",
    "parquet": "export parquet",
    "parquet_rows": "export parquet, no ADBC",
    "folder": "export folder (hive)",
}
T0 = 1_617_566_591_315  # 2021-04-04T20:03:11.315Z


def build(path: Path, rows: int) -> None:
    """A recording of ``rows`` agg_trade rows (BTCUSDT then ETHUSDT), 3 ms apart."""
    from binance_streamer.core.tables import AGG_TRADE
    from binance_streamer.storage.open import open_sink
    from binance_streamer.storage.schema import insert_sql

    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    open_sink(tmp).close()
    conn = sqlite3.connect(tmp)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    sql = insert_sql(AGG_TRADE, "sqlite")
    half = rows // 2
    for n, symbol in enumerate(("BTCUSDT", "ETHUSDT")):
        conn.executemany(sql, (
            (symbol, n * half + i, f"{58000 + (i % 100_000) / 100:.8f}",
             f"{(i % 977) / 1000:.8f}", 2 * i, 2 * i + 1, T0 + 3 * i, i % 2 == 0, True,
             T0 + 3 * i + 1, (T0 + 3 * i + 2) * 1_000_000 + i % 1000, "ws")
            for i in range(half)))
        conn.commit()
    conn.close()
    tmp.rename(path)


def run(scenario: str, db: Path, out: Path) -> int:
    """Export ``db``'s agg_trade rows the way ``scenario`` does; the row count."""
    if scenario == "baseline":
        conn = sqlite3.connect(db)
        cur = conn.execute("SELECT * FROM agg_trade ORDER BY symbol, agg_id")
        with out.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([d[0] for d in cur.description])
            n = 0
            while page := cur.fetchmany(65_536):
                writer.writerows(page)
                n += len(page)
        return n
    if scenario == "parquet_rows":
        sys.modules["adbc_driver_sqlite"] = None  # type: ignore[assignment]
    from binance_streamer.export import export

    fmt = "csv" if scenario == "csv" else "parquet"
    target = f"{out}/" if scenario == "folder" else out
    return export(db, "aggTrade", target, fmt=fmt).rows


def child(scenario: str, db: Path, out: Path) -> None:
    start, cpu = time.perf_counter(), time.process_time()
    rows = run(scenario, db, out)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "wall": wall, "cpu": cpu, "rss_mb": peak_kb / 1024}))


def measure(scenario: str, db: Path, folder: Path) -> dict[str, Any]:
    out = folder / f"out_{scenario}"
    shutil.rmtree(out, ignore_errors=True)
    out.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, __file__, "--child", scenario, str(db), str(out)],
                          capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    size = sum(p.stat().st_size for p in out.rglob("*")) if out.is_dir() else out.stat().st_size
    result["mb"] = size / 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="2000000,4000000")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bs_export_bench"))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    args.folder.mkdir(parents=True, exist_ok=True)
    print(f"{'scenario':28} {'rows':>11} {'wall s':>7} {'CPU s':>6} {'rows/s':>11} "
          f"{'peak RSS':>9} {'output':>9}")
    for rows in (int(r) for r in args.rows.split(",")):
        db = args.folder / f"agg_trade_{rows}.db"
        if not db.exists():
            build(db, rows)
        base = None
        for scenario in args.scenarios.split(","):
            r = measure(scenario, db, args.folder)
            rate = r["rows"] / r["wall"]
            base = base or rate
            print(f"{SCENARIOS[scenario]:28} {r['rows']:>11,} {r['wall']:>7.2f} {r['cpu']:>6.2f} "
                  f"{rate:>11,.0f} {r['rss_mb']:>6.0f} MB {r['mb']:>6.0f} MB"
                  f"  {rate / base:.1f}x")


if __name__ == "__main__":
    main()
