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


def test_tracker_windows_and_the_run() -> None:
    tracker = LagTracker()
    tracker.observe("trade", 0, 3)
    tracker.observe("depth", 1, 700)
    kinds, conns = tracker.take_window()
    assert kinds["trade"] == LagSummary(1, 3, 3, 3) and conns[0].p99_ms == 3
    assert 700 <= kinds["depth"].p99_ms <= 787 and set(conns) == {0, 1}
    assert tracker.take_window() == ({}, {})  # a new window starts empty
    tracker.observe("trade", 0, 9)
    tracker.observe("trade", 0, 1)
    run_kinds, run_conns = tracker.run_summary()
    assert run_kinds["trade"].count == 3 and run_kinds["trade"].max_ms == 9
    assert run_conns[1].count == 1
    assert "trade" not in repr(tracker)  # the window is empty again, the run keeps it
