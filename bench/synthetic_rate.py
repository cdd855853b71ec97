"""How many messages per second can the synthetic market offer a subscribed client, on one core?

    python bench/synthetic_rate.py [--symbols 1500] [--seconds 10] [--rate 60000]
                                   [--baseline-rate 30000] [--profile FILE]

Two rows, side by side in one run, each with its own exchange process (one core) and one
counting client process (picows, the other core) subscribed to every symbol's ``@trade``,
``@bookTicker`` and ``@depth@100ms`` over combined-stream connections of at most 1024 streams:

* **baseline**: the synthetic market of commit `BASELINE_COMMIT` (before this bench), exported
  from git into a temporary directory and imported from there: one `SyntheticSymbol` per symbol,
  all at the same step rate (``--baseline-rate`` steps/s in total), Decimal arithmetic, dict
  payloads through `Market.publish`;
* **market**: `SyntheticMarket` of this tree, ``--rate`` aggregate-trade steps/s in total over
  the symbols with Zipf-skewed rates, integer ticks and lots, JSON text built once per event.

Both get the same symbols (the real TRADING spot symbols first). After ``--warmup`` seconds,
for ``--seconds`` each row reports what the exchange sent (frames queued on the connections),
what the client received, and the exchange process's CPU time over the window (``os.times``
user + system) per message sent and as a share of one core. Both generators are best effort:
asked for more than they can make, they fall behind and skip, so the offered rate is what they
reach with their core saturated (CPU share near 100 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASELINE_COMMIT = "4327d3a"
ROOT = Path(__file__).resolve().parent.parent
KINDS = ("trade", "bookTicker", "depth@100ms")
MAX_STREAMS = 1024


# -- the counting client (its own process) --------------------------------------------------------

async def _count(url: str, streams: list[str]) -> None:
    import picows

    counted = [0]

    class Counter(picows.WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type is picows.WSMsgType.TEXT:
                counted[0] += 1
            elif frame.msg_type is picows.WSMsgType.PING:
                transport.send_pong(frame.get_payload_as_bytes())

    transports = []
    for i in range(0, len(streams), MAX_STREAMS):
        part = "/".join(streams[i:i + MAX_STREAMS])
        transport, _ = await picows.ws_connect(Counter, f"{url}/stream?streams={part}",
                                               max_frame_size=1 << 24)
        transports.append(transport)
    print("ready", flush=True)
    while (await asyncio.to_thread(sys.stdin.readline)).strip():
        t = os.times()
        print(json.dumps({"received": counted[0], "at": time.perf_counter(),
                          "cpu": t.user + t.system}), flush=True)
    for transport in transports:
        transport.disconnect()


# -- the exchange (its own process) ---------------------------------------------------------------

async def _serve(mode: str, symbols: list[str], rate: float, profile: str | None) -> None:
    from binance_streamer.exchange import LocalExchange

    if mode == "baseline":
        ex = LocalExchange(synthetic=symbols, rate=rate / len(symbols), history_limit=1000)
        runner = None
    else:
        from binance_streamer.exchange.synthetic_market import SyntheticMarket

        ex = LocalExchange(history_limit=1000)
        runner = SyntheticMarket(ex.market, symbols, total_rate=rate, seed=0,
                                 rest_history=mode == "market").run
    async with ex:
        task = asyncio.ensure_future(runner()) if runner is not None else None
        print(ex.ws_url, flush=True)
        prof = None
        while (await asyncio.to_thread(sys.stdin.readline)).strip():
            if profile and prof is None:
                import cProfile
                prof = cProfile.Profile()
                prof.enable()
            elif prof is not None:
                prof.disable()
                prof.dump_stats(profile)
            t = os.times()
            print(json.dumps({"cpu": t.user + t.system, "at": time.perf_counter(),
                              "sent": sum(c.sent for c in ex.connections)}), flush=True)
        if task is not None:
            task.cancel()


# -- the parent -----------------------------------------------------------------------------------

def _child(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


def _ask(proc: subprocess.Popen[str]) -> Any:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("mark\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def _baseline_tree(tmp: str) -> str:
    """The package as of `BASELINE_COMMIT`, exported into ``tmp``; its ``src`` directory."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE_COMMIT, "src"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    return str(Path(tmp) / "src")


