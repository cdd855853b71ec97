"""The backfill queue: lanes by kind, gaps before snapshots, the most active stream's snapshot
first, own back-off per gap, coalesced snapshots, periodic snapshots at the lowest priority, and
each lane's share of the REST weight."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from binance_streamer.core.backfill_queue import (
    AGG_TRADES_WEIGHT,
    FULL_DEPTH,
    HISTORICAL_TRADES_WEIGHT,
    KLINES_WEIGHT,
    SAFETY_SHARE,
    SMALL_DEPTH,
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
from binance_streamer.core.sequencing import GapDetected, NeedSnapshot
from binance_streamer.errors import RestError, Unreachable

DOWN = Unreachable("https://api.binance.com/api/v3/aggTrades", "connection refused")
WRONG = RestError(400, -1100, "Illegal characters found in parameter")


def gap(stream: str = "btcusdt@aggTrade", first: int = 1, last: int = 2) -> GapDetected:
    return GapDetected(stream, first, last, "id gap")


def snap(stream: str = "btcusdt@depth") -> NeedSnapshot:
    return NeedSnapshot(stream, "initial snapshot")


def ready(queue: BackfillQueue, lane: Lane, now: float = 0.0) -> Job:
    """The job ``lane`` serves next (there must be one)."""
    job = queue.peek(lane, now)
    assert job is not None
    return job


def take(queue: BackfillQueue, lane: Lane, now: float = 0.0) -> Job:
    """Start the job ``lane`` serves next."""
    job = ready(queue, lane, now)
    queue.start(job)
    return job


def steady(seconds: float) -> Callable[[], Iterator[float]]:
    """A delays factory: every retry waits ``seconds``."""
    return lambda: itertools.repeat(seconds)


@pytest.mark.parametrize(("request_", "lane"), [
    (gap("btcusdt@depth@100ms"), Lane.DEPTH),
    (snap("btcusdt@depth"), Lane.DEPTH),
    (gap("btcusdt@aggTrade"), Lane.IDS),
    (gap("btcusdt@trade"), Lane.IDS),
    (gap("btcusdt@kline_1m"), Lane.KLINES),
    (snap("btcusdt@aggTrade"), None),
    (gap("btcusdt@ticker"), None),
    (gap("not a stream"), None),
])
def test_each_request_has_the_lane_of_its_stream_kind(
        request_: GapDetected | NeedSnapshot, lane: Lane | None) -> None:
    """Diff depth goes to the depth lane, trades to ids, klines to klines; anything else (a
    snapshot of a trade stream, a ticker, a bad name) has no lane."""
    assert lane_of(request_) is lane


@pytest.mark.parametrize(("levels", "weight"), [
    (1, 5), (100, 5), (101, 25), (500, 25), (501, 50), (1000, 50), (1001, 250), (5000, 250)])
def test_snapshot_weight_follows_the_order_book_table(levels: int, weight: int) -> None:
    """A snapshot weighs 5 up to 100 levels, 25 up to 500, 50 up to 1000 and 250 beyond."""
    assert depth_weight(levels) == weight


def test_page_weights_are_those_of_each_endpoint() -> None:
    """historicalTrades weighs 25, aggTrades 4 and klines 2 a page."""
    queue = BackfillQueue()
    for stream in ("btcusdt@trade", "btcusdt@aggTrade", "btcusdt@kline_1s"):
        queue.add(gap(stream))
    weights = [page_weight(take(queue, lane)) for lane in (Lane.IDS, Lane.IDS, Lane.KLINES)]
    assert weights == [HISTORICAL_TRADES_WEIGHT, AGG_TRADES_WEIGHT, KLINES_WEIGHT] == [25, 4, 2]


def test_the_weight_window_ends_just_after_the_minute() -> None:
    """The wait lasts until half a second past the end of the current wall-clock minute."""
    assert (window_wait(120.0), window_wait(179.75)) == (60.5, 0.75)


def test_a_used_weight_counts_within_its_minute_only() -> None:
    """A used weight read earlier in the same minute stands; one read in an earlier minute is
    0."""
    assert [used_now(4000, 61.0, wall) for wall in (61.0, 119.9, 120.0)] == [4000, 4000, 0]


@pytest.mark.parametrize("bulk", [0.0, -0.1, 0.86, float("nan")])
def test_a_bulk_budget_past_the_small_snapshots_share_is_refused(bulk: float) -> None:
    """The bulk share must be positive and leave room for 100-level snapshots below the gaps'
    reserve: ValueError."""
    with pytest.raises(ValueError, match="weight budget"):
        WeightBudget(bulk)


def test_each_lane_stops_at_its_share_of_the_limit() -> None:
    """Trade pages may use 95 % of the limit (5 % is the safety margin), klines 90 %, snapshots
    the bulk budget and periodic snapshots half of it."""
    budget = WeightBudget(0.8)
    assert [budget.ceiling(lane, 6000) for lane in Lane] == pytest.approx(
        [5700, 5400, 4800, 2400])
    assert budget.fits(Lane.IDS, 25, 5675, 6000) and not budget.fits(Lane.IDS, 25, 5676, 6000)
    assert budget.fits(Lane.KLINES, 2, 5398, 6000) and not budget.fits(Lane.KLINES, 2, 5399, 6000)
    assert repr(budget) == "<WeightBudget ids=0.95 klines=0.9 depth=0.8 refresh=0.4>"
    assert budget.ceiling(Lane.IDS, 6000) == pytest.approx(6000 * (1 - SAFETY_SHARE)) == 5700


def test_snapshots_shrink_past_the_bulk_budget_and_wait_past_their_share() -> None:
    """1000 levels fit within the bulk budget, 100 above it up to 85 % of the limit while gaps
    wait, none past that."""
    budget = WeightBudget(0.8)
    assert [budget.depth_levels(used, 6000) for used in (0, 4750, 4751, 5095, 5096)] == [
        FULL_DEPTH, FULL_DEPTH, SMALL_DEPTH, SMALL_DEPTH, None]


def test_with_no_gap_waiting_snapshots_go_on_to_a_page_below_the_gap_ceilings() -> None:
    """With no gap waiting, 100-level snapshots may use the weight up to one page below the
    lowest gap lane's ceiling (klines: 5400 - 2), so a gap found next still fits."""
    budget = WeightBudget(0.8)
    assert budget.small_ceiling(6000, gaps_waiting=False) == pytest.approx(5398)
    assert [budget.depth_levels(used, 6000, gaps_waiting=False)
            for used in (4750, 5096, 5393, 5394)] == [FULL_DEPTH, SMALL_DEPTH, SMALL_DEPTH, None]
    assert budget.snapshot_levels(Lane.REFRESH, 3000, 6000, gaps_waiting=False) is None


