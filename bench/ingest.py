"""Ingest benchmark: local exchange at full speed -> recorder -> SQLite, beside the tutorial's way.

Every scenario runs three processes on this machine: this one (orchestration only), the local
exchange (`LocalExchange` serving a ticker firehose) and the client under test, so the exchange
and the client each get a core and the client's peak RSS is its own. Printed side by side, from
one run:

* ``naive``: the tutorial's code path (websocket-client, json.loads, uuid4 ids, one INSERT and
  one COMMIT per message, default rollback journal) on 3 ticker streams;
* ``recorder``: binance-streamer's `Recorder` (picows, msgspec, batched writer thread) on the same
  3 streams (ratio against naive), on 200 ticker streams over 2 connections at full speed (every
  ticker field stored; peak RSS at saturation) and on 200 streams paced at ``--paced-rate``
  (receive-to-commit p99);
* each recorder scenario once per ``--processes`` count (default 1 and 2): with N > 1 a
  `RecorderFleet` of N processes, one shard of the streams each, all writing the same database.
  "CPU/msg" is the user+sys CPU time of every recorder process (the fleet's and its children)
  over the measuring window, divided by the rows persisted in it.

"Persisted" counts rows newly committed to the database during the measuring window. The firehose
publishes 24hrTicker events of real symbol names from the bundled exchangeInfo (so the recorder's
symbol validation passes) with unique, increasing event times, so every message is a new row.

    .venv/bin/python bench/ingest.py [--seconds 10] [--paced-rate 50000] [--scenario all]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import shutil
import sqlite3
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from uuid import uuid4

SCENARIOS = ("naive", "three", "wide", "paced")
WARMUP_S = 1.5


# -- the exchange process: LocalExchange with a ticker firehose ----------------------------------

def ticker_templates(symbols: list[str]) -> list[tuple[str, bytes]]:
    """(stream, bare payload template) per symbol: a 24hrTicker with all 23 fields, taking
    ``%d`` for E, c's fraction, Q, O, C, L and n (web-socket-streams.md, "Individual Symbol
    Ticker Streams")."""
    out = []
    for sym in symbols:
        tmpl = (
            '{"e":"24hrTicker","E":%d,"s":"' + sym + '","p":"-94.99999800",'
            '"P":"-95.960","w":"0.29628482","x":"0.10000000","c":"4.%08d","Q":"%d.00000000",'
            '"b":"4.00000000","B":"100.00000000","a":"4.00000200","A":"100.00000000",'
            '"o":"99.00000000","h":"100.00000000","l":"0.10000000","v":"8913.30000000",'
            '"q":"15.30000000","O":%d,"C":%d,"F":1,"L":%d,"n":%d}'
        )
        out.append((f"{sym.lower()}@ticker", tmpl.encode()))
    return out


def serve_firehose(symbols: list[str], rate: float | None, pipe: Connection) -> None:
    """Child process: a `LocalExchange` publishing tickers of ``symbols`` round-robin, at
    ``rate`` msgs/s in total or (None) as fast as the subscribers read."""
    asyncio.run(_firehose(symbols, rate, pipe))


async def _firehose(symbols: list[str], rate: float | None, pipe: Connection) -> None:
    from binance_streamer.exchange import LocalExchange
    from binance_streamer.exchange.frames import Event

    async with LocalExchange(port=0) as ex:
        pipe.send((ex.ws_url, ex.rest_url))
        await ex.wait_subscribed(len(symbols))
        hub, templates = ex.hub, ticker_templates(symbols)
        n, event_ms, chunk = 0, 1_600_000_000_000, 1000
        start = time.monotonic()
        while True:
            if rate is None:
                todo = chunk
            else:
                await asyncio.sleep(0.001)
                todo = min(int((time.monotonic() - start) * rate) - n, 10 * chunk)
            for _ in range(todo):
                stream, tmpl = templates[n % len(templates)]
                event_ms += 1  # unique per message: every message is a new ticker row
                data = tmpl % (event_ms, n % 10**8, n % 1000, event_ms - 86_400_000, event_ms,
                               n + 1, n + 1)
                hub.publish(Event(stream, None, data))
                n += 1
            if rate is None:
                await hub.drained(1 << 20)
                await asyncio.sleep(0)


