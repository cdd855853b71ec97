"""The replay timeline: recorded items published at their recorded offsets divided by ``speed``
(or as fast as subscribers drain them with ``speed=None``), with the derived periodic streams
computed on a 100 ms grid of the replay timeline. It yields to the event loop every
`turns.TURN_S` of work (`turns.Turns`).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Sequence

from binance_streamer.exchange.market import Market, SymbolState
from binance_streamer.exchange.sources import Recorded, ReplaySource
from binance_streamer.exchange.turns import GRID_MS, TURN_S, Turns

__all__ = ["register_sources", "run_replay"]

_BATCH = 512
log = logging.getLogger(__name__)


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
    turns = Turns()
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


async def _pace(start: float, offset_ms: float, speed: float | None, turns: Turns) -> None:
    """Wait for ``offset_ms`` of the replay; behind schedule, still yield once per turn."""
    if speed is None:
        return
    delay = start + offset_ms / 1000 / speed - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
        turns.until = time.monotonic() + TURN_S
    elif turns.over():
        await turns.pause()
