"""Backfill over REST beside the live stream, never blocking it (rest-api.md, market data).

Gaps queue up here; one task fetches them in order: aggTrades and historicalTrades by ``fromId``,
klines by ``startTime``, a fresh depth snapshot when a diff chain breaks. Requests pace themselves
by ``X-MBX-USED-WEIGHT-1M`` against the per-minute limit and wait out 429/418 ``Retry-After``.
REST rows carry ``source='rest'`` and no receive time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from binance_streamer.core.backoff import Verdict, classify, full_jitter
from binance_streamer.core.sequencing import GapDetected, NeedSnapshot
from binance_streamer.core.streams import KLINE_INTERVAL_MS, StreamKind, StreamName, parse_stream
from binance_streamer.core.tables import AGG_TRADE, DEPTH_SNAPSHOT, KLINE, TRADE, Row
from binance_streamer.errors import IncompleteBackfill, RateLimited
from binance_streamer.io.rest import RestClient

__all__ = ["Backfiller", "agg_trade_rows", "kline_rows", "trade_rows"]

log = logging.getLogger(__name__)
_PAGE = 1000


def agg_trade_rows(symbol: str, items: list[dict[str, Any]]) -> list[Row]:
    """REST aggTrades items -> ``agg_trade`` rows (no event time: REST has none)."""
    return [(symbol, i["a"], i["p"], i["q"], i["f"], i["l"], i["T"], i["m"], i.get("M"), None,
             None, "rest") for i in items]


def trade_rows(symbol: str, items: list[dict[str, Any]]) -> list[Row]:
    """REST historicalTrades items -> ``trade`` rows."""
    return [(symbol, i["id"], i["price"], i["qty"], i["time"], i["isBuyerMaker"],
             i.get("isBestMatch"), None, None, "rest") for i in items]


def kline_rows(symbol: str, interval: str, items: list[list[Any]], now: int) -> list[Row]:
    """REST kline arrays -> ``kline`` rows; a kline is closed once its close time has passed
    (``now`` in the unit of the kline times)."""
    return [(symbol, interval, k[0], k[6], None, None, k[1], k[4], k[2], k[3], k[5], k[8],
             k[6] < now, k[7], k[9], k[10], None, None, "rest") for k in items]


class Backfiller:
    """Fills gaps over REST; ``submit(table, rows)`` stores rows, ``filled(gap, n)`` reports."""

    def __init__(
        self,
        rest: RestClient,
        submit: Callable[[str, list[Row]], None],
        filled: Callable[[GapDetected, int], None],
        weight_budget: float = 0.8,
        max_attempts: int = 5,
        delays: Iterator[float] | None = None,
    ) -> None:
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
        self._attempts = 0  # of the gap at the head of the queue
        self._delays = delays if delays is not None else full_jitter(0.5, 30.0)

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
                self._attempts = 0

    async def _attempt(self, gap: GapDetected | NeedSnapshot) -> bool:
        """Try ``gap`` once; True when done with it (filled, or given up on)."""
        try:
            if isinstance(gap, NeedSnapshot):
                await self._snapshot(parse_stream(gap.stream))
                return True
            rows = await self._fill(gap)
        except RateLimited as exc:
            self.rate_limited += 1
            log.warning("backfill rate limited (HTTP %d); waiting %.0fs", exc.status,
                        exc.retry_after)
            await asyncio.sleep(exc.retry_after)
            return False
        except Exception as exc:  # never crash the recorder: classify() decides what to retry
            return await self._failed(gap, exc, classify(exc) is Verdict.RETRY)
        self._filled(gap, rows)
        return True

    async def _failed(self, gap: GapDetected | NeedSnapshot, exc: Exception, retry: bool) -> bool:
        """Retry server errors and unreachable servers with back-off, a few times; the gap stays
        unfilled in the database otherwise, and the next start queues it again."""
        self._attempts += 1
        if retry and self._attempts < self.max_attempts:
            delay = next(self._delays)
            log.warning("backfill for %s failed (%s); retrying in %.1fs", gap.stream, exc, delay)
            await asyncio.sleep(delay)
            return False
        self.failures += 1
        log.warning("backfill for %s gave up: %s", gap.stream, exc)
        return True

    async def _fill(self, gap: GapDetected) -> int:
        stream = parse_stream(gap.stream)
        if stream.kind is StreamKind.AGG_TRADE:
            return await self._by_id(gap, stream, "agg")
        if stream.kind is StreamKind.TRADE:
            return await self._by_id(gap, stream, "trade")
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

    async def _by_id(self, gap: GapDetected, stream: StreamName, what: str) -> int:
        symbol, next_id, total = stream.symbol.upper(), gap.first_missing, 0
        while next_id <= gap.last_missing:
            await self._pace()
            limit = min(_PAGE, gap.last_missing - next_id + 1)
            if what == "agg":
                items = await self._rest.agg_trades(symbol, next_id, limit)
                rows, table, key = agg_trade_rows(symbol, items), AGG_TRADE.name, "a"
            else:
                items = await self._rest.historical_trades(symbol, next_id, limit)
                rows, table, key = trade_rows(symbol, items), TRADE.name, "id"
            rows = [r for r, i in zip(rows, items, strict=True) if i[key] <= gap.last_missing]
            if not rows:
                break
            self._submit(table, rows)
            total += len(rows)
            next_id = items[-1][key] + 1
        expected = gap.last_missing - gap.first_missing + 1
        if total < expected:  # REST is behind the stream, or no longer has these ids
            raise IncompleteBackfill(gap.stream, total, expected, "ids")
        return total

    async def _klines(self, gap: GapDetected, stream: StreamName) -> int:
        symbol, start, total = stream.symbol.upper(), gap.first_missing, 0
        while start <= gap.last_missing:
            await self._pace()
            items = await self._rest.klines(symbol, stream.interval, start, gap.last_missing)
            if not items:
                break
            now = time.time_ns() // (1_000 if self._rest.microseconds else 1_000_000)
            self._submit(KLINE.name, kline_rows(symbol, stream.interval, items, now))
            total += len(items)
            start = items[-1][0] + 1
        step = KLINE_INTERVAL_MS.get(stream.interval, 0) * (1000 if self._rest.microseconds else 1)
        expected = (gap.last_missing - gap.first_missing) // step + 1 if step else 1
        if total < expected:
            raise IncompleteBackfill(gap.stream, total, expected, "klines")
        return total

    async def _snapshot(self, stream: StreamName) -> int:
        await self._pace()
        snap = await self._rest.depth(stream.symbol.upper(), limit=1000)
        bids = _dumps(snap.get("bids", []))
        asks = _dumps(snap.get("asks", []))
        self._submit(DEPTH_SNAPSHOT.name, [(stream.symbol.upper(), snap["lastUpdateId"], bids,
                                            asks, time.time_ns(), "rest")])
        return 1


def _dumps(levels: Any) -> str:
    import msgspec

    return msgspec.json.encode(levels).decode()