def measure(mode: str, symbols: list[str], rate: float, args: argparse.Namespace,
            src: str) -> dict[str, float]:
    """Run one exchange and one client; the figures of the measured window."""
    env = dict(os.environ, PYTHONPATH=src)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(symbols, fh)
    serve_args = ["--serve", mode, "--symbols-file", fh.name, "--rate", str(rate)]
    if args.profile:
        serve_args += ["--profile", f"{args.profile}.{mode}"]
    exchange = _child(serve_args, env)
    assert exchange.stdout is not None
    url = exchange.stdout.readline().strip()
    client = _child(["--count", url, "--symbols-file", fh.name], env)
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "ready"
    time.sleep(args.warmup)
    s0, c0 = _ask(exchange), _ask(client)
    time.sleep(args.seconds)
    s1, c1 = _ask(exchange), _ask(client)
    for proc in (client, exchange):
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)
    os.unlink(fh.name)
    sent = s1["sent"] - s0["sent"]
    cpu = s1["cpu"] - s0["cpu"]
    return {"sent": sent / (s1["at"] - s0["at"]),
            "received": (c1["received"] - c0["received"]) / (c1["at"] - c0["at"]),
            "cpu_us": cpu / max(sent, 1) * 1e6, "core": cpu / (s1["at"] - s0["at"]),
            "client_core": (c1["cpu"] - c0["cpu"]) / (c1["at"] - c0["at"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=40_000.0)
    parser.add_argument("--baseline-rate", type=float, default=30_000.0)
    parser.add_argument("--profile", help="cProfile the exchange over the window into "
                        "FILE.<row> (slows it down: the rates are then not comparable)")
    parser.add_argument("--serve", choices=("baseline", "market", "market-no-rest"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--count", help=argparse.SUPPRESS)
    parser.add_argument("--symbols-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve or args.count:
        symbols = json.loads(Path(args.symbols_file).read_text())
        if args.count:
            streams = [f"{s.lower()}@{kind}" for s in symbols for kind in KINDS]
            asyncio.run(_count(args.count, streams))
        else:
            asyncio.run(_serve(args.serve, symbols, args.rate, args.profile))
        return
    from binance_streamer.exchange.listings import market_symbols

    symbols = market_symbols(args.symbols)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        baseline_src = _baseline_tree(tmp)
        rows.append((f"baseline ({BASELINE_COMMIT}): SyntheticSymbol x {len(symbols)}, "
                     f"{args.baseline_rate:,.0f} steps/s asked",
                     measure("baseline", symbols, args.baseline_rate, args, baseline_src)))
    for mode, what in (("market", "REST history"), ("market-no-rest", "no REST history")):
        rows.append((f"SyntheticMarket x {len(symbols)}, Zipf, {what}, "
                     f"{args.rate:,.0f} steps/s asked",
                     measure(mode, symbols, args.rate, args, str(ROOT / "src"))))
    print(f"synthetic market, {len(symbols)} symbols x {', '.join(KINDS)}, "
          f"{args.seconds:g} s window, exchange and client in separate processes")
    width = max(len(name) for name, _ in rows)
    print(f"{'exchange':<{width}}  {'sent msg/s':>11}  {'received':>11}  {'CPU/msg':>8}  "
          f"{'core':>4}  {'msg/s at 1 core':>15}")
    for name, r in rows:
        print(f"{name:<{width}}  {r['sent']:>11,.0f}  {r['received']:>11,.0f}  "
              f"{r['cpu_us']:>6.1f}us  {r['core']:>4.0%}  {1e6 / r['cpu_us']:>15,.0f}")
    base = rows[0][1]
    for name, r in rows[1:]:
        print(f"{name.split(',')[0]} ({name.split(', ')[2]}): "
              f"{r['received'] / base['received']:.1f}x the baseline's messages received, "
              f"{base['cpu_us'] / r['cpu_us']:.1f}x less CPU per message")


if __name__ == "__main__":
    main()
