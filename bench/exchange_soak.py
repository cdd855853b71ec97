"""Soak of the local exchange as a new user runs it: does it keep answering for hours?

    python bench/exchange_soak.py [--minutes 60] [--rate 500] [--symbols 4] [--every 5]
                                  [--history-limit N]

Starts ``binance-streamer replay --synthetic SYM ... --rate R --port 0`` as a child process
(the real command, signals included; with ``--history-limit`` a `LocalExchange` with that
bound, served the same way) and one client that subscribes to every symbol's
``@ticker`` and to ``!ticker_1h@arr``, answers the server's pings, and every ``--every``
seconds samples the server's RSS and the round trip of a WebSocket ping it sends. At the end it
sends SIGINT and times how long the server takes to exit, then prints the figures side by
side. Exit status 1 if a ping went unanswered, a stream went silent or the server did not stop
within a second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field

import aiohttp

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT",
           "DOTUSDT"]
PING_TIMEOUT_S = 10.0
STOP_LIMIT_S = 1.0


@dataclass
class Sample:
    """One sample: seconds since start, server RSS (MB), ping RTT (ms, None when unanswered)
    and the data frames received so far."""

    at_s: float
    rss_mb: float
    rtt_ms: float | None
    frames: int


@dataclass
class Client:
    """The subscribed client's counters."""

    frames: dict[str, int] = field(default_factory=dict)
    last_frame: float = 0.0
    pong: asyncio.Event = field(default_factory=asyncio.Event)
    pong_payload: bytes = b""


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def start_server(symbols: list[str], rate: float, history_limit: int | None
                       ) -> tuple[asyncio.subprocess.Process, str]:
    """The ``replay`` command (or `serve`) running on a free port, and its WebSocket URL."""
    args = [sys.executable, "-m", "binance_streamer.cli", "replay", "--port", "0"]
    if history_limit is not None:
        args = [sys.executable, __file__, "--serve", "--history-limit", str(history_limit)]
    args += ["--rate", str(rate)]
    for sym in symbols:
        args += ["--synthetic", sym]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    match = re.search(r"(ws://\S+)", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"unexpected first line from the server: {line!r}")
    return proc, match.group(1)


async def read(ws: aiohttp.ClientWebSocketResponse, client: Client) -> None:
    """Count data frames per stream; answer pings; note our pong."""
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            stream = msg.data[11:msg.data.index('"', 11)]
            client.frames[stream] = client.frames.get(stream, 0) + 1
            client.last_frame = time.monotonic()
        elif msg.type is aiohttp.WSMsgType.PING:
            await ws.pong(msg.data)
        elif msg.type is aiohttp.WSMsgType.PONG and msg.data == client.pong_payload:
            client.pong.set()


async def ping_rtt(ws: aiohttp.ClientWebSocketResponse, client: Client) -> float | None:
    """One WebSocket ping's round trip in ms, None when unanswered within PING_TIMEOUT_S."""
    client.pong = asyncio.Event()
    client.pong_payload = str(time.monotonic_ns()).encode()
    t0 = time.perf_counter()
    await ws.ping(client.pong_payload)
    try:
        await asyncio.wait_for(client.pong.wait(), PING_TIMEOUT_S)
    except TimeoutError:
        return None
    return (time.perf_counter() - t0) * 1000


async def stop_time(proc: asyncio.subprocess.Process) -> float:
    """Seconds from SIGINT to the server's exit (inf if it needed SIGKILL after 10 s)."""
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return float("inf")
    return time.perf_counter() - t0


async def soak(args: argparse.Namespace) -> int:
    symbols = SYMBOLS[:args.symbols]
    proc, ws_url = await start_server(symbols, args.rate, args.history_limit)
    streams = [f"{s.lower()}@ticker" for s in symbols] + ["!ticker_1h@arr"]
    client = Client()
    samples: list[Sample] = []
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{ws_url}/stream?streams={'/'.join(streams)}",
                                   autoping=False, max_msg_size=0)
        reader = asyncio.create_task(read(ws, client))
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < args.minutes * 60:
            sample = Sample(elapsed, rss_mb(proc.pid), await ping_rtt(ws, client),
                            sum(client.frames.values()))
            samples.append(sample)
            if args.verbose:
                print(f"{sample.at_s:7.0f} s  rss {sample.rss_mb:7.1f} MB  rtt "
                      f"{sample.rtt_ms if sample.rtt_ms is None else round(sample.rtt_ms, 1)}"
                      f" ms  frames {sample.frames}", flush=True)
            await asyncio.sleep(max(0.0, t0 + len(samples) * args.every - time.monotonic()))
        silent_s = time.monotonic() - client.last_frame
        frames = dict(client.frames)
        stopped_s = await stop_time(proc)
        reader.cancel()
        elapsed = time.monotonic() - t0
    return report(args, samples, frames, elapsed, silent_s, stopped_s, streams)


def report(args: argparse.Namespace, samples: list[Sample], frames: dict[str, int],
           elapsed: float, silent_s: float, stopped_s: float, streams: list[str]) -> int:
    """Print the figures side by side; the exit status (0 all good, 1 otherwise)."""
    rtts = [s.rtt_ms for s in samples if s.rtt_ms is not None]
    lost = len(samples) - len(rtts)
    first, last = samples[0], samples[-1]
    print(f"\nexchange soak: {args.symbols} synthetic symbols at --rate {args.rate:g}, "
          f"{elapsed / 60:.1f} min, one client on {len(streams)} streams, "
          f"{len(samples)} samples")
    print(f"{'figure':<34}{'start':>12}{'end':>12}{'max':>12}")
    print(f"{'server RSS (MB)':<34}{first.rss_mb:>12.1f}{last.rss_mb:>12.1f}"
          f"{max(s.rss_mb for s in samples):>12.1f}")
    if rtts:
        print(f"{'ping round trip (ms)':<34}{rtts[0]:>12.1f}{rtts[-1]:>12.1f}{max(rtts):>12.1f}"
              f"   (median {statistics.median(rtts):.1f}, unanswered {lost})")
    per_s = {s: n / elapsed for s, n in sorted(frames.items())}
    print(f"{'frames/s per stream':<34}" + ", ".join(f"{s} {r:.2f}" for s, r in per_s.items()))
    print(f"{'stop after SIGINT (s)':<34}{stopped_s:>12.2f}")
    ok = (not lost and silent_s < 5 and stopped_s <= STOP_LIMIT_S
          and all(frames.get(s) for s in streams))
    print("verdict: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


async def serve(args: argparse.Namespace) -> None:
    """The server side with ``--history-limit``: like ``replay``, stopped by SIGINT/SIGTERM."""
    from binance_streamer.exchange import LocalExchange

    async with LocalExchange(synthetic=args.synthetic, rate=args.rate, port=0,
                             history_limit=args.history_limit) as ex:
        print(f"WebSocket: {ex.ws_url}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--symbols", type=int, default=4, choices=range(1, len(SYMBOLS) + 1))
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--history-limit", type=int, default=None,
                        help="serve a LocalExchange with this history_limit instead of the "
                             "command (which keeps 1,000,000 per stream)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every sample")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--synthetic", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.serve:
        asyncio.run(serve(args))
        return
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
