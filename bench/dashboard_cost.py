"""Dashboard cost benchmark: does drawing `record`'s live dashboard slow recording down?

The ingest benchmark's firehose (`bench/ingest.py`: a `LocalExchange` publishing 24hrTickers of
200 symbols as fast as the client reads, in a process of its own) feeds a `Recorder` in another
process, which runs for ``--seconds`` in each mode, alternating, ``--rounds`` times, in one run:

* ``none``: no display (the baseline);
* ``dashboard``: the live dashboard drawn once a second as `record` draws it (a `Monitor` sample
  and a rich `Live` refresh on an 80 x 24 terminal, written to /dev/null);
* ``dashboard x10``: drawn ten times a second (a stress case: ten times what `record` does);
* ``metrics x10``: ``/metrics`` scraped ten times a second over HTTP (aiohttp) in-process
  (its "frame" is the time to collect and format the metrics once, the HTTP wait left out).

Printed: rows persisted per second and CPU per row for each mode, the median over the rounds,
beside the baseline, and the mean time one dashboard frame takes to sample and draw.

    .venv/bin/python bench/dashboard_cost.py [--seconds 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ingest import WARMUP_S, cpu_seconds, real_symbols, scenario

MODES = ("none", "dashboard", "dashboard x10", "metrics x10")


@dataclass
class Run:
    """One mode's measuring window."""

    rate: float  # rows persisted per second
    cpu_us_per_row: float
    frame_ms: float  # mean sample + draw time of one dashboard frame (or scrape), 0: none


def run_client(ws_url: str, rest_url: str, symbols: list[str], seconds: float, db: str,
               mode: str, pipe: Connection) -> None:
    """Child process: a Recorder on ``<symbol>@ticker`` of ``symbols``, shown as ``mode``."""
    pipe.send(asyncio.run(_client(ws_url, rest_url, symbols, seconds, db, mode)))


async def _client(ws_url: str, rest_url: str, symbols: list[str], seconds: float, db: str,
                  mode: str) -> Run:
    from rich.console import Console
    from rich.live import Live

    from binance_streamer import RecorderConfig
    from binance_streamer.cli.record_display import dashboard
    from binance_streamer.metrics import MetricsServer
    from binance_streamer.monitor import Monitor
    from binance_streamer.recorder import Recorder

    recorder = Recorder(RecorderConfig(symbols=symbols, streams=["ticker"], database=db,
                                       ws_url=ws_url, rest_url=rest_url,
                                       max_streams_per_connection=100, backfill=False))
    task = asyncio.create_task(recorder.run())
    await recorder.wait_until(lambda s: s.total_stored > 0, timeout=60)
    await asyncio.sleep(WARMUP_S)
    monitor = Monitor(recorder, window_s=5.0)
    frames: list[float] = []
    period = 1.0 if mode == "dashboard" else 0.1
    stop = asyncio.Event()

    async def draw() -> None:
        with open(os.devnull, "w") as sink:  # noqa: ASYNC230 - /dev/null never blocks
            console = Console(file=sink, force_terminal=True, width=80, height=24)
            with Live(console=console, auto_refresh=False, transient=True) as live:
                while not stop.is_set():
                    began = time.perf_counter()
                    live.update(dashboard(monitor.sample(), 80, 24), refresh=True)
                    frames.append(time.perf_counter() - began)
                    await asyncio.sleep(period)

    async def scrape() -> None:
        import aiohttp
        from prometheus_client import generate_latest

        async with MetricsServer(monitor, 0, "127.0.0.1") as server, \
                aiohttp.ClientSession() as http:
            while not stop.is_set():
                async with http.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
                    await resp.read()
                began = time.perf_counter()  # what a scrape costs the loop, without the wait
                generate_latest(server.registry)
                frames.append(time.perf_counter() - began)
                await asyncio.sleep(period / 2)

    shower = (None if mode == "none" else
              asyncio.create_task(scrape() if mode.startswith("metrics") else draw()))
    rows0, pids = recorder.stats.total_stored, [os.getpid()]
    cpu0, start = cpu_seconds(pids), time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed, cpu1 = time.perf_counter() - start, cpu_seconds(pids)
    rows = recorder.stats.total_stored - rows0
    stop.set()
    if shower is not None:
        await shower
    recorder.stop()
    await task
    return Run(rows / elapsed, (cpu1 - cpu0) / max(rows, 1) * 1e6,
               statistics.mean(frames) * 1000 if frames else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring window per mode")
    parser.add_argument("--rounds", type=int, default=2, help="times each mode runs")
    args = parser.parse_args()
    symbols = real_symbols(200)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    runs: dict[str, list[Run]] = {mode: [] for mode in MODES}
    load_before = os.getloadavg()
    try:
        for round_ in range(args.rounds):
            for mode in MODES:  # alternating, so drift hits every mode alike
                db = str(tmp / f"{mode.replace(' ', '_')}-{round_}.db")
                runs[mode].append(scenario(symbols, None, run_client, symbols, args.seconds,
                                           db, mode))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(r.rate for r in runs["none"])
    print(f"dashboard cost: Recorder on 200 ticker streams / 2 connections at full speed, "
          f"{args.seconds:g} s per window, {args.rounds} round(s) alternating, median shown")
    print(f"{'mode':<15} {'persisted':>14} {'vs none':>8} {'CPU/row':>9} {'frame':>9}  rounds")
    for mode, mode_runs in runs.items():
        rate = statistics.median(r.rate for r in mode_runs)
        cpu = statistics.median(r.cpu_us_per_row for r in mode_runs)
        frame = statistics.mean(r.frame_ms for r in mode_runs)
        each = ", ".join(f"{r.rate:,.0f}" for r in mode_runs)
        print(f"{mode:<15} {rate:>10,.0f} r/s {rate / base - 1:>+8.1%} {cpu:>6.1f} us "
              f"{frame:>6.2f} ms  {each}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}, after: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