@pytest.mark.parametrize("limit", [250, 1000, 6000])
def test_no_snapshot_leaves_a_gap_page_without_weight(limit: int) -> None:
    """Whatever weight is used and whether gaps wait or not, once any snapshot fits, the
    heaviest page of each gap lane still fits after it: snapshots never take the weight a gap
    found next needs (from a limit of 250 up)."""
    budget = WeightBudget(0.85)
    for used, lane, waiting in itertools.product(range(limit + 1), (Lane.DEPTH, Lane.REFRESH),
                                                 (True, False)):
        levels = budget.snapshot_levels(lane, used, limit, waiting)
        if levels is not None:
            after = used + depth_weight(levels)
            assert budget.fits(Lane.IDS, HISTORICAL_TRADES_WEIGHT, after, limit)
            assert budget.fits(Lane.KLINES, KLINES_WEIGHT, after, limit)


def test_a_gap_is_queued_once() -> None:
    """A gap already queued is not queued again, and may be once it is done."""
    queue = BackfillQueue()
    assert queue.add(gap()) and not queue.add(gap())
    job = take(queue, Lane.IDS)
    queue.done(job)
    assert (queue.pending, queue.open_gaps) == (0, 0)
    assert queue.add(gap()) and queue.pending == 1


def test_a_request_rest_cannot_fill_is_refused() -> None:
    """add raises ValueError for a request no lane serves."""
    with pytest.raises(ValueError, match="REST cannot fill"):
        BackfillQueue().add(gap("btcusdt@bookTicker"))


