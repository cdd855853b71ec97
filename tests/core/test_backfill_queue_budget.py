"""Snapshots by stream activity, the queue's budget view (queued per lane, in flight, the oldest
wait, a Retry-After pause) and the activity meter that ranks streams."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from binance_streamer.core.activity import ActivityMeter
from binance_streamer.core.backfill_queue import BackfillQueue, Lane, by_activity
from binance_streamer.core.rest_budget import RestBudget
from binance_streamer.core.sequencing import GapDetected, NeedSnapshot


def snap(symbol: str) -> NeedSnapshot:
    return NeedSnapshot(f"{symbol}@depth@100ms", "initial snapshot")


def gap(stream: str = "btcusdt@aggTrade", first: int = 1, last: int = 2) -> GapDetected:
    return GapDetected(stream, first, last, "id gap")


ACTIVITY = {"btcusdt@depth@100ms": 50.0, "ethusdt@depth@100ms": 20.0,
            "solusdt@depth@100ms": 20.0, "dogeusdt@depth@100ms": 0.5}


def test_snapshots_are_served_most_active_stream_first() -> None:
    """With an activity ranking, the depth lane serves the busiest stream's snapshot first and
    equally busy ones oldest first, whatever order they were asked in; unranked, oldest first."""
    queue = BackfillQueue()
    for symbol in ("dogeusdt", "solusdt", "ethusdt", "btcusdt"):
        queue.add(snap(symbol))
    order = []
    while (job := queue.peek(Lane.DEPTH, 0.0, lambda s: ACTIVITY[s])) is not None:
        order.append(job.name.symbol)
        queue.start(job)
        queue.done(job)
    assert order == ["btcusdt", "solusdt", "ethusdt", "dogeusdt"]
    for symbol in ("dogeusdt", "btcusdt"):
        queue.add(snap(symbol))
    unranked = queue.peek(Lane.DEPTH, 0.0)
    assert unranked is not None and unranked.name.symbol == "dogeusdt"


def test_activity_is_read_when_the_lane_picks() -> None:
    """A stream that became the busiest while its snapshot waited goes next."""
    queue = BackfillQueue()
    for symbol in ("btcusdt", "ethusdt"):
        queue.add(snap(symbol))
    rates = {"btcusdt@depth@100ms": 5.0, "ethusdt@depth@100ms": 1.0}
    first = queue.peek(Lane.DEPTH, 0.0, rates.__getitem__)
    rates["ethusdt@depth@100ms"] = 9.0
    second = queue.peek(Lane.DEPTH, 0.0, rates.__getitem__)
    assert (first and first.name.symbol, second and second.name.symbol) == ("btcusdt", "ethusdt")


def test_by_activity_of_nothing_is_none() -> None:
    """No jobs: nothing to pick."""
    assert by_activity([], lambda _: 1.0) is None


def test_the_queue_counts_waiting_jobs_per_lane_and_those_in_flight() -> None:
    """queued counts ready and backing-off jobs per lane, a snapshot due after a running one in
    the depth lane, and in_flight the running ones."""
    queue = BackfillQueue()
    queue.add(gap(), now=1.0)
    queue.add(gap("btcusdt@kline_1m", 0, 60_000), now=2.0)
    queue.add(snap("btcusdt"), now=3.0)
    queue.refresh("ethusdt@depth@100ms", now=4.0)
    assert (queue.queued(), queue.in_flight) == (
        {Lane.IDS: 1, Lane.KLINES: 1, Lane.DEPTH: 1, Lane.REFRESH: 1}, 0)
    running = queue.peek(Lane.DEPTH, 5.0)
    assert running is not None
    queue.start(running)
    queue.add(gap("btcusdt@depth@100ms", 5, 9), now=6.0)  # due after the running fetch
    assert (queue.queued()[Lane.DEPTH], queue.in_flight) == (1, 1)


def test_gaps_wait_while_an_id_or_kline_job_is_open() -> None:
    """gaps_waiting holds while a trade or kline gap is queued or running, not for snapshots."""
    queue = BackfillQueue()
    queue.add(snap("btcusdt"))
    queue.refresh("ethusdt@depth")
    assert not queue.gaps_waiting
    queue.add(gap("btcusdt@kline_1m", 0, 60_000))
    job = queue.peek(Lane.KLINES, 0.0)
    assert job is not None and queue.gaps_waiting
    queue.start(job)
    assert queue.gaps_waiting
    queue.done(job)
    assert not queue.gaps_waiting


def test_the_oldest_open_job_is_reported_from_when_it_was_queued() -> None:
    """oldest is the queue time of the earliest job still open, running or not, and None once
    every job is done."""
    queue = BackfillQueue()
    assert queue.oldest() is None
    queue.add(snap("btcusdt"), now=10.0)
    queue.add(gap(), now=12.0)
    job = queue.peek(Lane.DEPTH, 20.0)
    assert job is not None and job.since == 10.0
    queue.start(job)
    assert queue.oldest() == 10.0
    queue.done(job)
    assert queue.oldest() == 12.0


def test_the_budget_view_reports_the_queue_the_weight_and_a_pause() -> None:
    """RestBudget.of gives the weight figures passed, the queue's counts, the oldest wait and
    what is left of a Retry-After; its summary is the status line."""
    queue = BackfillQueue()
    for i in range(812):
        queue.add(snap(f"s{i}usdt"), now=100.0)
    queue.add(gap(), now=130.0)
    queue.refresh("ethusdt@depth", now=140.0)
    busy = queue.peek(Lane.IDS, 150.0)
    assert busy is not None
    queue.start(busy)
    budget = RestBudget.of(queue, used_weight=1234, weight_limit=6000, now=160.0,
                           paused_until=172.0, rate_limited=1)
    assert (budget.used_weight, budget.weight_limit, budget.in_flight) == (1234, 6000, 1)
    assert (budget.snapshots_queued, budget.gaps_queued, budget.refreshes_queued) == (812, 0, 1)
    assert (budget.oldest_queued_s, budget.paused_s, budget.rate_limited) == (60.0, 12.0, 1)
    assert budget.summary() == ("REST 1,234/6,000 w/min, queue 812 snapshots, 0 gaps, "
                                "1 refreshes, paused 12s (Retry-After)")
    assert repr(budget) == ("<RestBudget 1234/6000 in_flight=1 ids=0 klines=0 depth=812 "
                            "refresh=1 oldest=60.0s paused=12.0s rate_limited=1>")
    with pytest.raises(AttributeError):
        budget.used_weight = 0  # type: ignore[misc]


def test_an_idle_budget_has_no_oldest_wait_and_no_pause() -> None:
    """With nothing queued and no Retry-After, the oldest wait is None, the pause 0 and the
    summary has the three figures only."""
    budget = RestBudget.of(BackfillQueue(), used_weight=0, weight_limit=6000, now=5.0,
                           paused_until=4.0)
    assert (budget.oldest_queued_s, budget.paused_s, budget.in_flight) == (None, 0.0, 0)
    assert budget.summary() == "REST 0/6,000 w/min, queue 0 snapshots, 0 gaps"
    assert "oldest=-" in repr(budget)
    sparse = RestBudget(1, 10, 0, MappingProxyType({}), None)
    assert (sparse.gaps_queued, sparse.snapshots_queued, sparse.refreshes_queued) == (0, 0, 0)


# -- the activity meter ----------------------------------------------------------------------


def test_a_steady_stream_rates_its_messages_per_round() -> None:
    """A stream sending 10 messages every round rates close to 10 after a few half-lives; one
    never seen rates 0."""
    meter = ActivityMeter(half_life=5.0)
    for _ in range(100):
        meter.observe({"btcusdt@depth@100ms": 10})
    assert meter.rate("btcusdt@depth@100ms") == pytest.approx(10.0, rel=1e-3)
    assert meter.rate("ethusdt@depth@100ms") == 0.0


def test_a_stream_gone_quiet_halves_each_half_life_and_is_forgotten() -> None:
    """A stream that stops sending loses half its rate per half-life and is dropped once below
    the floor, while a busier newcomer overtakes it."""
    meter = ActivityMeter(half_life=2.0, floor=0.1)
    for _ in range(60):
        meter.observe({"old@depth": 8})
    before = meter.rate("old@depth")
    meter.observe({"new@depth": 4})
    meter.observe({"new@depth": 4})
    assert meter.rate("old@depth") == pytest.approx(before / 2)
    assert meter.rate("new@depth") > meter.rate("old@depth") / 2
    for _ in range(30):
        meter.observe({})
    assert len(meter) == 0 and meter.rate("old@depth") == 0.0


def test_the_meter_describes_its_busiest_stream() -> None:
    """repr names the stream count and the busiest stream's rate."""
    meter = ActivityMeter(half_life=1.0)
    assert repr(meter) == "<ActivityMeter streams=0>"
    meter.observe({"a@depth": 2, "b@depth": 6})
    assert repr(meter) == "<ActivityMeter streams=2 busiest=b@depth@3.0/round>"


