"""Which backfill request goes next: a lane per kind of work, oldest first, each gap on its own
back-off, all within the REST weight budget.

Four lanes share the per-minute request weight (rest-api.md "LIMITS", "IP Limits"), in order of
priority:

    DEPTH    depth snapshots: they re-anchor order books, so a broken chain is served at once
    IDS      aggTrade and trade gaps, page by page, the oldest gap first
    KLINES   kline gaps
    REFRESH  periodic depth snapshots (`refresh`), which only bound how far back a rebuilt book
             replays diffs (core/snapshot_schedule.py)

The priority is a share of the weight limit each lane may use (`WeightBudget`): periodic snapshots
stop first when the minute's weight runs short, then klines, then trade pages, and snapshots keep
a reserve of their own.
Each queued gap (a `Job`) carries its own `ReconnectPolicy`, so one gap's failures never delay
another's retries, and it is retried until filled unless `classify` calls its failure fatal.
Repeated requests for one stream's snapshot coalesce: one fetch in flight per stream, and
requests made meanwhile share one further fetch. A periodic snapshot still waiting when a gap or
`NeedSnapshot` asks for one moves to the depth lane and answers it.

Pure: nothing here sleeps, does I/O or reads a clock; callers pass the monotonic time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial

from binance_streamer.core.backoff import ReconnectPolicy, full_jitter
from binance_streamer.core.sequencing import GapDetected, NeedSnapshot
from binance_streamer.core.streams import InvalidStreamName, StreamKind, StreamName, parse_stream

__all__ = [
    "AGG_TRADES_WEIGHT",
    "BACKOFF_CAP_S",
    "DEPTH_RESERVE_SHARE",
    "FULL_DEPTH",
    "HISTORICAL_TRADES_WEIGHT",
    "KLINES_WEIGHT",
    "REFRESH_SHARE",
    "SMALL_DEPTH",
    "SNAPSHOT_LANES",
    "BackfillQueue",
    "Job",
    "Lane",
    "WeightBudget",
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

# Snapshots may use the weight up to this share of the limit; trade pages stop at the bulk budget
# (0.8 by default), klines at KLINE_SHARE of it and periodic snapshots at REFRESH_SHARE of it. At
# most one request per lane is in flight, so the used weight read from the last answer lags by
# under 300; the rest of the limit absorbs that.
DEPTH_RESERVE_SHARE = 0.95
KLINE_SHARE = 0.75
REFRESH_SHARE = 0.5
WINDOW_SLACK_S = 0.5  # past the minute's end before the weight counts as reset
BACKOFF_CAP_S = 30.0  # the longest wait between two tries of one gap

class Lane(IntEnum):
    """A kind of backfill work; a lower value is served first when the weight is short."""

    DEPTH = 0
    IDS = 1
    KLINES = 2
    REFRESH = 3


SNAPSHOT_LANES = frozenset({Lane.DEPTH, Lane.REFRESH})  # lanes whose jobs fetch depth snapshots


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

    Trade pages stop at ``bulk`` of the limit, klines at `KLINE_SHARE` of that, periodic
    snapshots at `REFRESH_SHARE` of that, and other snapshots at `DEPTH_RESERVE_SHARE`. ``bulk``
    must lie in (0, `DEPTH_RESERVE_SHARE`]: `ValueError`.
    """

    __slots__ = ("_shares",)

    def __init__(self, bulk: float = 0.8) -> None:
        if not 0.0 < bulk <= DEPTH_RESERVE_SHARE:
            raise ValueError(f"the bulk weight budget must be in (0, {DEPTH_RESERVE_SHARE}], "
                             f"got {bulk!r}")
        self._shares = {Lane.DEPTH: DEPTH_RESERVE_SHARE, Lane.IDS: bulk,
                        Lane.KLINES: bulk * KLINE_SHARE, Lane.REFRESH: bulk * REFRESH_SHARE}

    def ceiling(self, lane: Lane, limit: int) -> float:
        """The used weight up to which ``lane`` may send requests."""
        return self._shares[lane] * limit

    def fits(self, lane: Lane, weight: int, used: int, limit: int) -> bool:
        """Whether a request of ``weight`` keeps ``lane`` within its share."""
        return used + weight <= self.ceiling(lane, limit)

    def depth_levels(self, used: int, limit: int) -> int | None:
        """How deep a snapshot to fetch now: `FULL_DEPTH` within the bulk budget, `SMALL_DEPTH`
        in the reserve above it, None (wait for the next minute) past the reserve too."""
        if self.fits(Lane.IDS, depth_weight(FULL_DEPTH), used, limit):
            return FULL_DEPTH
        if self.fits(Lane.DEPTH, depth_weight(SMALL_DEPTH), used, limit):
            return SMALL_DEPTH
        return None

    def snapshot_levels(self, lane: Lane, used: int, limit: int) -> int | None:
        """How deep a snapshot of ``lane`` to fetch now (None: wait for the next minute): as
        `depth_levels` in the depth lane; a periodic one is `FULL_DEPTH` or waits, since a
        shallow book would start rebuilt books without their deeper levels."""
        if lane is not Lane.REFRESH:
            return self.depth_levels(used, limit)
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
    lane, oldest first.
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