def test_the_oldest_ready_job_of_a_lane_goes_first() -> None:
    """Within a lane the earliest request is served first; a job backing off or running is
    skipped until it is ready again."""
    queue = BackfillQueue(steady(10.0))
    old, new = gap("btcusdt@aggTrade"), gap("ethusdt@trade")
    queue.add(old)
    queue.add(new)
    first = take(queue, Lane.IDS)
    assert queue.failed(first, DOWN, 5.0) == 10.0
    assert ready(queue, Lane.IDS, 5.0).gap == new and ready(queue, Lane.IDS, 15.0) is first
    assert queue.wake_at(Lane.IDS) == 0.0 and queue.peek(Lane.DEPTH, 0.0) is None


def test_a_job_resumed_after_a_page_is_ready_at_once_and_keeps_its_cursor() -> None:
    """A job with more pages to go is ready again, at the cursor it reached."""
    queue = BackfillQueue()
    queue.add(gap(first=100, last=5000))
    job = take(queue, Lane.IDS)
    assert queue.peek(Lane.IDS, 0.0) is None and queue.wake_at(Lane.IDS) is None
    job.cursor = 1100
    queue.resume(job)
    assert queue.peek(Lane.IDS, 0.0) is job and job.cursor == 1100


def test_each_job_backs_off_on_its_own() -> None:
    """Two failing gaps each get their own delay sequence: the second's first retry is not
    lengthened by the first's failures."""
    queue = BackfillQueue(lambda: iter([1.0, 2.0, 4.0]))
    queue.add(gap("btcusdt@aggTrade"))
    queue.add(gap("ethusdt@aggTrade"))
    a, b = take(queue, Lane.IDS), take(queue, Lane.IDS)
    delays = [queue.failed(a, DOWN, 0.0), queue.failed(a, DOWN, 0.0), queue.failed(b, DOWN, 0.0)]
    assert delays == [1.0, 2.0, 1.0]
    assert (a.ready_at, b.ready_at, queue.wake_at(Lane.IDS)) == (2.0, 1.0, 1.0)


def test_a_fatal_failure_gives_the_job_up() -> None:
    """A 400 (our request is wrong) drops the job: nothing pending, no gap open."""
    queue = BackfillQueue(steady(0.0))
    queue.add(gap())
    job = take(queue, Lane.IDS)
    assert queue.failed(job, WRONG, 0.0) is None
    assert (queue.pending, queue.open_gaps, job.running) == (0, 0, False)


def test_the_default_back_off_starts_short() -> None:
    """Without injected delays, the first retry comes within half a second."""
    queue = BackfillQueue()
    queue.add(gap())
    delay = queue.failed(take(queue, Lane.IDS), DOWN, 0.0)
    assert delay is not None and 0.0 <= delay <= 0.5


def test_snapshot_requests_before_the_fetch_share_it() -> None:
    """Requests for one stream's snapshot made before it is fetched join one job answering each
    distinct gap and the NeedSnapshot once."""
    queue = BackfillQueue()
    g = gap("btcusdt@depth", 5, 9)
    added = [queue.add(r) for r in (snap(), g, snap(), g, gap("ethusdt@depth"))]
    assert added == [True, True, False, False, True]
    job = ready(queue, Lane.DEPTH)
    assert (job.stream, job.gaps, job.bare, job.requests) == ("btcusdt@depth", [g], True, 2)
    assert (queue.pending, queue.open_gaps) == (2, 2)


def test_snapshot_requests_during_the_fetch_share_one_more_fetch() -> None:
    """Requests made while a stream's snapshot is being fetched wait for it to finish, then are
    answered together by one further fetch."""
    queue = BackfillQueue()
    queue.add(snap())
    running = take(queue, Lane.DEPTH)
    g1, g2 = gap("btcusdt@depth", 5, 9), gap("btcusdt@depth", 20, 30)
    assert [queue.add(r) for r in (g1, snap(), g2, g1)] == [True, True, True, False]
    assert queue.peek(Lane.DEPTH, 0.0) is None and queue.pending == 2
    queue.done(running)
    after = ready(queue, Lane.DEPTH)
    assert (after.gaps, after.bare, queue.pending, queue.open_gaps) == ([g1, g2], True, 1, 2)
    queue.start(after)
    queue.done(after)
    assert (queue.pending, queue.open_gaps) == (0, 0)


