"""Backfill over REST beside the live stream, never blocking it (rest-api.md, "Market Data
endpoints").

Gaps queue up here; one task fetches them in order: aggTrades and historicalTrades by ``fromId``,
klines by ``startTime``, a fresh depth snapshot when a diff chain breaks. Requests pace themselves
by ``X-MBX-USED-WEIGHT-1M`` against the per-minute limit (rest-api.md, "IP Limits"). Whether and
when a failed fill is tried again is decided by the one retry policy,
`binance_streamer.core.backoff.ReconnectPolicy` (a 429/418 waits at least its ``Retry-After``).
REST payloads become rows through `binance_streamer.core.tables`, like stream events: source
``rest`` and no receive time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial

from binance_streamer.core.backoff import ReconnectPolicy, full_jitter
from binance_streamer.core.sequencing import GapDetected, NeedSnapshot
from binance_streamer.core.streams import KLINE_INTERVAL_MS, StreamKind, StreamName, parse_stream
from binance_streamer.core.tables import (
    AGG_TRADE,
    DEPTH_SNAPSHOT,
    KLINE,
    TRADE,
    Row,
    agg_trade_rows,
    depth_snapshot_row,
    kline_rows,
    trade_rows,
)
from binance_streamer.errors import IncompleteBackfill, RateLimited
from binance_streamer.io.rest import RestClient

__all__ = ["Backfiller"]

log = logging.getLogger(__name__)
_PAGE = 1000


class Backfiller:
    """Fills gaps over REST; ``submit(table, rows)`` stores rows, ``filled(gap, n)`` reports.

    A gap is tried up to ``max_attempts`` times (at least 2: the first try and one retry), the
    waits between tries coming from ``delays`` (full jitter from 0.5 s up to 30 s by default).
    A gap given up on stays unfilled in the database, is counted in `failures`, and is queued
    again by the next start.
    """

    def __init__(
        self,
        rest: RestClient,
        submit: Callable[[str, list[Row]], None],
        filled: Callable[[GapDetected, int], None],
        weight_budget: float = 0.8,
        max_attempts: int = 5,
        delays: Iterator[float] | None = None,
    ) -> None:
        if max_attempts < 2:
            raise ValueError(f"max_attempts must be at least 2, got {max_attempts!r}")
        self._rest = rest
        self._submit = submit
        self._filled = filled
        self._budget = weight_budget
        self._queue: deque[GapDetected | NeedSnapshot] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.failures = 0
        self.rate_limited = 0
        self.max_attempts = max_attempts
        # One policy, reset for each gap: max_attempts tries are max_attempts - 1 retries.
        self._policy = ReconnectPolicy(_delays(delays), max_attempts=max_attempts - 1)

    def __repr__(self) -> str:
        return f"<Backfiller queued={len(self._queue)} failures={self.failures} {self._rest!r}>"

    def request(self, gap: GapDetected | NeedSnapshot) -> None:
        """Queue ``gap`` for filling, or a depth snapshot to fetch (non-blocking)."""
        self._queue.append(gap)
        self._idle.clear()
        self._wakeup.set()

    async def drain(self, timeout: float) -> None:
        """Wait until every queued gap is handled, or ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("stopping with %d gap(s) not backfilled", len(self._queue))

    async def run(self) -> None:
        """Handle queued gaps forever (cancel to stop)."""
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if await self._attempt(self._queue[0]):
                self._queue.popleft()
                self._policy.reset()

    async def _attempt(self, gap: GapDetected | NeedSnapshot) -> bool:
        """Try ``gap`` once; True when done with it (filled, or given up on)."""
        try:
            if isinstance(gap, NeedSnapshot):
                await self._snapshot(parse_stream(gap.stream))
                return True
            rows = await self._fill(gap)
        except Exception as exc:  # never crash the recorder: the policy decides what to retry
            return await self._failed(gap, exc)
        self._filled(gap, rows)
        return True

    async def _failed(self, gap: GapDetected | NeedSnapshot, exc: Exception) -> bool:
        """Wait before the next try of ``gap`` and return False, or give up on it: True."""
        if isinstance(exc, RateLimited):
            self.rate_limited += 1
        delay = self._policy.after(exc)
        if delay is None:
            self.failures += 1
            log.warning("backfill for %s gave up: %s", gap.stream, exc)
            return True
        log.warning("backfill for %s failed (%s); retrying in %.1fs", gap.stream, exc, delay)
        await asyncio.sleep(delay)
        return False

    async def _fill(self, gap: GapDetected) -> int:
        stream = parse_stream(gap.stream)
        if stream.kind is StreamKind.AGG_TRADE:
            return await self._agg_trades(gap, stream)
        if stream.kind is StreamKind.TRADE:
            return await self._trades(gap, stream)
        if stream.kind is StreamKind.KLINE:
            return await self._klines(gap, stream)
        if stream.kind is StreamKind.DIFF_DEPTH:
            return await self._snapshot(stream)
        return 0

    async def _pace(self) -> None:
        if self._rest.used_weight >= self._budget * self._rest.weight_limit:
            wait = 60.0 - time.time() % 60.0 + 0.5
            log.info("REST weight %d used; pausing backfill %.0fs", self._rest.used_weight, wait)
            await asyncio.sleep(wait)
            self._rest.used_weight = 0

    async def _agg_trades(self, gap: GapDetected, stream: StreamName) -> int:
        symbol, next_id, total = stream.symbol.upper(), gap.first_missing, 0
        while next_id <= gap.last_missing:
            await self._pace()
            limit = min(_PAGE, gap.last_missing - next_id + 1)
            items = await self._rest.agg_trades(symbol, next_id, limit)
            wanted = [i for i in items if next_id <= i.agg_id <= gap.last_missing]
            if not wanted:  # nothing more, or (a server going backwards) nothing new
                break
            self._submit(AGG_TRADE.name, agg_trade_rows(symbol, wanted))
            total += len(wanted)
            next_id = items[-1].agg_id + 1
        return _complete(gap, total, "ids")

    async def _trades(self, gap: GapDetected, stream: StreamName) -> int:
        symbol, next_id, total = stream.symbol.upper(), gap.first_missing, 0
        while next_id <= gap.last_missing:
            await self._pace()
            limit = min(_PAGE, gap.last_missing - next_id + 1)
            items = await self._rest.historical_trades(symbol, next_id, limit)
            wanted = [i for i in items if next_id <= i.trade_id <= gap.last_missing]
            if not wanted:  # nothing more, or (a server going backwards) nothing new
                break
            self._submit(TRADE.name, trade_rows(symbol, wanted))
            total += len(wanted)
            next_id = items[-1].trade_id + 1
        return _complete(gap, total, "ids")

    async def _klines(self, gap: GapDetected, stream: StreamName) -> int:
        symbol, start, total = stream.symbol.upper(), gap.first_missing, 0
        while start <= gap.last_missing:
            await self._pace()
            items = await self._rest.klines(symbol, stream.interval, start, gap.last_missing)
            wanted = [k for k in items if start <= k.open_time <= gap.last_missing]
            if not wanted:  # nothing more, or (a server going backwards) nothing new
                break
            now = time.time_ns() // (1_000 if self._rest.microseconds else 1_000_000)
            self._submit(KLINE.name, kline_rows(symbol, stream.interval, wanted, now))
            total += len(wanted)
            start = wanted[-1].open_time + 1
        step = KLINE_INTERVAL_MS[stream.interval] * (1000 if self._rest.microseconds else 1)
        expected = (gap.last_missing - gap.first_missing) // step + 1 if step else 1
        if total < expected:
            raise IncompleteBackfill(gap.stream, total, expected, "klines")
        return total

    async def _snapshot(self, stream: StreamName) -> int:
        await self._pace()
        symbol = stream.symbol.upper()
        snapshot = await self._rest.depth(symbol, limit=1000)
        self._submit(DEPTH_SNAPSHOT.name, [depth_snapshot_row(symbol, snapshot, time.time_ns())])
        return 1


def _complete(gap: GapDetected, total: int, what: str) -> int:
    """``total``, if it is every id ``gap`` misses; else `IncompleteBackfill` (REST is behind the
    stream, or no longer has these ids)."""
    expected = gap.last_missing - gap.first_missing + 1
    if total < expected:
        raise IncompleteBackfill(gap.stream, total, expected, what)
    return total


def _delays(injected: Iterator[float] | None) -> Callable[[], Iterator[float]]:
    """Fresh full-jitter delays for each gap, or else the ``injected`` ones, carried on."""
    if injected is None:
        return partial(full_jitter, 0.5, 30.0)
    return lambda: injected