class BackfillQueue:
    """The open backfill work, by lane.

    `add` queues a request, ready at once; `refresh` queues a periodic snapshot. A lane's worker
    `peek`s at its oldest ready job, `start`s it when the weight allows, and ends each request
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

    def add(self, request: GapDetected | NeedSnapshot) -> bool:
        """Queue ``request``, ready at once; False when queued work answers it already.

        Raises `ValueError` for a request REST cannot fill (`lane_of` is None).
        """
        lane = lane_of(request)
        if lane is None:
            raise ValueError(f"REST cannot fill {request.stream}: {request!r}")
        if lane is Lane.DEPTH:
            return self._snapshot_job(request.stream).ask(request)
        assert isinstance(request, GapDetected)  # lane_of gives NeedSnapshot the depth lane only
        if request in self._open:
            return False
        self._open.add(request)
        job = self._new(lane, request.stream)
        job.ask(request)
        job.cursor = request.first_missing
        self._lanes[lane].append(job)
        return True

    def refresh(self, stream: str) -> bool:
        """Queue a periodic snapshot of the diff-depth ``stream`` in the REFRESH lane; False
        when a snapshot of it is queued or running already (its fetch serves as well)."""
        if stream in self._books:
            return False
        job = self._books[stream] = self._new(Lane.REFRESH, stream)
        self._lanes[Lane.REFRESH].append(job)
        return True

    def peek(self, lane: Lane, now: float) -> Job | None:
        """The oldest job of ``lane`` ready at ``now`` and not running, if any."""
        ready = (j for j in self._lanes[lane] if not j.running and j.ready_at <= now)
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

    def _snapshot_job(self, stream: str) -> Job:
        """The snapshot job a new request for ``stream`` joins: the queued one, or the one due
        after the running one."""
        job = self._books.get(stream)
        if job is None:
            job = self._books[stream] = self._new(Lane.DEPTH, stream)
            self._lanes[Lane.DEPTH].append(job)
        elif job.running:
            due = self._again.get(stream)
            if due is None:
                due = self._again[stream] = self._new(Lane.DEPTH, stream)
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

    def _new(self, lane: Lane, stream: str) -> Job:
        return Job(lane, parse_stream(stream), next(self._ages), ReconnectPolicy(self._delays))

    def __repr__(self) -> str:
        sizes = " ".join(f"{lane.name.lower()}={len(jobs)}" for lane, jobs in self._lanes.items())
        return f"<BackfillQueue {sizes} again={len(self._again)} open_gaps={self.open_gaps}>"
