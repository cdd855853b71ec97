"""How long does a trade gap wait while the whole market's initial depth snapshots queue? (issue
12: 1,500 symbols x depth@100ms at Binance's 6,000 request weight per minute.)

Runs the real `Backfiller` (io/backfill.py) on a simulated clock: an asyncio event loop whose
time jumps to the next timer instead of sleeping, so 20 simulated minutes take seconds. The REST
server is simulated too: each request takes ``--rtt-ms``, costs Binance's weight (rest-api.md
"Market Data endpoints", "Order book"), is counted in fixed wall-clock minutes and reported in
``X-MBX-USED-WEIGHT-1M``; past the limit it answers 429 with Retry-After until the minute ends
(rest-api.md "LIMITS"). At t=0, 1,500 ``NeedSnapshot`` requests queue; at each ``--gap-at``
second (of the first minute) a trade gap of ``--gap-pages`` historicalTrades pages (weight 25
each) is requested in a fresh run. Baseline in the same run: the Backfiller and backfill queue of
commit ``--baseline`` (from git), same server, same clock.

    .venv/bin/python bench/backfill_budget.py [--gap-at 5 30 55] [--gap-pages 1 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import selectors
import subprocess
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binance_streamer.core.backfill_queue import depth_weight
from binance_streamer.core.rest_payloads import DepthSnapshot, RestAggTrade, RestTrade
from binance_streamer.core.sequencing import GapDetected, NeedSnapshot
from binance_streamer.errors import RateLimited
from binance_streamer.io import backfill as current

ROOT = Path(__file__).resolve().parents[1]
EPOCH = 1_800_000_000.0  # a wall-clock time at the start of a minute
LIMIT = 6_000


class _Clock:
    now = 0.0


class _JumpSelector(selectors.BaseSelector):
    """A selector with nothing to wait for: `select` moves the clock to the next timer."""

    def __init__(self, clock: _Clock) -> None:
        self._clock = clock
        self._keys: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = self._keys[fileobj] = selectors.SelectorKey(fileobj, fd, events, data)
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("the simulation has nothing scheduled: it would wait forever")
        self._clock.now += max(0.0, timeout)
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._keys


def simulated_loop() -> asyncio.AbstractEventLoop:
    clock = _Clock()
    loop = asyncio.SelectorEventLoop(_JumpSelector(clock))
    loop.time = lambda: clock.now  # type: ignore[method-assign]
    return loop


@dataclass
class SimRest:
    """Binance's REST weight accounting, answering after ``rtt`` seconds."""

    rtt: float
    microseconds: bool = False
    weight_limit: int = LIMIT
    used_weight: int = 0
    over_limit: int = 0  # requests answered 429
    peak: int = 0  # the most weight counted in one minute
    _window: int = -1
    _total: int = 0
    snapshot_id: int = 0
    log: list[tuple[float, str]] = field(default_factory=list)

    async def _charge(self, endpoint: str, weight: int) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.rtt / 2)
        wall = EPOCH + loop.time()
        if int(wall // 60) != self._window:
            self._window, self._total = int(wall // 60), 0
        self._total += weight
        self.peak = max(self.peak, self._total)
        await asyncio.sleep(self.rtt / 2)
        self.used_weight = self._total
        self.log.append((loop.time(), endpoint))
        if self._total > self.weight_limit:
            self.over_limit += 1
            raise RateLimited(429, math.ceil(60.0 - wall % 60.0), "Too much request weight used")

    async def depth(self, symbol: str, limit: int) -> DepthSnapshot:
        await self._charge("depth", depth_weight(limit))
        self.snapshot_id += 1
        return DepthSnapshot(self.snapshot_id, [("1.0", "2.0")], [("1.1", "3.0")])

    async def historical_trades(self, symbol: str, from_id: int, limit: int) -> list[RestTrade]:
        await self._charge("historicalTrades", 25)
        return [RestTrade(i, "1.0", "2.0", i, False) for i in range(from_id, from_id + limit)]

    async def agg_trades(self, symbol: str, from_id: int, limit: int) -> list[RestAggTrade]:
        await self._charge("aggTrades", 4)
        return [RestAggTrade(i, "1.0", "2.0", i, i, i, True, True)
                for i in range(from_id, from_id + limit)]


def baseline(rev: str) -> type[Any]:
    """The Backfiller of commit ``rev``, with that commit's backfill queue."""
    def show(path: str) -> str:
        return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
    queue = types.ModuleType("_baseline_backfill_queue")
    sys.modules[queue.__name__] = queue
    exec(compile(show("src/binance_streamer/core/backfill_queue.py"), "baseline_queue", "exec"),
         queue.__dict__)
    source = show("src/binance_streamer/io/backfill.py").replace(
        "from binance_streamer.core.backfill_queue import", f"from {queue.__name__} import")
    module = types.ModuleType("_baseline_backfill")
    sys.modules[module.__name__] = module
    exec(compile(source, "baseline_backfill", "exec"), module.__dict__)
    backfiller: type[Any] = module.Backfiller
    return backfiller


@dataclass
class Outcome:
    gap_wait_s: float  # from the gap's request until it was filled
    snapshots_before: int  # snapshots stored in that time
    all_snapshots_s: float  # from t=0 until the 1,500th snapshot was stored
    over_limit: int
    peak: int


async def scenario(make: Callable[..., Any], symbols: int, gap_at: float, pages: int,
                   rtt: float) -> Outcome:
    loop = asyncio.get_running_loop()
    rest = SimRest(rtt)
    stored: list[float] = []
    filled: list[float] = []
    finished = asyncio.Event()

    def note(times: list[float]) -> None:
        times.append(loop.time())
        if filled and len(stored) >= symbols:
            finished.set()

    fill = make(rest, lambda _t, _rows: None, lambda _g, _n: note(filled),
                snapshot_taken=lambda *_: note(stored), wall=lambda: EPOCH + loop.time())
    task = asyncio.create_task(fill.run())
    for i in range(symbols):
        fill.request(NeedSnapshot(f"s{i}usdt@depth@100ms", "initial"))
    await asyncio.sleep(gap_at)
    asked_at = loop.time()
    fill.request(GapDetected("btcusdt@trade", 1, pages * 1000, "id gap"))
    await finished.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    meanwhile = sum(1 for at in stored if asked_at <= at <= filled[0])
    return Outcome(filled[0] - asked_at, meanwhile, stored[symbols - 1], rest.over_limit,
                   rest.peak)


def run(make: Callable[..., Any], symbols: int, gap_at: float, pages: int, rtt: float
        ) -> Outcome:
    loop = simulated_loop()
    try:
        return loop.run_until_complete(scenario(make, symbols, gap_at, pages, rtt))
    finally:
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1_500)
    parser.add_argument("--gap-at", type=float, nargs="+", default=[5.0, 30.0, 55.0])
    parser.add_argument("--gap-pages", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("--baseline", default="701c4f9",
                        help="the commit whose Backfiller is the baseline")
    args = parser.parse_args()
    makers = {f"baseline {args.baseline}": baseline(args.baseline),
              "this tree": current.Backfiller}
    print(f"{args.symbols} snapshots queued at t=0, {LIMIT} weight/min, RTT {args.rtt_ms:g} ms;"
          " a historicalTrades gap requested at t=gap-at s")
    print(f"{'backfiller':<20} {'gap at':>7} {'pages':>5} {'gap filled after':>17} "
          f"{'snapshots meanwhile':>19} {'all snapshots':>14} {'429s':>5} {'peak w/min':>10}")
    for pages in args.gap_pages:
        for gap_at in args.gap_at:
            for name, make in makers.items():
                o = run(make, args.symbols, gap_at, pages, args.rtt_ms / 1000)
                print(f"{name:<20} {gap_at:>6.0f}s {pages:>5} {o.gap_wait_s:>16.2f}s "
                      f"{o.snapshots_before:>19} {o.all_snapshots_s / 60:>11.1f} min "
                      f"{o.over_limit:>5} {o.peak:>10}")


if __name__ == "__main__":
    main()