# -- the client processes ------------------------------------------------------------------------

@dataclass
class Result:
    """What a client process reports back."""

    rate: float = 0.0  # rows persisted per second in the window
    stored: int = 0  # rows persisted in total
    p99_ms: float = float("nan")  # receive -> commit, per batch (its oldest message)
    p50_ms: float = float("nan")
    max_ms: float = float("nan")
    peak_rss_mb: float = 0.0  # ru_maxrss of the client process
    received_rate: float = 0.0  # messages received per second in the window
    paused: int = 0  # times reading was paused for the writer (back-pressure)
    batches: int = 0
    processes: int = 1
    cpu_us_per_msg: float = float("nan")  # user+sys of every recorder process per row persisted
    extra: dict[str, Any] = field(default_factory=dict)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (/proc/<pid>/stat utime, stime)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / _TICKS


def run_naive(ws_url: str, symbols: list[str], seconds: float, db: str, pipe: Connection
              ) -> None:
    """Child process: the tutorial's BinanceStreamer (per-message commit, uuid4 ids)."""
    import websocket  # websocket-client, the tutorial's library

    conn = sqlite3.connect(db, check_same_thread=False)
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS market_data "
                "(id TEXT PRIMARY KEY, symbol TEXT, price REAL, timestamp INTEGER)")
    conn.commit()
    count = 0

    def on_message(_ws: Any, message: str) -> None:
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
    while count == 0:
        time.sleep(0.05)
    time.sleep(WARMUP_S)
    start_count, start = count, time.perf_counter()
    time.sleep(seconds)
    rate = (count - start_count) / (time.perf_counter() - start)
    app.close()
    thread.join(5)
    pipe.send(Result(rate=rate, stored=count, received_rate=rate, peak_rss_mb=_peak_rss_mb()))


def run_recorder(ws_url: str, rest_url: str, symbols: list[str], seconds: float, db: str,
                 per_connection: int, tuning: dict[str, Any], processes: int, pipe: Connection
                 ) -> None:
    """Child process: binance-streamer's Recorder (``processes`` > 1: a RecorderFleet) on
    ``<symbol>@ticker`` for every symbol; ``tuning`` overrides RecorderConfig fields
    (batch_rows, batch_age_s, ...)."""
    pipe.send(asyncio.run(_recorder(ws_url, rest_url, symbols, seconds, db, per_connection,
                                    tuning, processes)))


async def _recorder(ws_url: str, rest_url: str, symbols: list[str], seconds: float, db: str,
                    per_connection: int, tuning: dict[str, Any], processes: int) -> Result:
    from binance_streamer import RecorderConfig
    from binance_streamer.supervisor import RecorderFleet

    recorder = RecorderFleet(RecorderConfig(
        symbols=symbols, streams=["ticker"], database=db, ws_url=ws_url, rest_url=rest_url,
        max_streams_per_connection=per_connection, backfill=False, **tuning), processes)
    task = asyncio.create_task(recorder.run())
    await recorder.wait_until(lambda s: s.total_stored > 0, timeout=60)
    await asyncio.sleep(WARMUP_S)
    stats = recorder.stats
    rows0, msgs0, lat0 = stats.total_stored, stats.total_messages, len(stats.commit_latency_ns)
    pids = recorder.pids
    cpu0, start = cpu_seconds(pids), time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed, cpu1 = time.perf_counter() - start, cpu_seconds(pids)
    stats = recorder.stats
    rows1, msgs1, lat1 = stats.total_stored, stats.total_messages, len(stats.commit_latency_ns)
    recorder.stop()
    stats = await task
    peak_kb = recorder.peak_rss_kb
    lat = sorted(stats.commit_latency_ns[lat0:lat1])

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * q))] / 1e6 if lat else float("nan")

    peak_rss_mb = (_peak_rss_mb() if processes == 1
                   else sum(peak_kb.values()) / 1024)  # every process of the fleet
    return Result(rate=(rows1 - rows0) / elapsed, stored=stats.total_stored,
                  p99_ms=pct(0.99), p50_ms=pct(0.5), max_ms=pct(1.0),
                  peak_rss_mb=peak_rss_mb, received_rate=(msgs1 - msgs0) / elapsed,
                  paused=stats.paused, batches=stats.batches,
                  processes=len(recorder.shards) or 1,
                  cpu_us_per_msg=(cpu1 - cpu0) / max(rows1 - rows0, 1) * 1e6,
                  extra={"connections": len(recorder.connections),
                         "peak_rss_mb_by_process": {k: v / 1024 for k, v in peak_kb.items()}})


