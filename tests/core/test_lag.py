"""Lag histograms: every lag in a bucket whose top is at most 12.5% above it; quantiles."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from binance_streamer.core.lag import LagHistogram, LagSummary, LagTracker, bucket_of, bucket_top


@given(st.integers(min_value=0, max_value=10**12))
def test_a_lag_lies_in_its_bucket_and_the_top_is_close(lag: int) -> None:
    index = bucket_of(lag)
    assert bucket_top(index) >= lag
    assert index == 0 or bucket_top(index - 1) < lag  # and not in the bucket below
    assert bucket_top(index) <= lag * 1.125 + 1


def test_small_lags_are_exact_and_negative_lags_count_as_zero() -> None:
    assert [bucket_top(bucket_of(v)) for v in range(16)] == list(range(16))
    assert bucket_of(-250) == 0


def test_quantiles() -> None:
    hist = LagHistogram()
    assert hist.summary() == LagSummary(0, 0, 0, 0)
    for lag in [1] * 98 + [5000, 9000]:
        hist.add(lag)
    summary = hist.summary()
    assert (summary.count, summary.p50_ms) == (100, 1)
    assert 5000 <= summary.p99_ms <= 5000 * 1.125 and 9000 <= summary.max_ms <= 9000 * 1.125
    assert "count=100" in repr(hist)


@given(st.lists(st.integers(min_value=-5, max_value=10**7), min_size=1, max_size=50))
def test_the_tracker_counts_like_the_histogram(lags: list[int]) -> None:
    """observe() inlines LagHistogram.add: both count every lag in the same bucket."""
    tracker, hist = LagTracker(), LagHistogram()
    for lag in lags:
        tracker.observe("s", lag)
        hist.add(lag)
    assert tracker.streams["s"].counts == hist.counts


def test_tracker_windows_and_the_run() -> None:
    kinds_of = {"btcusdt@trade": "trade", "ethusdt@trade": "trade", "btcusdt@depth": "depth"}
    homes = {"btcusdt@trade": 0, "ethusdt@trade": 1, "btcusdt@depth": 1}
    tracker = LagTracker(kind_of=kinds_of.__getitem__, connection_of=homes.__getitem__)
    tracker.observe("btcusdt@trade", 3)
    tracker.observe("ethusdt@trade", 3)
    tracker.observe("btcusdt@depth", 700)
    kinds, conns = tracker.take_window()
    assert kinds["trade"] == LagSummary(2, 3, 3, 3) and conns[0] == LagSummary(1, 3, 3, 3)
    assert 700 <= kinds["depth"].p99_ms <= 787 and conns[1].count == 2
    assert 700 <= conns[1].max_ms <= 787
    assert tracker.take_window() == ({}, {})  # a new window starts empty
    tracker.observe("btcusdt@trade", 9)
    tracker.observe("btcusdt@trade", 1)
    run_kinds, run_conns = tracker.run_summary()
    assert run_kinds["trade"].count == 4 and run_kinds["trade"].max_ms == 9
    assert run_conns[0].count == 3
    assert "streams=0" in repr(tracker)  # the window is empty again, the run keeps it


def test_a_fleet_parent_adds_its_childrens_groups() -> None:
    """A child's take_groups, added to the parent's tracker, shows in the parent's windows
    and run, beside the parent's own streams."""
    child, parent = LagTracker(), LagTracker()
    child.observe("trade", 5)
    child.observe("trade", 7)
    kinds, connections = child.take_groups()
    parent.add_groups(kinds, connections)
    parent.add_groups(kinds, {3: connections[0]})
    parent.observe("depth", 40)
    window_kinds, window_connections = parent.take_window()
    assert window_kinds["trade"].count == 4 and window_kinds["depth"].count == 1
    assert window_connections[0].count == 3 and window_connections[3].count == 2
    assert parent.take_window() == ({}, {})
    assert parent.run_summary()[0]["trade"].count == 4
