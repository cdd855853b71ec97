"""Ingest benchmark: local exchange at full speed -> recorder -> SQLite, beside the tutorial's way.

Prints messages persisted per second for each design side by side, from one run:

* ``naive``: the tutorial's code path (websocket-client, json.loads, uuid4 ids, one INSERT and
  one COMMIT per message) on the same streams;
* ``recorder``: binance-streamer's recorder (picows, msgspec, batched writer thread).

Scenarios: 3 ticker streams (ratio against naive), 200 ticker streams on 2 connections (every
ticker field stored), peak RSS at saturation, and receive-to-commit p99 at a paced rate.

    .venv/bin/python bench/ingest.py [--seconds 10] [--paced-rate 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from uuid import uuid4

import websocket  # websocket-client, the tutorial's library

from binance_streamer import Recorder, RecorderConfig
from binance_streamer.exchange import LocalExchange


def synthetic_symbols(n: int) -> list[str]:
    """``n`` distinct symbol names for the synthetic market (same shape as real ones)."""
    return [f"S{i:03d}USDT" for i in range(n)]


def naive_rate(ws_url: str, symbols: list[str], seconds: float, db: Path) -> float:
    """The tutorial's BinanceStreamer, verbatim in spirit: per-message commit and uuid4 ids."""
    conn = sqlite3.connect(db, check_same_thread=False)
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS market_data "
                "(id TEXT PRIMARY KEY, symbol TEXT, price REAL, timestamp INTEGER)")
    conn.commit()
    count = 0

    def on_message(ws: websocket.WebSocketApp, message: str) -> None:
        nonlocal count
        data = json.loads(message)
        cur.execute("INSERT INTO market_data VALUES (?, ?, ?, ?)",
                    (uuid4().hex, data["s"], float(data["c"]), data["E"]))
        conn.commit()
        count += 1

    url = f"{ws_url}/ws/" + "/".join(f"{s.lower()}@ticker" for s in symbols)
    app = websocket.WebSocketApp(url, on_message=on_message)
    thread = threading.Thread(target=app.run_forever, daemon=True)
    thread.start()
    time.sleep(1.0)  # warm-up: the connection opens and data flows
    start_count, start = count, time.perf_counter()
    time.sleep(seconds)
    rate = (count - start_count) / (time.perf_counter() - start)
    app.close()
    thread.join(5)
    conn.close()
    return rate


async def recorder_rate(
    ws_url: str, rest_url: str, symbols: list[str], seconds: float, db: Path,
    per_connection: int,
) -> tuple[float, int, float]:
    """Messages persisted per second by the recorder; also new rows and p99 commit latency (ms)."""
    recorder = Recorder(RecorderConfig(
        symbols=symbols, streams=["ticker"], database=db, ws_url=ws_url, rest_url=rest_url,
        max_streams_per_connection=per_connection, backfill=False))
    task = asyncio.create_task(recorder.run())
    await recorder.ready.wait()
    await asyncio.sleep(1.0)  # warm-up
    start_rows, start = recorder.stats.total_stored, time.perf_counter()
    await asyncio.sleep(seconds)
    rate = (recorder.stats.total_stored - start_rows) / (time.perf_counter() - start)
    recorder.stop()
    stats = await task
    lat = sorted(stats.commit_latency_ns[len(stats.commit_latency_ns) // 5:])
    p99 = lat[int(len(lat) * 0.99) - 1] / 1e6 if lat else float("nan")
    return rate, stats.total_stored, p99


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--paced-rate", type=float, default=50_000.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    rows: list[tuple[str, str, str]] = []

    three = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    # "Full speed" for the synthetic market: a rate no consumer can keep up with.
    async with LocalExchange(synthetic=three, rate=200_000) as ex:
        naive = await asyncio.to_thread(naive_rate, ex.ws_url, three, args.seconds, tmp / "n.db")
    async with LocalExchange(synthetic=three, rate=200_000) as ex:
        ours, _, _ = await recorder_rate(ex.ws_url, ex.rest_url, three, args.seconds,
                                         tmp / "r3.db", 200)
    rows.append(("3 ticker streams, naive (tutorial)", f"{naive:,.0f} msg/s", "1.0x"))
    rows.append(("3 ticker streams, recorder", f"{ours:,.0f} msg/s", f"{ours / naive:,.1f}x"))

    many = synthetic_symbols(200)
    async with LocalExchange(synthetic=many, rate=5_000) as ex:
        wide, stored, _ = await recorder_rate(ex.ws_url, ex.rest_url, many, args.seconds,
                                              tmp / "r200.db", 100)
    rows.append(("200 ticker streams / 2 connections", f"{wide:,.0f} msg/s",
                 f"{stored:,} rows, 23 fields each"))
    rows.append(("peak RSS at saturation", f"{peak_rss_mb():.0f} MB", "whole process"))

    paced = args.paced_rate / len(many)
    async with LocalExchange(synthetic=many, rate=paced) as ex:
        rate, _, p99 = await recorder_rate(ex.ws_url, ex.rest_url, many, args.seconds,
                                           tmp / "paced.db", 100)
    rows.append((f"paced {args.paced_rate:,.0f} msg/s", f"{rate:,.0f} msg/s",
                 f"receive->commit p99 {p99:.1f} ms"))

    width = max(len(r[0]) for r in rows)
    print(f"{'scenario':<{width}}  {'persisted':>16}  notes")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>16}  {note}")
    _ = statistics, sys


if __name__ == "__main__":
    asyncio.run(main())