@pytest.mark.parametrize("half_life", [0.0, -1.0, float("nan")])
def test_a_half_life_that_is_not_positive_is_refused(half_life: float) -> None:
    """ValueError for a half-life of zero, below or not a number."""
    with pytest.raises(ValueError, match="half-life"):
        ActivityMeter(half_life)


def test_budgets_of_several_processes_combine_and_pickle() -> None:
    """Shards on one IP: the weight used is the IP's (the largest), work is summed; a budget
    crosses a process boundary as plain containers."""
    import pickle

    one = RestBudget(1200, 6000, 1, MappingProxyType({Lane.DEPTH: 5}), 3.0, 0.0, 1)
    two = RestBudget(1500, 6000, 2, MappingProxyType({Lane.DEPTH: 2, Lane.IDS: 1}), None, 4.0)
    both = RestBudget.combined([one.portable(), pickle.loads(pickle.dumps(two.portable()))])
    assert both is not None
    assert (both.used_weight, both.weight_limit, both.in_flight) == (1500, 6000, 3)
    assert dict(both.queued) == {Lane.DEPTH: 7, Lane.IDS: 1}
    assert (both.oldest_queued_s, both.paused_s, both.rate_limited) == (3.0, 4.0, 1)
    assert RestBudget.combined([]) is None
    assert RestBudget.combined([two]).oldest_queued_s is None  # type: ignore[union-attr]
