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
  (receive-to-commit p99).

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
import resource
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
    extra: dict[str, Any] = field(default_factory=dict)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
                 per_connection: int, tuning: dict[str, Any], pipe: Connection) -> None:
    """Child process: binance-streamer's Recorder on ``<symbol>@ticker`` for every symbol;
    ``tuning`` overrides RecorderConfig fields (batch_rows, batch_age_s, ...)."""
    pipe.send(asyncio.run(_recorder(ws_url, rest_url, symbols, seconds, db, per_connection,
                                    tuning)))


async def _recorder(ws_url: str, rest_url: str, symbols: list[str], seconds: float, db: str,
                    per_connection: int, tuning: dict[str, Any]) -> Result:
    from binance_streamer import Recorder, RecorderConfig

    recorder = Recorder(RecorderConfig(
        symbols=symbols, streams=["ticker"], database=db, ws_url=ws_url, rest_url=rest_url,
        max_streams_per_connection=per_connection, backfill=False, **tuning))
    task = asyncio.create_task(recorder.run())
    stats = recorder.stats
    await recorder.wait_until(lambda s: s.total_stored > 0, timeout=30)
    await asyncio.sleep(WARMUP_S)
    rows0, msgs0, lat0 = stats.total_stored, stats.total_messages, len(stats.commit_latency_ns)
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - start
    rows1, msgs1, lat1 = stats.total_stored, stats.total_messages, len(stats.commit_latency_ns)
    recorder.stop()
    await task
    lat = sorted(stats.commit_latency_ns[lat0:lat1])

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * q))] / 1e6 if lat else float("nan")

    return Result(rate=(rows1 - rows0) / elapsed, stored=stats.total_stored,
                  p99_ms=pct(0.99), p50_ms=pct(0.5), max_ms=pct(1.0),
                  peak_rss_mb=_peak_rss_mb(), received_rate=(msgs1 - msgs0) / elapsed,
                  paused=stats.paused, batches=stats.batches,
                  extra={"connections": len(recorder.connections)})


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
        worker = ctx.Process(target=client, args=(*urls, *args, res_send), daemon=True)
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
    todo = SCENARIOS if args.scenario == "all" else (args.scenario,)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    three, many = real_symbols(3), real_symbols(200)
    results: dict[str, Result] = {}
    created: list[str] = []  # PostgreSQL databases to drop at the end
    for name in todo:
        db = str(tmp / f"{name}.db")
        if args.postgres and name != "naive":
            db = fresh_postgres_database(args.postgres, name)
            created.append(db)
        if name == "naive":
            results[name] = scenario(three, None, run_naive, three, args.seconds, db)
        elif name == "three":
            results[name] = scenario(three, None, run_recorder, three, args.seconds, db, 200,
                                     tuning)
        elif name == "wide":
            results[name] = scenario(many, None, run_recorder, many, args.seconds, db, 100,
                                     tuning)
        else:
            results[name] = scenario(many, args.paced_rate, run_recorder, many, args.seconds,
                                     db, 100, tuning)
    print_table(results, args.paced_rate, args.seconds)
    for url in created:
        drop_postgres_database(args.postgres, url)
    if tuning:
        print(f"recorder tuning: {tuning}")
    if args.json:
        print(json.dumps({k: asdict(v) for k, v in results.items()}, indent=1))


def print_table(results: dict[str, Result], paced_rate: float, seconds: float) -> None:
    rows: list[tuple[str, str, str, str]] = []
    naive, three = results.get("naive"), results.get("three")
    if naive:
        rows.append(("3 ticker streams, naive (tutorial)", f"{naive.rate:,.0f} msg/s",
                     f"{naive.peak_rss_mb:.0f} MB", "1.0x"))
    if three:
        ratio = f"{three.rate / naive.rate:,.0f}x naive (target >= 100x)" if naive else ""
        rows.append(("3 ticker streams, recorder", f"{three.rate:,.0f} msg/s",
                     f"{three.peak_rss_mb:.0f} MB", ratio))
    if wide := results.get("wide"):
        ok = "ok" if wide.rate >= 100_000 else "MISSED"
        rows.append(("200 ticker streams / 2 conns, recorder", f"{wide.rate:,.0f} msg/s",
                     f"{wide.peak_rss_mb:.0f} MB",
                     f"target >= 100,000: {ok}; 23 fields/row, p99 {wide.p99_ms:.0f} ms, "
                     f"paused {wide.paused}x"))
        ok = "ok" if wide.peak_rss_mb < 150 else "MISSED"
        rows.append(("  peak RSS of the recorder at saturation", f"{wide.peak_rss_mb:.0f} MB",
                     "", f"target < 150 MB: {ok}"))
    if paced := results.get("paced"):
        ok = "ok" if paced.p99_ms < 150 else "MISSED"
        rows.append((f"200 streams paced at {paced_rate:,.0f} msg/s", f"{paced.rate:,.0f} msg/s",
                     f"{paced.peak_rss_mb:.0f} MB",
                     f"receive->commit p50 {paced.p50_ms:.0f} / p99 {paced.p99_ms:.0f} / max "
                     f"{paced.max_ms:.0f} ms (target p99 < 150: {ok})"))
    head = ("scenario", "persisted", "peak RSS", "notes")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    print(f"ingest, {seconds:g} s window per scenario, exchange and client in separate processes")
    for r in [head, *rows]:
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}")


if __name__ == "__main__":
    main()