# -- orchestration -------------------------------------------------------------------------------

def fresh_postgres_database(server_url: str, name: str) -> str:
    """Create an empty database ``bench_<name>_<random>`` on ``server_url``; return its URL."""
    import uuid

    import psycopg

    db = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db}"')
    return server_url.rsplit("/", 1)[0] + "/" + db


def drop_postgres_database(server_url: str, url: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def real_symbols(n: int) -> list[str]:
    """``n`` TRADING symbols of the bundled exchangeInfo, which the local exchange lists."""
    from binance_streamer.exchange.exchange_info import ExchangeInfo

    body = ExchangeInfo([], 6000).body
    names = [s["symbol"] for s in body["symbols"] if s.get("status") == "TRADING"]
    first = [s for s in ("BTCUSDT", "ETHUSDT", "BNBUSDT") if s in names]
    return (first + [s for s in names if s not in first])[:n]


def scenario(symbols: list[str], rate: float | None, client: Any, *args: Any) -> Result:
    """Start the exchange, run ``client(ws_url, rest_url?, *args, pipe)``, stop both."""
    ctx = mp.get_context("spawn")
    ex_recv, ex_send = ctx.Pipe(duplex=False)
    exchange = ctx.Process(target=serve_firehose, args=(symbols, rate, ex_send), daemon=True)
    exchange.start()
    worker: Any = None
    try:
        if not ex_recv.poll(60):
            raise RuntimeError("the exchange process did not start")
        ws_url, rest_url = ex_recv.recv()
        res_recv, res_send = ctx.Pipe(duplex=False)
        urls = (ws_url,) if client is run_naive else (ws_url, rest_url)
        # Not a daemon: a RecorderFleet starts child processes of its own.
        worker = ctx.Process(target=client, args=(*urls, *args, res_send))
        worker.start()
        while not res_recv.poll(1.0):
            if not worker.is_alive():
                raise RuntimeError(f"{client.__name__} exited with {worker.exitcode}")
        result: Result = res_recv.recv()
        worker.join(30)
        return result
    finally:
        for proc in (worker, exchange):
            if proc is not None and proc.is_alive():
                proc.terminate()
                proc.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window")
    parser.add_argument("--paced-rate", type=float, default=50_000.0, help="msgs/s in total")
    parser.add_argument("--scenario", choices=("all", *SCENARIOS), default="all")
    parser.add_argument("--json", action="store_true", help="also print the raw results")
    parser.add_argument("--batch-rows", type=int, help="override RecorderConfig.batch_rows")
    parser.add_argument("--batch-age-ms", type=float, help="override RecorderConfig.batch_age_s")
    parser.add_argument("--max-pending", type=int,
                        help="override RecorderConfig.max_pending_batches")
    parser.add_argument("--processes", default="1,2",
                        help="recorder process counts to compare, comma-separated (default 1,2)")
    parser.add_argument("--postgres", metavar="SERVER_URL",
                        help="record into a fresh database on this PostgreSQL server instead of "
                             "SQLite, e.g. postgresql://postgres@127.0.0.1/test")
    args = parser.parse_args()
    tuning: dict[str, Any] = {}
    if args.batch_rows is not None:
        tuning["batch_rows"] = args.batch_rows
    if args.batch_age_ms is not None:
        tuning["batch_age_s"] = args.batch_age_ms / 1000
    if args.max_pending is not None:
        tuning["max_pending_batches"] = args.max_pending
    counts = [int(n) for n in args.processes.split(",")]
    todo = SCENARIOS if args.scenario == "all" else (args.scenario,)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    three, many = real_symbols(3), real_symbols(200)
    results: dict[str, Result] = {}
    created: list[str] = []  # PostgreSQL databases to drop at the end
    load_before = os.getloadavg()
    for name in todo:
        for processes in [1] if name == "naive" else counts:
            key = name if processes == 1 else f"{name}x{processes}"
            db = str(tmp / f"{key}.db")
            if args.postgres and name != "naive":
                db = fresh_postgres_database(args.postgres, name)
                created.append(db)
            if name == "naive":
                results[key] = scenario(three, None, run_naive, three, args.seconds, db)
            elif name == "three":
                results[key] = scenario(three, None, run_recorder, three, args.seconds, db,
                                        200, tuning, processes)
            elif name == "wide":
                results[key] = scenario(many, None, run_recorder, many, args.seconds, db, 100,
                                        tuning, processes)
            else:
                results[key] = scenario(many, args.paced_rate, run_recorder, many,
                                        args.seconds, db, 100, tuning, processes)
    print_table(results, args.paced_rate, args.seconds)
    print(f"load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores")
    for url in created:
        drop_postgres_database(args.postgres, url)
    shutil.rmtree(tmp, ignore_errors=True)
    if tuning:
        print(f"recorder tuning: {tuning}")
    if args.json:
        print(json.dumps({k: asdict(v) for k, v in results.items()}, indent=1))


def print_table(results: dict[str, Result], paced_rate: float, seconds: float) -> None:
    rows: list[tuple[str, ...]] = []
    naive = results.get("naive")
    if naive:
        rows.append(("3 ticker streams, naive (tutorial)", f"{naive.rate:,.0f} msg/s",
                     f"{naive.peak_rss_mb:.0f} MB", "", "1.0x"))
    for key, res in results.items():
        name = key.partition("x")[0]
        procs = ("" if key == name else f", --processes {key.partition('x')[2]}"
                 + (f" ({res.processes} with streams)" if res.processes > 1 else
                    " (every stream in one shard)"))
        cpu = f"{res.cpu_us_per_msg:.1f} us"
        if name == "three":
            ratio = (f"{res.rate / naive.rate:,.0f}x naive (target >= 150x)" if naive else "")
            rows.append((f"3 ticker streams, recorder{procs}", f"{res.rate:,.0f} msg/s",
                         f"{res.peak_rss_mb:.0f} MB", cpu,
                         f"{ratio}; received {res.received_rate:,.0f}/s"))
        elif name == "wide":
            ok = "ok" if res.rate >= 200_000 else "MISSED"
            rows.append((f"200 ticker streams / 2 conns, recorder{procs}",
                         f"{res.rate:,.0f} msg/s", f"{res.peak_rss_mb:.0f} MB", cpu,
                         f"target >= 200,000: {ok}; 23 fields/row, p99 {res.p99_ms:.0f} ms, "
                         f"paused {res.paused}x"))
        elif name == "paced":
            ok = "ok" if res.p99_ms < 150 else "MISSED"
            rows.append((f"200 streams paced at {paced_rate:,.0f} msg/s{procs}",
                         f"{res.rate:,.0f} msg/s", f"{res.peak_rss_mb:.0f} MB", cpu,
                         f"receive->commit p50 {res.p50_ms:.0f} / p99 {res.p99_ms:.0f} / max "
                         f"{res.max_ms:.0f} ms (target p99 < 150: {ok})"))
    head = ("scenario", "persisted", "peak RSS", "CPU/msg", "notes")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    print(f"ingest, {seconds:g} s window per scenario, exchange and client in separate processes;"
          " peak RSS and CPU/msg summed over every recorder process (target CPU/msg <= 10 us)")
    for r in [head, *rows]:
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  "
              f"{r[3]:>{widths[3]}}  {r[4]}")


if __name__ == "__main__":
    main()
