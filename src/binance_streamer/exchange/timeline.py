"""The drivers of the shared timeline: the replay of recorded files and the synthetic market.

Replay: recorded items are published at their recorded offsets divided by ``speed`` (or as fast
as subscribers drain them with ``speed=None``), with the derived periodic streams computed on a
100 ms grid of the replay timeline. Synthetic: one trade step per ``1/rate`` s per symbol and the
100 ms grid for depth diffs and derived streams, scheduled from the wall clock at the start:
every event carries its scheduled time, and steps and grid points are published in time order.
Event times at multiples of 1000 ms are on each symbol's second grid (`SymbolState.tape`), so
rolling windows are made of whole seconds.

Both drivers hand the event loop back at least every `TURN_S` of work, even when behind
schedule, so pings and pongs (web-socket-streams.md "WebSocket Limits"), REST, new connections
and signal handlers (SIGINT/SIGTERM) are never starved.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Sequence

from binance_streamer.exchange.market import Market, SymbolState
from binance_streamer.exchange.sources import Recorded, ReplaySource
from binance_streamer.exchange.synthetic import SyntheticSymbol

__all__ = ["register_sources", "run_replay", "run_synthetic"]

GRID_MS = 100
MAX_BACKLOG_S = 1.0
TURN_S = 0.02  # the longest run of work between two yields to the event loop
_BATCH = 512
log = logging.getLogger(__name__)


class _Turns:
    """Yields to the event loop once a turn of `TURN_S` is used up."""

    def __init__(self) -> None:
        self.until = time.monotonic() + TURN_S

    def over(self) -> bool:
        """Whether this turn is used up."""
        return time.monotonic() >= self.until

    async def pause(self) -> None:
        """Let every other task and callback run once; a new turn starts."""
        await asyncio.sleep(0)
        self.until = time.monotonic() + TURN_S


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
                market.mark_recorded(state, item.stream)
                if not state.base_ms:
                    state.base_ms = src.base_ms
                    state.tape.set_phase(src.base_ms)  # the replay clock's seconds


def _merged(sources: Sequence[ReplaySource]) -> list[Recorded]:
    return list(heapq.merge(*(s.items for s in sources), key=lambda r: r.offset_ms))


async def run_replay(market: Market, sources: Sequence[ReplaySource], speed: float | None,
                     loop: bool) -> None:
    """Publish every recorded item once (or forever with ``loop``); returns at the end.

    At the end (without ``loop``) the log says so in one line and `Market.end_replay` makes
    later subscriptions that can get no data closed with 1000 "Replay ended".
    """
    items = _merged(sources)
    if not items:
        return
    while True:
        await _replay_once(market, items, speed)
        if not loop:
            break
        await market.hub.drained()
        await asyncio.sleep(0)  # a short recording at max speed must not starve the loop
    log.warning("replay ended: all %d recorded events (%.1f s) were published; new "
                "subscriptions are closed with 1000 'Replay ended' (--loop replays forever)",
                len(items), items[-1].offset_ms / 1000)
    market.end_replay()


async def _replay_once(market: Market, items: list[Recorded], speed: float | None) -> None:
    start = time.monotonic()
    next_grid = GRID_MS
    turns = _Turns()
    for n, item in enumerate(items):
        while next_grid <= item.offset_ms:
            await _pace(start, next_grid, speed, turns)
            market.periodic(_replay_clock(next_grid), next_grid, synthetic=False)
            next_grid += GRID_MS
        await _pace(start, item.offset_ms, speed, turns)
        if item.snapshot_symbol:
            market.snapshot(item.snapshot_symbol, item.payload)
        else:
            market.publish(item.stream, item.payload)
        if speed is None and n % _BATCH == _BATCH - 1:
            await market.hub.drained()
            await turns.pause()


def _replay_clock(offset_ms: int) -> Callable[[SymbolState], int]:
    """Event times on the replay timeline: each symbol's recorded clock plus the offset."""
    def clock(state: SymbolState) -> int:
        return state.base_ms + offset_ms
    return clock


async def _pace(start: float, offset_ms: float, speed: float | None, turns: _Turns) -> None:
    """Wait for ``offset_ms`` of the replay; behind schedule, still yield once per turn."""
    if speed is None:
        return
    delay = start + offset_ms / 1000 / speed - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
        turns.until = time.monotonic() + TURN_S
    elif turns.over():
        await turns.pause()


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def run_synthetic(market: Market, symbols: Sequence[SyntheticSymbol], rate: float,
                        clock_ms: Callable[[], int] = _wall_ms) -> None:
    """Run the synthetic market forever: trade steps at ``rate``/s, the 100 ms grid.

    Times are scheduled from ``clock_ms()`` at the start (``t0``): step ``n`` at
    ``t0 + n*1000/rate`` ms, grid point ``g`` at ``t0 + g*100`` ms, published in that order.
    Best effort: if the machine cannot generate ``rate`` steps per second, the steps that are
    more than ``MAX_BACKLOG_S`` late are skipped (ids stay contiguous; only the rate drops), and
    so are grid points more than 1 s late.
    """
    schedule = _Schedule(market, symbols, rate, clock_ms())
    turns = _Turns()
    while True:
        schedule.run_due(turns)
        await market.hub.drained()
        await asyncio.sleep(max(0.0, schedule.next_due_s() - time.monotonic()))
        turns.until = time.monotonic() + TURN_S


class _Schedule:
    """The synthetic market's steps and grid points, on a schedule from ``t0`` (wall ms)."""

    def __init__(self, market: Market, symbols: Sequence[SyntheticSymbol], rate: float,
                 t0: int) -> None:
        self.market = market
        self.symbols = symbols
        self.t0 = t0
        for sym in symbols:
            sym.state.tape.set_phase(t0)
        self.start = time.monotonic()
        self.period_ms = 1000.0 / rate
        self.steps, self.grid = 0, 1

    def run_due(self, turns: _Turns) -> None:
        """Publish what is due, in time order, until done or the turn is used up."""
        elapsed_ms = (time.monotonic() - self.start) * 1000
        if elapsed_ms - self.steps * self.period_ms > MAX_BACKLOG_S * 1000:  # cannot keep up
            self.steps = int(elapsed_ms / self.period_ms)
        self.grid = max(self.grid, int(elapsed_ms / GRID_MS) - 10)
        while not turns.over():
            step_at, grid_at = self.steps * self.period_ms, self.grid * GRID_MS
            if min(step_at, grid_at) > elapsed_ms:
                return
            if step_at <= grid_at:
                self._step(self.t0 + int(step_at))
            else:
                self._grid(self.t0 + grid_at, grid_at)

    def _step(self, at_ms: int) -> None:
        for sym in self.symbols:
            sym.step(at_ms)
        self.steps += 1

    def _grid(self, at_ms: int, grid_ms: int) -> None:
        for sym in self.symbols:
            sym.grid(at_ms, grid_ms)
        self.market.periodic(lambda _state: at_ms, grid_ms, synthetic=True)
        self.grid += 1

    def next_due_s(self) -> float:
        """The monotonic time of the next step or grid point."""
        return self.start + min(self.steps * self.period_ms, self.grid * GRID_MS) / 1000
