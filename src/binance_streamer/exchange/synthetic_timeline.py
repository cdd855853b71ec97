"""The synthetic market's timeline: trade steps of each symbol at its own rate and the 100 ms
grid for depth diffs and derived streams, scheduled from the wall clock at the start: every
event carries its scheduled time, and steps and grid points are published in time order (a heap
of each symbol's next step, so thousands of symbols with different rates cost O(log n) per
step). Event times at multiples of 1000 ms are on each symbol's second grid
(`SymbolState.tape`), so rolling windows are made of whole seconds. It yields to the event loop
every `turns.TURN_S` of work.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Sequence

from binance_streamer.exchange.market import Market
from binance_streamer.exchange.synthetic import SyntheticSymbol
from binance_streamer.exchange.turns import GRID_MS, TURN_S, Turns, wall_ms

__all__ = ["Schedule", "run_synthetic"]

MAX_BACKLOG_S = 1.0


async def run_synthetic(market: Market, symbols: Sequence[SyntheticSymbol],
                        rate: float | Sequence[float],
                        clock_ms: Callable[[], int] = wall_ms,
                        phases: Sequence[float] | None = None) -> None:
    """Run the synthetic market forever: trade steps at ``rate``/s (one rate for every symbol,
    or one per symbol), the 100 ms grid.

    Times are scheduled from ``clock_ms()`` at the start (``t0``): step ``n`` of a symbol at
    ``t0 + (n + phase)*1000/rate`` ms (``phases`` in [0, 1), default 0), grid point ``g`` at
    ``t0 + g*100`` ms, published in that order (at equal times: steps first, symbols in
    order). Best effort: if the machine cannot generate the steps in time, the steps that are
    more than ``MAX_BACKLOG_S`` late are skipped (ids stay contiguous; only the rate drops), and
    so are grid points more than 1 s late.
    """
    rates = [rate] * len(symbols) if isinstance(rate, (int, float)) else list(rate)
    schedule = Schedule(market, symbols, rates, clock_ms(), phases)
    turns = Turns()
    while True:
        schedule.run_due(turns)
        await market.hub.drained()
        await asyncio.sleep(max(0.0, schedule.next_due_s() - time.monotonic()))
        turns.until = time.monotonic() + TURN_S


class Schedule:
    """The synthetic market's steps and grid points, on a schedule from ``t0`` (wall ms):
    `run_due` publishes what the monotonic clock says is due, `advance` what is due at a given
    time (tests drive it without a clock)."""

    def __init__(self, market: Market, symbols: Sequence[SyntheticSymbol],
                 rates: Sequence[float], t0: int, phases: Sequence[float] | None = None
                 ) -> None:
        if len(rates) != len(symbols) or any(r <= 0 for r in rates):
            raise ValueError("one positive rate per symbol")
        self.market = market
        self.symbols = symbols
        self.t0 = t0
        for sym in symbols:
            sym.state.tape.set_phase(t0)
        self.start = time.monotonic()
        self.periods = [1000.0 / r for r in rates]
        # (due ms since t0, symbol index): each symbol's next step
        self.heap = [((phases[i] if phases else 0.0) * p, i) for i, p in enumerate(self.periods)]
        heapq.heapify(self.heap)
        self.grid = 1

    def run_due(self, turns: Turns) -> None:
        """Publish what is due, in time order, until done or the turn is used up."""
        elapsed_ms = (time.monotonic() - self.start) * 1000
        if self.heap and elapsed_ms - self.heap[0][0] > MAX_BACKLOG_S * 1000:  # cannot keep up
            self._skip(elapsed_ms - MAX_BACKLOG_S * 1000)
        self.grid = max(self.grid, int(elapsed_ms / GRID_MS) - 10)
        self.advance(elapsed_ms, turns)

    def advance(self, elapsed_ms: float, turns: Turns | None = None) -> None:
        """Publish every step and grid point due at ``t0 + elapsed_ms``, in time order (until
        ``turns`` is over, if given)."""
        heap, periods, symbols, t0 = self.heap, self.periods, self.symbols, self.t0
        replace = heapq.heapreplace
        while turns is None or not turns.over():
            for _ in range(64):  # a few steps between two reads of the clock
                grid_at = self.grid * GRID_MS
                due, i = heap[0] if heap else (grid_at + 1.0, -1)
                if due <= grid_at:
                    if due > elapsed_ms:
                        return
                    symbols[i].step(t0 + int(due))
                    replace(heap, (due + periods[i], i))
                else:
                    if grid_at > elapsed_ms:
                        return
                    self._grid(t0 + grid_at, grid_at)

    def _skip(self, until_ms: float) -> None:
        """Skip every step due before ``until_ms``."""
        for k, (due, i) in enumerate(self.heap):
            if due < until_ms:
                period = self.periods[i]
                self.heap[k] = (due + ((until_ms - due) // period + 1) * period, i)
        heapq.heapify(self.heap)

    def _grid(self, at_ms: int, grid_ms: int) -> None:
        for sym in self.symbols:
            sym.grid(at_ms, grid_ms)
        self.market.periodic(lambda _state: at_ms, grid_ms, synthetic=True)
        self.grid += 1

    def next_due_s(self) -> float:
        """The monotonic time of the next step or grid point."""
        due = self.heap[0][0] if self.heap else float("inf")
        return self.start + min(due, self.grid * GRID_MS) / 1000
