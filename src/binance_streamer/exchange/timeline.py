"""The drivers of the shared timeline: the replay of recorded files and the synthetic market.

Replay: recorded items are published at their recorded offsets divided by ``speed`` (or as fast
as subscribers drain them with ``speed=None``), with the derived periodic streams computed on a
100 ms grid of the replay timeline. Synthetic: one trade step per ``1/rate`` s per symbol and the
100 ms grid for depth diffs and derived streams, on the wall clock.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Sequence

from binance_streamer.exchange.market import Market, SymbolState
from binance_streamer.exchange.sources import Recorded, ReplaySource
from binance_streamer.exchange.synthetic import SyntheticSymbol

__all__ = ["register_sources", "run_replay", "run_synthetic"]

GRID_MS = 100
MAX_BACKLOG_S = 1.0
_BATCH = 512


def register_sources(market: Market, sources: Sequence[ReplaySource]) -> None:
    """Create state for every replayed symbol: its recorded streams, clock base and first book."""
    for src in sources:
        for item in src.items:
            if item.snapshot_symbol:
                state = market.symbol(item.snapshot_symbol)
                if not state.book.last_update_id:
                    market.snapshot(item.snapshot_symbol, item.payload)
                continue
            payload = item.payload
            if isinstance(payload, dict) and isinstance(payload.get("s"), str):
                state = market.symbol(payload["s"])
                state.recorded.add(item.stream)
                state.base_ms = state.base_ms or src.base_ms


def _merged(sources: Sequence[ReplaySource]) -> list[Recorded]:
    return list(heapq.merge(*(s.items for s in sources), key=lambda r: r.offset_ms))


async def run_replay(market: Market, sources: Sequence[ReplaySource], speed: float | None,
                     loop: bool) -> None:
    """Publish every recorded item once (or forever with ``loop``); returns at the end."""
    items = _merged(sources)
    if not items:
        return
    while True:
        await _replay_once(market, items, speed)
        if not loop:
            return
        await market.hub.drained()
        await asyncio.sleep(0)  # a short recording at max speed must not starve the loop


async def _replay_once(market: Market, items: list[Recorded], speed: float | None) -> None:
    start = time.monotonic()
    next_grid = GRID_MS
    for n, item in enumerate(items):
        while next_grid <= item.offset_ms:
            await _pace(start, next_grid, speed)
            market.periodic(_replay_clock(next_grid), next_grid, synthetic=False)
            next_grid += GRID_MS
        await _pace(start, item.offset_ms, speed)
        if item.snapshot_symbol:
            market.snapshot(item.snapshot_symbol, item.payload)
        else:
            market.publish(item.stream, item.payload)
        if speed is None and n % _BATCH == _BATCH - 1:
            await market.hub.drained()
            await asyncio.sleep(0)


def _replay_clock(offset_ms: int) -> Callable[[SymbolState], int]:
    """Event times on the replay timeline: each symbol's recorded clock plus the offset."""
    def clock(state: SymbolState) -> int:
        return state.base_ms + offset_ms
    return clock


async def _pace(start: float, offset_ms: float, speed: float | None) -> None:
    if speed is None:
        return
    delay = start + offset_ms / 1000 / speed - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def run_synthetic(market: Market, symbols: Sequence[SyntheticSymbol], rate: float) -> None:
    """Run the synthetic market forever: trade steps at ``rate``/s, the 100 ms grid.

    Best effort: if the machine cannot generate ``rate`` steps per second, the steps that are
    more than ``MAX_BACKLOG_S`` late are skipped (ids stay contiguous; only the rate drops).
    """
    start = time.monotonic()
    period = 1.0 / rate
    steps = 0
    grid = 1
    batch = max(1, 1000 // max(1, len(symbols)))  # steps per turn of the event loop (~20 ms)

    def clock(_: SymbolState) -> int:
        return _wall_ms()

    while True:
        next_step = start + steps * period
        next_grid = start + grid * GRID_MS / 1000
        due = min(next_step, next_grid)
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        if now - (start + steps * period) > MAX_BACKLOG_S:  # cannot keep up: drop the backlog
            steps = int((now - start) / period)
        grid = max(grid, int((now - start) * 1000 / GRID_MS) - 10)
        done = 0
        while start + steps * period <= now and done < batch:
            for sym in symbols:
                sym.step(_wall_ms())
            steps += 1
            done += 1
        while start + grid * GRID_MS / 1000 <= now:
            for sym in symbols:
                sym.grid(_wall_ms(), grid * GRID_MS)
            market.periodic(clock, grid * GRID_MS, synthetic=True)
            grid += 1
        if done >= batch:  # behind schedule: let subscribers drain and others run
            await market.hub.drained()
            await asyncio.sleep(0)