def test_a_failed_snapshot_fetch_answers_the_requests_made_meanwhile() -> None:
    """When a snapshot fetch fails and will be retried, requests made during it are merged into
    its retry instead of a separate fetch."""
    queue = BackfillQueue(steady(1.0))
    queue.add(snap())
    running = take(queue, Lane.DEPTH)
    g = gap("btcusdt@depth", 5, 9)
    queue.add(g)
    assert queue.failed(running, DOWN, 0.0) == 1.0
    assert (running.gaps, running.bare, queue.pending) == ([g], True, 1)
    assert queue.peek(Lane.DEPTH, 1.0) is running


def test_a_snapshot_given_up_leaves_the_requests_made_meanwhile_queued() -> None:
    """A snapshot fetch given up on drops its own requests only; those made meanwhile get their
    own fetch."""
    queue = BackfillQueue()
    queue.add(snap())
    running = take(queue, Lane.DEPTH)
    g = gap("btcusdt@depth", 5, 9)
    queue.add(g)
    assert queue.failed(running, WRONG, 0.0) is None
    after = ready(queue, Lane.DEPTH)
    assert after is not running and after.gaps == [g] and queue.pending == 1


def test_open_gaps_count_distinct_gaps_of_every_lane() -> None:
    """open_gaps counts id, kline and depth gaps once each, and no NeedSnapshot."""
    queue = BackfillQueue()
    for r in (gap(), gap("btcusdt@kline_1s", 1000, 2000), snap(), gap("btcusdt@depth", 5, 9)):
        queue.add(r)
    assert (queue.open_gaps, queue.pending) == (3, 3)
    assert repr(queue) == ("<BackfillQueue ids=1 klines=1 depth=1 refresh=0 again=0 "
                           "open_gaps=3>")


def test_jobs_describe_themselves() -> None:
    """A job's repr names its lane, stream, age, requests, progress and state."""
    queue = BackfillQueue()
    queue.add(gap(first=7, last=9))
    job = ready(queue, Lane.IDS)
    assert repr(job) == ("<Job ids btcusdt@aggTrade age=0 requests=1 cursor=7 rows=0 "
                         "ready_at=0.000>")
    queue.start(job)
    assert repr(job).endswith("rows=0 running>")


# -- periodic snapshots --------------------------------------------------------------------------


def test_periodic_snapshots_are_full_depth_within_their_share_or_wait() -> None:
    """A periodic snapshot is 1000 levels deep while it fits within its share of the weight and
    waits for the next minute past it, where a depth-lane snapshot still goes ahead."""
    budget = WeightBudget(0.8)
    assert [budget.snapshot_levels(Lane.REFRESH, used, 6000) for used in (0, 2350, 2351)] == [
        FULL_DEPTH, FULL_DEPTH, None]
    assert budget.snapshot_levels(Lane.DEPTH, 2351, 6000) == FULL_DEPTH
    assert budget.snapshot_levels(Lane.DEPTH, 5000, 6000) == SMALL_DEPTH


def test_a_periodic_snapshot_is_queued_in_its_own_lane_once() -> None:
    """refresh queues a snapshot job with no request to answer in the refresh lane, not twice,
    and not while another snapshot of the stream is queued; it is not counted as pending."""
    queue = BackfillQueue()
    assert queue.refresh("btcusdt@depth") and not queue.refresh("btcusdt@depth")
    job = ready(queue, Lane.REFRESH)
    assert (job.stream, job.gaps, job.bare, queue.peek(Lane.DEPTH, 0.0)) == (
        "btcusdt@depth", [], False, None)
    queue.add(snap("ethusdt@depth"))
    assert not queue.refresh("ethusdt@depth")
    assert (queue.pending, queue.refreshing, queue.open_gaps) == (1, 1, 0)
    queue.start(job)
    queue.done(job)
    assert queue.refreshing == 0 and queue.refresh("btcusdt@depth")


