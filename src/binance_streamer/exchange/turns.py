"""Cooperative pacing shared by the timeline drivers (`timeline`, `synthetic_timeline`).

Both drivers hand the event loop back at least every `TURN_S` of work, even when behind
schedule, so pings and pongs (web-socket-streams.md "WebSocket Limits"), REST, new connections
and signal handlers (SIGINT/SIGTERM) are never starved.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["GRID_MS", "TURN_S", "Turns", "wall_ms"]

GRID_MS = 100  # the grid of depth diffs and derived periodic streams
TURN_S = 0.02  # the longest run of work between two yields to the event loop


class Turns:
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


def wall_ms() -> int:
    """The wall clock in epoch milliseconds (what synthetic and rebased times follow)."""
    return time.time_ns() // 1_000_000
