"""Backfill over REST beside the live stream, never blocking it (rest-api.md, "Market Data
endpoints").

Requests queue in a `BackfillQueue` (core/backfill_queue.py) with one lane per kind of work, and
each lane has its own task, so a trade gap is fetched at once even while a thousand snapshots
queue and one is in flight. Snapshots come from ``depth`` when a diff chain breaks or starts, the
most active stream's first (``activity``), and, with ``snapshot_every``, periodically in the
lowest-priority lane (core/snapshot_schedule.py); aggTrades and historicalTrades are fetched by
``fromId``, klines by ``startTime``. Each lane paces itself by ``X-MBX-USED-WEIGHT-1M``
(``rest.used_weight``, which counts every process on the IP) plus this process's requests in
flight, against its share of the per-minute limit (rest-api.md, "IP Limits"): snapshots never use
the share kept for gaps. A 429/418 ``Retry-After`` pauses every lane, since the limits are per IP
("LIMITS"). `Backfiller.budget` shows the weight used and the queue. Each gap is retried on its
own back-off (`binance_streamer.core.backoff.ReconnectPolicy`) until it is filled or the run
stops; only a failure `classify` calls fatal gives it up. REST payloads become rows through
`binance_streamer.core.tables`, like stream events: source ``rest`` and no receive time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeAlias

from binance_streamer.core.backfill_queue import (
    SNAPSHOT_LANES,
    BackfillQueue,
    Job,
    Lane,
    WeightBudget,
    depth_weight,
    lane_of,
    page_weight,
    used_now,
    window_wait,
)
from binance_streamer.core.rest_budget import RestBudget
from binance_streamer.core.sequencing import GapDetected, NeedSnapshot
from binance_streamer.core.snapshot_schedule import SnapshotSchedule
from binance_streamer.core.streams import KLINE_INTERVAL_MS, StreamKind
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
from binance_streamer.errors import IncompleteBackfill, RateLimited, RestError
from binance_streamer.io.rest import RestClient

__all__ = ["Backfiller", "SnapshotTaken"]

log = logging.getLogger(__name__)
_PAGE = 1000  # ids per aggTrades/historicalTrades page: their weight does not depend on it

# snapshot_taken(stream, last_update_id, gap): a snapshot of ``stream`` was stored for ``gap``
# (None: for a NeedSnapshot, or a periodic one).
SnapshotTaken: TypeAlias = Callable[[str, int, GapDetected | None], None]


class Backfiller:
    """Fills gaps over REST; ``submit(table, rows)`` stores rows, ``filled(gap, n)`` reports an
    id or kline gap filled with ``n`` rows, ``snapshot_taken`` reports a stored depth snapshot.

    A depth request (`NeedSnapshot`, or a `GapDetected` on a diff-depth stream) stores one
    ``depth_snapshot`` row and calls ``snapshot_taken(stream, last_update_id, gap)`` once for each
    gap it answers, and once with None if a `NeedSnapshot` asked for it; whether it bridges the
    stored diffs is for the caller to decide, so a depth gap is never reported through ``filled``.
    With ``snapshot_every`` > 0 (seconds), each stream with a stored snapshot gets a fresh one
    that long after its last (`SnapshotSchedule`), at the lowest priority, also reported with
    gap None. Id and kline gaps go before any snapshot; snapshots are taken most active stream
    first, by ``activity(stream)`` (messages seen lately, e.g. `ActivityMeter.rate`; without it,
    oldest first). ``weight_budget`` is the share of the weight limit full-depth snapshots may use
    (`WeightBudget`); ``delays`` builds each gap's back-off (full jitter up to 30 s by default);
    ``wall`` is the wall clock the weight window is read from.
    """

    def __init__(
        self,
        rest: RestClient,
        submit: Callable[[str, list[Row]], None],
        filled: Callable[[GapDetected, int], None],
        *,
        snapshot_taken: SnapshotTaken | None = None,
        snapshot_every: float = 0.0,
        weight_budget: float = 0.8,
        delays: Callable[[], Iterator[float]] | None = None,
        wall: Callable[[], float] = time.time,
        activity: Callable[[str], float] | None = None,
    ) -> None:
        self._rest = rest
        self._submit = submit
        self._filled = filled
        self._snapshot_taken = snapshot_taken
        self._budget = WeightBudget(weight_budget)
        self._queue = BackfillQueue(delays)
        self._schedule = SnapshotSchedule(snapshot_every)
        self._retired: set[str] = set()  # streams no longer recorded: no snapshots for them
        self._wall = wall
        self._activity = activity
        self._in_flight_weight = 0  # weight of requests sent and not yet answered
        self._weight_read_at = wall()  # when rest.used_weight last came with an answer of ours
        self._wakeups = {lane: asyncio.Event() for lane in Lane}
        self._idle = asyncio.Event()
        self._idle.set()
        self._paused_until = 0.0  # event-loop time until which a 429/418 stops all REST work
        self.failures = 0  # requests given up on
        self.rate_limited = 0  # 429/418 answers

    def __repr__(self) -> str:
        return (f"<Backfiller pending={self.pending} open_gaps={self.open_gaps} "
                f"failures={self.failures} {self._rest!r}>")

    @property
    def open_gaps(self) -> int:
        """Gaps requested and neither filled (for depth: snapshotted) nor given up."""
        return self._queue.open_gaps

    @property
    def pending(self) -> int:
        """Jobs not done yet (a coalesced snapshot counts once, a periodic one not at all);
        `drain` waits for none."""
        return self._queue.pending

    def budget(self) -> RestBudget:
        """The weight used this minute and the limit, requests in flight, jobs queued per lane,
        the oldest one's wait, and any Retry-After pause: a frozen copy, taken on the event loop
        (from another thread, through ``loop.call_soon_threadsafe``)."""
        return RestBudget.of(self._queue, used_weight=self._used(),
                             weight_limit=self._rest.weight_limit, now=_now(),
                             paused_until=self._paused_until, rate_limited=self.rate_limited)

    def request(self, request: GapDetected | NeedSnapshot) -> None:
        """Queue a gap to fill or a depth snapshot to fetch (non-blocking); repeats coalesce."""
        lane = lane_of(request)
        if lane is None:
            self.failures += 1
            log.warning("backfill for %s given up: REST cannot fill it (%s)", request.stream,
                        request)
            return
        self._retired.discard(request.stream)
        if self._queue.add(request, _now()):
            self._idle.clear()
            self._wakeups[lane].set()

    def forget(self, stream: str) -> None:
        """``stream`` was unsubscribed (a delisted or halted symbol): no more snapshots of it,
        neither queued nor periodic; its open gaps are still filled. A later `request` for it
        (listed again) starts afresh."""
        self._retired.add(stream)
        self._queue.drop_snapshots(stream)
        self._schedule.forget(stream)
        self._settle()

    async def drain(self, timeout: float) -> None:
        """Wait until every request is handled, or ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("stopping with %d gap(s) still open (%d backfill request(s) pending)",
                        self.open_gaps, self.pending)

    async def run(self) -> None:
        """Serve every lane forever (cancel to stop)."""
        async with asyncio.TaskGroup() as lanes:
            for lane in Lane:
                lanes.create_task(self._serve_lane(lane), name=f"backfill-{lane.name.lower()}")

    async def _serve_lane(self, lane: Lane) -> None:
        """Send ``lane``'s requests one at a time, oldest ready job first, when the weight and
        any Retry-After allow."""
        wakeup = self._wakeups[lane]
        while True:
            now = _now()
            if lane is Lane.REFRESH:
                self._refresh_due(now)
            job = self._queue.peek(lane, now, self._activity if lane is Lane.DEPTH else None)
            if job is None:
                wakeup.clear()
                self._settle()
                await _nap(wakeup, self._wake_at(lane), now)
            elif self._paused_until > now:
                await asyncio.sleep(self._paused_until - now)
            elif (size := self._affordable(job)) is None:
                await self._next_window(lane)
            else:
                await self._serve(job, size)
                await asyncio.sleep(0)  # let other tasks run even if REST answers at once

    def _refresh_due(self, now: float) -> None:
        """Queue the periodic snapshots due at ``now`` (a stream whose snapshot is queued or
        running already needs none: storing that one reschedules it)."""
        for stream in self._schedule.due(now):
            self._queue.refresh(stream, now)  # no request waits for it: `drain` does not either

    def _wake_at(self, lane: Lane) -> float | None:
        """When ``lane`` has work again without a new request: a retry, or a periodic snapshot."""
        wake_at = self._queue.wake_at(lane)
        due = self._schedule.next_due() if lane is Lane.REFRESH else None
        return due if wake_at is None else wake_at if due is None else min(wake_at, due)

    def _used(self) -> int:
        """The weight used this minute: as far as the last answer told, plus this process's
        requests sent since and not yet answered."""
        read = used_now(self._rest.used_weight, self._weight_read_at, self._wall())
        return read + self._in_flight_weight

    def _affordable(self, job: Job) -> int | None:
        """The weight of ``job``'s next request if it fits its lane's share of the weight now
        (for a snapshot, the depth in levels: `depth_weight` gives its weight), else None."""
        used, limit = self._used(), self._rest.weight_limit
        if job.lane in SNAPSHOT_LANES:
            return self._budget.snapshot_levels(job.lane, used, limit, self._queue.gaps_waiting)
        weight = page_weight(job)
        return weight if self._budget.fits(job.lane, weight, used, limit) else None

    async def _next_window(self, lane: Lane) -> None:
        """Wait for the next minute's weight window (only ``lane`` waits)."""
        wait = window_wait(self._wall())
        log.info("REST weight %d of %d used: %s backfill waits %.1fs for the next minute",
                 self._used(), self._rest.weight_limit, lane.name.lower(), wait)
        await asyncio.sleep(wait)

    async def _serve(self, job: Job, size: int) -> None:
        """Send ``job``'s next request (``size``: its weight, or a snapshot's levels) and
        account for the outcome."""
        self._queue.start(job)
        snapshot = job.lane in SNAPSHOT_LANES
        weight = depth_weight(size) if snapshot else size
        self._in_flight_weight += weight
        last_update_id, finished = 0, True
        try:
            if snapshot:
                last_update_id = await self._snapshot(job, size)
            else:
                finished = await self._page(job)
        except Exception as exc:  # never crash the recorder: classify decides what to retry
            if isinstance(exc, RestError | IncompleteBackfill):  # answered, with its weight
                self._weight_read_at = self._wall()
            self._failed(job, exc)
            return
        finally:
            self._in_flight_weight -= weight
        self._weight_read_at = self._wall()
        if not finished:
            self._queue.resume(job)
            return
        self._queue.done(job)
        self._report(job, last_update_id)
        self._settle()

    def _report(self, job: Job, last_update_id: int) -> None:
        if job.lane not in SNAPSHOT_LANES:
            self._filled(job.gap, job.rows)
            return
        periodic = job.lane is Lane.REFRESH
        if job.stream not in self._retired:  # a snapshot that was running when it was retired
            self._schedule.stored(job.stream, _now(), periodic=periodic)
        if self._schedule.every:
            self._wakeups[Lane.REFRESH].set()  # the stream may be due before the lane's nap ends
        if self._snapshot_taken is not None:
            for gap in job.gaps:
                self._snapshot_taken(job.stream, last_update_id, gap)
            if job.bare or periodic:
                self._snapshot_taken(job.stream, last_update_id, None)

    def _failed(self, job: Job, exc: Exception) -> None:
        """Schedule ``job``'s retry on its own back-off, or give it up."""
        if isinstance(exc, RateLimited):  # per IP: every lane pauses (rest-api.md "IP Limits")
            self.rate_limited += 1
            self._paused_until = max(self._paused_until, _now() + exc.retry_after)
        delay = self._queue.failed(job, exc, _now())
        if delay is None:
            self.failures += job.requests or 1  # a periodic snapshot is one request too
            log.warning("backfill for %s given up: %s", job.stream, exc)
            if job.lane in SNAPSHOT_LANES:
                self._schedule.skipped(job.stream, _now())
            self._settle()
        elif job.policy.attempts == 1:
            log.warning("backfill for %s failed (%s); retrying in %.1fs, and until it is filled",
                        job.stream, exc, delay)
        else:
            log.info("backfill for %s failed again (%s); retrying in %.1fs", job.stream, exc,
                     delay)

    def _settle(self) -> None:
        if self._queue.pending == 0:
            self._idle.set()

    async def _snapshot(self, job: Job, levels: int) -> int:
        """Fetch and store a ``levels``-deep snapshot of ``job``'s stream."""
        symbol = job.name.symbol.upper()
        snapshot = await self._rest.depth(symbol, limit=levels)
        self._submit(DEPTH_SNAPSHOT.name, [depth_snapshot_row(symbol, snapshot, time.time_ns())])
        return snapshot.last_update_id

    async def _page(self, job: Job) -> bool:
        """Fetch and store ``job``'s next page; True once the whole gap is stored."""
        if job.name.kind is StreamKind.KLINE:
            return await self._kline_page(job)
        return await self._id_page(job)

    async def _id_page(self, job: Job) -> bool:
        gap, symbol = job.gap, job.name.symbol.upper()
        first, last = job.cursor, gap.last_missing
        limit = min(_PAGE, last - first + 1)
        if job.name.kind is StreamKind.AGG_TRADE:
            aggs = await self._rest.agg_trades(symbol, first, limit)
            ids = [a.agg_id for a in aggs]
            table = AGG_TRADE.name
            rows = agg_trade_rows(symbol, [a for a in aggs if first <= a.agg_id <= last])
        else:
            trades = await self._rest.historical_trades(symbol, first, limit)
            ids = [t.trade_id for t in trades]
            table = TRADE.name
            rows = trade_rows(symbol, [t for t in trades if first <= t.trade_id <= last])
        after = ids[-1] + 1 if ids else first
        return self._advance(job, table, rows, after, last - gap.first_missing + 1, "ids")

    async def _kline_page(self, job: Job) -> bool:
        gap, name, micro = job.gap, job.name, self._rest.microseconds
        symbol, first, last = name.symbol.upper(), job.cursor, gap.last_missing
        items = await self._rest.klines(symbol, name.interval, first, last)
        wanted = [k for k in items if first <= k.open_time <= last]
        now = time.time_ns() // (1_000 if micro else 1_000_000)
        step = KLINE_INTERVAL_MS[name.interval] * (1000 if micro else 1)
        expected = (last - gap.first_missing) // step + 1 if step else 1
        after = wanted[-1].open_time + 1 if wanted else first
        rows = kline_rows(symbol, name.interval, wanted, now)
        return self._advance(job, KLINE.name, rows, after, expected, "klines")

    def _advance(self, job: Job, table: str, rows: list[Row], after: int, expected: int,
                 what: str) -> bool:
        """Store a page's ``rows`` and move ``job`` on to ``after``; True once the gap is whole.

        A page with nothing new (REST is behind the stream, or no longer has these rows; or a
        server going backwards) raises `IncompleteBackfill`: the retry resumes at the cursor. A
        pass that ends short (REST skipped some) starts over from the gap's start.
        """
        if not rows:
            raise IncompleteBackfill(job.stream, job.rows, expected, what)
        self._submit(table, rows)
        job.rows += len(rows)
        job.cursor = after
        if job.cursor <= job.gap.last_missing:
            return False
        if job.rows < expected:
            got, job.rows, job.cursor = job.rows, 0, job.gap.first_missing
            raise IncompleteBackfill(job.stream, got, expected, what)
        return True


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _nap(wakeup: asyncio.Event, wake_at: float | None, now: float) -> None:
    """Wait for ``wakeup`` (a new request), or until ``wake_at`` (a retry is due)."""
    timeout = None if wake_at is None else max(0.0, wake_at - now)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wakeup.wait(), timeout)