def test_a_request_moves_a_waiting_periodic_snapshot_to_the_depth_lane() -> None:
    """A gap asked for while a periodic snapshot of its stream waits joins that job, which is
    then served by the depth lane at once."""
    queue = BackfillQueue()
    queue.refresh("btcusdt@depth")
    g = gap("btcusdt@depth", 5, 9)
    assert queue.add(g)
    job = ready(queue, Lane.DEPTH)
    assert (job.lane, job.gaps, queue.peek(Lane.REFRESH, 0.0)) == (Lane.DEPTH, [g], None)
    assert (queue.pending, queue.refreshing) == (1, 0)


def test_a_failed_periodic_snapshot_answering_a_later_request_retries_in_the_depth_lane() -> None:
    """Requests made while a periodic snapshot is fetched are answered by its retry when it
    fails, in the depth lane; with nothing asked meanwhile it retries in its own lane."""
    queue = BackfillQueue(steady(1.0))
    queue.refresh("btcusdt@depth")
    queue.refresh("ethusdt@depth")
    btc, eth = take(queue, Lane.REFRESH), take(queue, Lane.REFRESH)
    queue.add(snap())
    assert queue.failed(btc, DOWN, 0.0) == 1.0 and queue.failed(eth, DOWN, 0.0) == 1.0
    assert (btc.lane, btc.bare, ready(queue, Lane.DEPTH, 1.0)) == (Lane.DEPTH, True, btc)
    assert ready(queue, Lane.REFRESH, 1.0) is eth


def test_a_periodic_snapshot_given_up_is_dropped() -> None:
    """A fatal failure drops a periodic snapshot like any other job."""
    queue = BackfillQueue()
    queue.refresh("btcusdt@depth")
    assert queue.failed(take(queue, Lane.REFRESH), WRONG, 0.0) is None
    assert queue.refreshing == 0 and queue.refresh("btcusdt@depth")


def test_a_request_joining_a_periodic_snapshot_in_back_off_is_ready_at_once() -> None:
    """A gap asked for while a failed periodic snapshot of its stream waits out its back-off
    is served by the depth lane now, not after the periodic job's back-off."""
    queue = BackfillQueue(steady(30.0))
    queue.refresh("btcusdt@depth")
    assert queue.failed(take(queue, Lane.REFRESH), DOWN, 0.0) == 30.0
    assert queue.add(gap("btcusdt@depth", 5, 9))
    assert ready(queue, Lane.DEPTH, 0.0).lane is Lane.DEPTH


def test_drop_snapshots_of_a_retired_stream_keeps_its_gaps() -> None:
    """An unsubscribed stream: its waiting snapshot and the one asked for behind a running one
    go; a running one is left to finish; its trade gaps stay queued."""
    queue = BackfillQueue()
    queue.add(NeedSnapshot("btcusdt@depth", "initial snapshot"))
    queue.add(GapDetected("btcusdt@aggTrade", 5, 9, "gap"))
    assert queue.drop_snapshots("btcusdt@depth")
    assert queue.queued().get(Lane.DEPTH, 0) == 0 and queue.queued()[Lane.IDS] == 1
    assert not queue.drop_snapshots("btcusdt@depth")  # nothing left to drop
    queue.refresh("ethusdt@depth")
    job = queue.peek(Lane.REFRESH, 0.0)
    assert job is not None
    queue.start(job)
    queue.add(NeedSnapshot("ethusdt@depth", "gap"))  # due after the running one
    assert queue.drop_snapshots("ethusdt@depth")  # only the one asked for behind it
    assert job.running  # left to finish
    queue.done(job)  # and nothing follows it: only the aggTrade gap is left
    assert queue.pending == 1 and queue.queued()[Lane.IDS] == 1
    assert queue.queued().get(Lane.DEPTH, 0) == queue.queued().get(Lane.REFRESH, 0) == 0
