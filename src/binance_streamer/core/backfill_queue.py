"""Which backfill request goes next: a lane per kind of work, each gap on its own back-off, all
within the REST weight budget.

Four lanes share the per-minute request weight (rest-api.md "LIMITS", "IP Limits"), in order of
priority:

    IDS      aggTrade and trade gaps, page by page, the oldest gap first
    KLINES   kline gaps, the oldest first
    DEPTH    depth snapshots that re-anchor a broken or new diff chain, the most active stream
             first (``activity``: messages seen recently)
    REFRESH  periodic depth snapshots (`refresh`), which only bound how far back a rebuilt book
             replays diffs (core/snapshot_schedule.py), the longest due first

The priority is a share of the weight limit each lane may use (`WeightBudget`): periodic snapshots
stop first when the minute's weight runs short, then snapshots, then klines, then trade pages.
Snapshots always leave the weight of the next page of every gap lane, and a larger reserve while
gaps wait, so a gap found behind a thousand queued snapshots is fetched at once. The last
`SAFETY_SHARE` of the limit is never planned for: it absorbs what other processes on the same IP
sent since the used weight was last read.
Each queued gap (a `Job`) carries its own `ReconnectPolicy`, so one gap's failures never delay
another's retries, and it is retried until filled unless `classify` calls its failure fatal.
Repeated requests for one stream's snapshot coalesce: one fetch in flight per stream, and
requests made meanwhile share one further fetch. A periodic snapshot still waiting when a gap or
`NeedSnapshot` asks for one moves to the depth lane and answers it.

Pure: nothing here sleeps, does I/O or reads a clock; callers pass the monotonic time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial

from binance_streamer.core.backoff import ReconnectPolicy, full_jitter
from binance_streamer.core.sequencing import GapDetected, NeedSnapshot
from binance_streamer.core.streams import InvalidStreamName, StreamKind, StreamName, parse_stream

__all__ = [
    "AGG_TRADES_WEIGHT",
    "BACKOFF_CAP_S",
    "FULL_DEPTH",
    "GAP_LANES",
    "GAP_SHARE",
    "HISTORICAL_TRADES_WEIGHT",
    "KLINES_WEIGHT",
    "KLINE_SHARE",
    "REFRESH_SHARE",
    "SAFETY_SHARE",
    "SMALL_DEPTH",
    "SMALL_DEPTH_SHARE",
    "SNAPSHOT_LANES",
    "BackfillQueue",
    "Job",
    "Lane",
    "WeightBudget",
    "by_activity",
    "depth_weight",
    "lane_of",
    "page_weight",
    "used_now",
    "window_wait",
]

# Request weights (rest-api.md "Market Data endpoints"), as Binance charges them today and as the
# local exchange does (exchange/rest.py); older copies of rest-api.md list lower ones.
AGG_TRADES_WEIGHT = 4  # "Compressed/Aggregate trades list"
HISTORICAL_TRADES_WEIGHT = 25  # "Old trade lookup"
KLINES_WEIGHT = 2  # "Kline/Candlestick data"

# Snapshot sizes. web-socket-streams.md "How to manage a local order book correctly" (step 3)
# fetches limit=5000 (weight 250); 1000 levels cost a fifth of that (weight 50) and 100 levels
# a tenth of 1000's (weight 5). Only lastUpdateId matters
# for re-anchoring the chain, so when the weight is short a shallower book now beats a deep one a
# minute later (fewer levels only hide price levels far from the touch, that note says).
FULL_DEPTH = 1000
SMALL_DEPTH = 100

# Shares of the weight limit, highest first. Trade pages may use the weight up to GAP_SHARE,
# klines up to KLINE_SHARE; snapshots stop at the bulk budget (0.8 by default) for 1000 levels and,
# while gaps wait, at SMALL_DEPTH_SHARE for 100, periodic snapshots at REFRESH_SHARE of the bulk
# budget. So (GAP_SHARE - SMALL_DEPTH_SHARE) of the limit, 600 of 6000, is left for waiting gaps
# whatever snapshots do; with no gap waiting, 100-level snapshots go on up to one page below the
# gap lanes' ceilings, so that a gap found then is still fetched at once. The used weight is
# read from the last answer (``X-MBX-USED-WEIGHT-1M``), which counts every process on the IP; the
# final SAFETY_SHARE (300 of 6000) covers what other processes (shards) sent since. This
# process's own requests in flight are added in (`Backfiller`).
SAFETY_SHARE = 0.05
GAP_SHARE = 1.0 - SAFETY_SHARE
KLINE_SHARE = 0.9
SMALL_DEPTH_SHARE = 0.85
REFRESH_SHARE = 0.5
WINDOW_SLACK_S = 0.5  # past the minute's end before the weight counts as reset
BACKOFF_CAP_S = 30.0  # the longest wait between two tries of one gap

class Lane(IntEnum):
    """A kind of backfill work; a lower value is served first when the weight is short."""

    IDS = 0
    KLINES = 1
    DEPTH = 2
    REFRESH = 3


SNAPSHOT_LANES = frozenset({Lane.DEPTH, Lane.REFRESH})  # lanes whose jobs fetch depth snapshots
GAP_LANES = frozenset({Lane.IDS, Lane.KLINES})  # lanes whose jobs fill id or kline gaps


_LANES = {StreamKind.AGG_TRADE: Lane.IDS, StreamKind.TRADE: Lane.IDS, StreamKind.KLINE: Lane.KLINES}


def lane_of(request: GapDetected | NeedSnapshot) -> Lane | None:
    """The lane that serves ``request``, or None when REST cannot fill it (a stream without ids,
    a snapshot for a stream other than diff depth, a name Binance does not know)."""
    try:
        kind = parse_stream(request.stream).kind
    except InvalidStreamName:
        return None
    if kind is StreamKind.DIFF_DEPTH:
        return Lane.DEPTH
    if isinstance(request, NeedSnapshot) or kind not in _LANES:
        return None
    return _LANES[kind]


def depth_weight(levels: int) -> int:
    """The weight of a ``levels``-deep snapshot (rest-api.md "Order book": 1-100 levels weigh 5,
    101-500 weigh 25, 501-1000 weigh 50, 1001-5000 weigh 250)."""
    return 5 if levels <= 100 else 25 if levels <= 500 else 50 if levels <= 1000 else 250


def window_wait(wall: float) -> float:
    """Seconds from wall-clock time ``wall`` until just after its minute ends, when Binance resets
    ``X-MBX-USED-WEIGHT-1M``."""
    return 60.0 - wall % 60.0 + WINDOW_SLACK_S


def used_now(used: int, read_at: float, wall: float) -> int:
    """The weight used so far in the minute of wall-clock time ``wall``: ``used``, as read from
    ``X-MBX-USED-WEIGHT-1M`` at ``read_at``, or 0 if that was in an earlier minute (the header
    counts per minute)."""
    return used if wall // 60.0 <= read_at // 60.0 else 0


class WeightBudget:
    """How much of the per-minute weight limit each lane may use.

    Trade pages stop at `GAP_SHARE` of the limit, klines at `KLINE_SHARE`, snapshots at ``bulk``
    (1000 levels) or `SMALL_DEPTH_SHARE` (100 levels), periodic snapshots at `REFRESH_SHARE` of
    ``bulk``. ``bulk`` must lie in (0, `SMALL_DEPTH_SHARE`]: `ValueError`.
    """

    __slots__ = ("_shares",)

    def __init__(self, bulk: float = 0.8) -> None:
        if not 0.0 < bulk <= SMALL_DEPTH_SHARE:
            raise ValueError(f"the bulk weight budget must be in (0, {SMALL_DEPTH_SHARE}], "
                             f"got {bulk!r}")
        self._shares = {Lane.IDS: GAP_SHARE, Lane.KLINES: KLINE_SHARE, Lane.DEPTH: bulk,
                        Lane.REFRESH: bulk * REFRESH_SHARE}

    def ceiling(self, lane: Lane, limit: int) -> float:
        """The used weight up to which ``lane`` may send requests (full-depth ones, for
        snapshots)."""
        return self._shares[lane] * limit

    def fits(self, lane: Lane, weight: int, used: int, limit: int) -> bool:
        """Whether a request of ``weight`` keeps ``lane`` within its share."""
        return used + weight <= self.ceiling(lane, limit)

    def small_ceiling(self, limit: int, gaps_waiting: bool) -> float:
        """The used weight up to which 100-level snapshots may be sent: `SMALL_DEPTH_SHARE` of
        the limit while gaps wait, else one page of each gap lane below its ceiling."""
        if gaps_waiting:
            return SMALL_DEPTH_SHARE * limit
        return min(self.ceiling(Lane.IDS, limit) - HISTORICAL_TRADES_WEIGHT,
                   self.ceiling(Lane.KLINES, limit) - KLINES_WEIGHT)

    def depth_levels(self, used: int, limit: int, gaps_waiting: bool = True) -> int | None:
        """How deep a snapshot to fetch now: `FULL_DEPTH` within the bulk budget, `SMALL_DEPTH`
        up to `small_ceiling`, None (wait for the next minute) past that."""
        if self.fits(Lane.DEPTH, depth_weight(FULL_DEPTH), used, limit):
            return FULL_DEPTH
        if used + depth_weight(SMALL_DEPTH) <= self.small_ceiling(limit, gaps_waiting):
            return SMALL_DEPTH
        return None

    def snapshot_levels(self, lane: Lane, used: int, limit: int, gaps_waiting: bool = True
                        ) -> int | None:
        """How deep a snapshot of ``lane`` to fetch now (None: wait for the next minute): as
        `depth_levels` in the depth lane; a periodic one is `FULL_DEPTH` or waits, since a
        shallow book would start rebuilt books without their deeper levels."""
        if lane is not Lane.REFRESH:
            return self.depth_levels(used, limit, gaps_waiting)
        return FULL_DEPTH if self.fits(lane, depth_weight(FULL_DEPTH), used, limit) else None

    def __repr__(self) -> str:
        shares = " ".join(f"{lane.name.lower()}={share:g}" for lane, share in self._shares.items())
        return f"<WeightBudget {shares}>"


@dataclass(eq=False)
class Job:
    """Queued work for one stream: a gap to fill, or the snapshot one or more requests asked for.

    ``gaps`` holds exactly one gap for an id or kline job; for a snapshot, every gap it answers
    (``bare`` when a `NeedSnapshot` asked for it too; neither for a periodic one, lane REFRESH).
    ``cursor`` is the next id or open time to fetch and ``rows`` the rows stored so far, kept
    across tries so a retry resumes where the last one stopped. ``age`` orders jobs within a
    lane, oldest first; ``since`` is the monotonic time it was queued.
    """

    lane: Lane
    name: StreamName
    age: int
    policy: ReconnectPolicy
    gaps: list[GapDetected] = field(default_factory=list)
    bare: bool = False
    cursor: int = 0
    rows: int = 0
    ready_at: float = 0.0
    running: bool = False
    since: float = 0.0

    @property
    def stream(self) -> str:
        """The stream name."""
        return self.name.name

    @property
    def gap(self) -> GapDetected:
        """The gap of an id or kline job (the first one of a snapshot)."""
        return self.gaps[0]

    @property
    def requests(self) -> int:
        """How many distinct requests this job answers."""
        return len(self.gaps) + self.bare

    def ask(self, request: GapDetected | NeedSnapshot) -> bool:
        """Let this job answer ``request`` too; False when it already did."""
        if isinstance(request, NeedSnapshot):
            new, self.bare = not self.bare, True
            return new
        if request in self.gaps:
            return False
        self.gaps.append(request)
        return True

    def merge(self, other: Job) -> None:
        """Take on the requests of ``other``."""
        self.bare = self.bare or other.bare
        self.gaps.extend(g for g in other.gaps if g not in self.gaps)

    def __repr__(self) -> str:
        state = "running" if self.running else f"ready_at={self.ready_at:.3f}"
        return (f"<Job {self.lane.name.lower()} {self.stream} age={self.age} "
                f"requests={self.requests} cursor={self.cursor} rows={self.rows} {state}>")


def page_weight(job: Job) -> int:
    """The weight of the next request of an id or kline ``job`` (a snapshot's depends on its size:
    `depth_weight`)."""
    if job.name.kind is StreamKind.TRADE:
        return HISTORICAL_TRADES_WEIGHT
    if job.name.kind is StreamKind.AGG_TRADE:
        return AGG_TRADES_WEIGHT
    return KLINES_WEIGHT


def by_activity(jobs: Iterable[Job], activity: Callable[[str], float]) -> Job | None:
    """The job of the most active stream among ``jobs`` (``activity(stream)``: messages seen
    recently), the oldest among equally active ones; None for no jobs."""
    return min(jobs, key=lambda j: (-activity(j.stream), j.age), default=None)


class BackfillQueue:
    """The open backfill work, by lane.

    `add` queues a request, ready at once; `refresh` queues a periodic snapshot (both at the
    monotonic time ``now``, which `oldest` reports). A lane's worker `peek`s at its next ready
    job, `start`s it when the weight allows, and ends each request
    with `resume` (more pages to go), `done` (filled, or snapshot taken) or `failed` (retry after
    the job's own back-off, or give up). ``delays`` builds each job's back-off (full jitter from
    0.5 s up to `BACKOFF_CAP_S`).
    """

    def __init__(self, delays: Callable[[], Iterator[float]] | None = None) -> None:
        self._delays = delays if delays is not None else partial(full_jitter, 0.5, BACKOFF_CAP_S)
        self._lanes: dict[Lane, list[Job]] = {lane: [] for lane in Lane}
        self._books: dict[str, Job] = {}  # the snapshot job of each stream, waiting or running
        self._again: dict[str, Job] = {}  # asked for while that stream's snapshot is running
        self._open: set[GapDetected] = set()  # id and kline gaps queued, to drop repeats
        self._ages = itertools.count()

    @property
    def pending(self) -> int:
        """Jobs not done yet: waiting, backing off, running, or due after a running snapshot;
        periodic snapshots aside (`refreshing`), which no request waits for."""
        asked = sum(len(jobs) for lane, jobs in self._lanes.items() if lane is not Lane.REFRESH)
        return asked + len(self._again)

    @property
    def refreshing(self) -> int:
        """Periodic snapshots queued, backing off or running."""
        return len(self._lanes[Lane.REFRESH])

    @property
    def open_gaps(self) -> int:
        """Distinct gaps queued and neither filled, snapshotted nor given up."""
        snapshots = [*self._lanes[Lane.DEPTH], *self._again.values()]  # REFRESH: no gaps
        return len(self._open) + len({gap for job in snapshots for gap in job.gaps})

    @property
    def gaps_waiting(self) -> bool:
        """Whether any id or kline gap is open (waiting, backing off or running)."""
        return any(self._lanes[lane] for lane in GAP_LANES)

    @property
    def in_flight(self) -> int:
        """Jobs whose request is being sent (`start`ed and not yet ended)."""
        return sum(job.running for jobs in self._lanes.values() for job in jobs)

    def queued(self) -> dict[Lane, int]:
        """Jobs waiting, ready or backing off, by lane (running ones aside); a snapshot due after
        a running one of its stream counts in the depth lane."""
        counts = {lane: sum(not job.running for job in jobs) for lane, jobs in self._lanes.items()}
        counts[Lane.DEPTH] += len(self._again)
        return counts

    def oldest(self) -> float | None:
        """When the oldest job still open (waiting, backing off or running) was queued; None
        when there is none."""
        jobs = itertools.chain(*self._lanes.values(), self._again.values())
        return min((job.since for job in jobs), default=None)

    def add(self, request: GapDetected | NeedSnapshot, now: float = 0.0) -> bool:
        """Queue ``request``, ready at once; False when queued work answers it already.

        Raises `ValueError` for a request REST cannot fill (`lane_of` is None).
        """
        lane = lane_of(request)
        if lane is None:
            raise ValueError(f"REST cannot fill {request.stream}: {request!r}")
        if lane is Lane.DEPTH:
            return self._snapshot_job(request.stream, now).ask(request)
        assert isinstance(request, GapDetected)  # lane_of gives NeedSnapshot the depth lane only
        if request in self._open:
            return False
        self._open.add(request)
        job = self._new(lane, request.stream, now)
        job.ask(request)
        job.cursor = request.first_missing
        self._lanes[lane].append(job)
        return True

    def refresh(self, stream: str, now: float = 0.0) -> bool:
        """Queue a periodic snapshot of the diff-depth ``stream`` in the REFRESH lane; False
        when a snapshot of it is queued or running already (its fetch serves as well)."""
        if stream in self._books:
            return False
        job = self._books[stream] = self._new(Lane.REFRESH, stream, now)
        self._lanes[Lane.REFRESH].append(job)
        return True

    def drop_snapshots(self, stream: str) -> bool:
        """``stream`` is no longer recorded: drop its waiting snapshot (a running one ends by
        itself) and any asked for after it; True when something was dropped. Its gaps stay:
        the trades they miss happened all the same."""
        dropped = self._again.pop(stream, None) is not None
        job = self._books.get(stream)
        if job is not None and not job.running:
            del self._books[stream]
            self._lanes[job.lane].remove(job)
            dropped = True
        return dropped

    def peek(self, lane: Lane, now: float, activity: Callable[[str], float] | None = None
             ) -> Job | None:
        """The job of ``lane`` to serve next among those ready at ``now`` and not running: the
        oldest, or with ``activity`` the most active stream's (`by_activity`); None if none is."""
        ready = [j for j in self._lanes[lane] if not j.running and j.ready_at <= now]
        if activity is not None:
            return by_activity(ready, activity)
        return min(ready, key=lambda j: j.age, default=None)

    def wake_at(self, lane: Lane) -> float | None:
        """When the next job of ``lane`` that is backing off becomes ready (None: none is)."""
        return min((j.ready_at for j in self._lanes[lane] if not j.running), default=None)

    def start(self, job: Job) -> None:
        """Mark ``job`` running: its request is being sent."""
        job.running = True

    def resume(self, job: Job) -> None:
        """``job`` made progress and has more to fetch: ready again at once."""
        job.running = False

    def done(self, job: Job) -> None:
        """``job`` is finished (filled, snapshot taken, or given up): drop it; a snapshot asked
        for while it ran becomes ready."""
        job.running = False
        self._lanes[job.lane].remove(job)
        if job.lane not in SNAPSHOT_LANES:
            self._open.discard(job.gap)
            return
        del self._books[job.stream]
        again = self._again.pop(job.stream, None)
        if again is not None:
            self._books[job.stream] = again
            self._lanes[Lane.DEPTH].append(again)

    def failed(self, job: Job, failure: BaseException, now: float) -> float | None:
        """``job``'s request failed at ``now``: seconds until its retry, or None when it is given
        up (a failure `classify` calls fatal), which drops it like `done`."""
        delay = job.policy.after(failure)
        if delay is None:
            self.done(job)
            return None
        job.running = False
        job.ready_at = now + delay
        again = self._again.pop(job.stream, None)  # its fetch is still to come: answer them too
        if again is not None:
            self._promote(job)
            job.merge(again)
        return delay

    def _snapshot_job(self, stream: str, now: float) -> Job:
        """The snapshot job a new request for ``stream`` joins: the queued one, or the one due
        after the running one."""
        job = self._books.get(stream)
        if job is None:
            job = self._books[stream] = self._new(Lane.DEPTH, stream, now)
            self._lanes[Lane.DEPTH].append(job)
        elif job.running:
            due = self._again.get(stream)
            if due is None:
                due = self._again[stream] = self._new(Lane.DEPTH, stream, now)
            job = due
        elif job.lane is Lane.REFRESH:  # a waiting periodic snapshot: needed at once now
            self._promote(job)
            job.ready_at = 0.0
        return job

    def _promote(self, job: Job) -> None:
        """Move a waiting periodic snapshot ``job`` to the depth lane: a request needs it now."""
        if job.lane is Lane.REFRESH:
            self._lanes[Lane.REFRESH].remove(job)
            job.lane = Lane.DEPTH
            self._lanes[Lane.DEPTH].append(job)

    def _new(self, lane: Lane, stream: str, now: float) -> Job:
        return Job(lane, parse_stream(stream), next(self._ages), ReconnectPolicy(self._delays),
                   since=now)

    def __repr__(self) -> str:
        sizes = " ".join(f"{lane.name.lower()}={len(jobs)}" for lane, jobs in self._lanes.items())
        return f"<BackfillQueue {sizes} again={len(self._again)} open_gaps={self.open_gaps}>"
