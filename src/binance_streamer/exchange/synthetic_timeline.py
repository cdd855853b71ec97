"""The synthetic market's timeline: one trade step per ``1/rate`` s per symbol and the 100 ms grid
for depth diffs and derived streams, scheduled from the wall clock at the start: every event
carries its scheduled time, and steps and grid points are published in time order. Event times
at multiples of 1000 ms are on each symbol's second grid (`SymbolState.tape`), so rolling
windows are made of whole seconds. It yields to the event loop every `turns.TURN_S` of work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from binance_streamer.exchange.market import Market
from binance_streamer.exchange.synthetic import SyntheticSymbol
from binance_streamer.exchange.turns import GRID_MS, TURN_S, Turns

__all__ = ["run_synthetic"]

MAX_BACKLOG_S = 1.0


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
    turns = Turns()
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

    def run_due(self, turns: Turns) -> None:
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
