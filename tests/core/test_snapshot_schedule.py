"""The periodic snapshot schedule: one interval after each stream's last stored snapshot,
spread after bursts, each due stream handed out once."""

from __future__ import annotations

import pytest

from binance_streamer.core.snapshot_schedule import SPREAD, SnapshotSchedule


def test_a_periodic_snapshot_is_due_one_interval_after_the_last_stored_one() -> None:
    """After a periodic snapshot stored at t, the stream is due at t + every, not before."""
    schedule = SnapshotSchedule(60.0)
    schedule.stored("btcusdt@depth", 100.0, periodic=True)
    assert schedule.next_due() == 160.0
    assert schedule.due(159.9) == [] and schedule.due(160.0) == ["btcusdt@depth"]


def test_a_due_stream_is_handed_out_once_until_stored_again() -> None:
    """A stream handed out by due is not due again until a snapshot of it is stored."""
    schedule = SnapshotSchedule(10.0)
    schedule.stored("btcusdt@depth", 0.0, periodic=True)
    assert schedule.due(10.0) == ["btcusdt@depth"]
    assert (schedule.due(50.0), schedule.next_due()) == ([], None)
    schedule.stored("btcusdt@depth", 12.0, periodic=True)
    assert schedule.due(22.0) == ["btcusdt@depth"]


def test_snapshots_stored_together_are_refreshed_spread_within_one_interval() -> None:
    """Streams whose first snapshots were stored at the same moment are due at distinct times,
    each within one interval and none before half of it; the longest due comes first."""
    schedule = SnapshotSchedule(3600.0)
    streams = [f"s{i}usdt@depth" for i in range(20)]
    for stream in streams:
        schedule.stored(stream, 0.0, periodic=False)
    order = [schedule.due(t) for t in range(3601)]
    handed = [s for batch in order for s in batch]
    assert sorted(handed) == sorted(streams)
    times = [t for t, batch in enumerate(order) for _ in batch]
    assert len(set(times)) == len(streams)
    assert min(times) >= 3600 * (1 - SPREAD) and max(times) == 3600


def test_a_skipped_stream_is_due_one_interval_later() -> None:
    """A stream whose snapshot request was given up is due again one interval from then."""
    schedule = SnapshotSchedule(30.0)
    schedule.skipped("btcusdt@depth", 5.0)
    assert schedule.next_due() == 35.0


def test_an_interval_of_zero_schedules_nothing() -> None:
    """With every = 0 no stream is ever due."""
    schedule = SnapshotSchedule(0.0)
    schedule.stored("btcusdt@depth", 0.0, periodic=False)
    schedule.skipped("btcusdt@depth", 0.0)
    assert (schedule.due(10**9), schedule.next_due()) == ([], None)
    assert repr(schedule) == "<SnapshotSchedule every=0s streams=0 next=none>"


@pytest.mark.parametrize("every", [-1.0, float("nan"), float("inf")])
def test_an_interval_that_is_not_a_finite_duration_is_refused(every: float) -> None:
    """A negative, NaN or infinite interval raises ValueError."""
    with pytest.raises(ValueError, match="snapshot interval"):
        SnapshotSchedule(every)


def test_the_schedule_describes_itself() -> None:
    """Its repr gives the interval, the streams scheduled and the next due time."""
    schedule = SnapshotSchedule(90.0)
    schedule.stored("btcusdt@depth", 1.0, periodic=True)
    assert repr(schedule) == "<SnapshotSchedule every=90s streams=1 next=91.000>"


def test_a_forgotten_stream_is_never_due_until_stored_again() -> None:
    schedule = SnapshotSchedule(60.0)
    schedule.stored("btcusdt@depth", 0.0, periodic=True)
    schedule.forget("btcusdt@depth")
    schedule.forget("never@depth")
    assert schedule.due(1e9) == [] and schedule.next_due() is None
    schedule.stored("btcusdt@depth", 100.0, periodic=True)
    assert schedule.due(160.0) == ["btcusdt@depth"]
