"""A depth snapshot counts only once a diff bridges it (U <= lastUpdateId + 1 <= u)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binance_streamer.core.bridging import Bridged, DepthBridge, SnapshotTooOld
from binance_streamer.core.sequencing import CAUSE_DEPTH, GapDetected

GAP = GapDetected("btcusdt@depth", 101, 150, CAUSE_DEPTH)


def test_a_snapshot_inside_a_remembered_diff_is_bridged_at_once() -> None:
    """A snapshot whose lastUpdateId + 1 falls in a diff already received is bridged by it."""
    bridge = DepthBridge("btcusdt@depth")
    assert bridge.diff(151, 160) == ()
    assert bridge.diff(161, 170) == ()
    assert bridge.snapshot(165, GAP) == Bridged("btcusdt@depth", 165, GAP, 161, 170)
    assert bridge.waiting == 0


@pytest.mark.parametrize(("last_update_id", "first", "final"),
                         [(160, 161, 170), (150, 151, 160), (169, 161, 170)])
def test_the_bounds_of_the_bridge_are_inclusive(last_update_id: int, first: int, final: int
                                               ) -> None:
    """U == lastUpdateId + 1 and u == lastUpdateId + 1 both bridge."""
    bridge = DepthBridge("s")
    bridge.diff(151, 160)
    bridge.diff(161, 170)
    assert bridge.snapshot(last_update_id, None) == Bridged("s", last_update_id, None, first,
                                                           final)


def test_a_snapshot_newer_than_every_diff_waits_for_the_next() -> None:
    """A snapshot ahead of the diffs received waits; the diff that reaches it bridges it, and
    diffs that end before it leave it waiting."""
    bridge = DepthBridge("s")
    bridge.diff(151, 160)
    assert bridge.snapshot(175, GAP) is None and bridge.waiting == 1
    assert bridge.diff(161, 170) == ()
    assert bridge.diff(171, 180) == (Bridged("s", 175, GAP, 171, 180),)
    assert bridge.waiting == 0
    assert bridge.diff(181, 190) == ()


def test_a_snapshot_older_than_the_diffs_is_too_old() -> None:
    """A snapshot whose lastUpdateId + 1 precedes the first diff newer than it is too old
    (fetch another), whether the deciding diff was remembered or arrives later."""
    bridge = DepthBridge("s")
    bridge.diff(151, 160)
    assert bridge.snapshot(140, GAP) == SnapshotTooOld("s", 140, GAP)
    late = DepthBridge("s")
    assert late.snapshot(140, None) is None
    assert late.diff(151, 160) == (SnapshotTooOld("s", 140, None),)


def test_a_diff_after_a_break_settles_a_waiting_snapshot_as_too_old() -> None:
    """Updates missed between a waiting snapshot and the next diff make the snapshot too old."""
    bridge = DepthBridge("s")
    assert bridge.snapshot(175, GAP) is None
    assert bridge.diff(190, 200) == (SnapshotTooOld("s", 175, GAP),)


def test_only_the_newest_diffs_are_remembered() -> None:
    """With keep=2, a snapshot bridged only by a forgotten diff is too old, never wrong."""
    bridge = DepthBridge("s", keep=2)
    for first in (1, 11, 21):
        bridge.diff(first, first + 9)
    assert bridge.snapshot(5, None) == SnapshotTooOld("s", 5, None)
    assert "recent=2" in repr(bridge) and "waiting=0" in repr(bridge)


@given(st.lists(st.integers(1, 5), min_size=1, max_size=40), st.integers(0, 250))
def test_bridged_means_the_binance_rule_holds(sizes: list[int], last_update_id: int) -> None:
    """On a continuous chain, a snapshot is bridged by exactly the diff holding
    lastUpdateId + 1, and is too old only when it precedes the chain."""
    bridge = DepthBridge("s")
    first, chain = 100, []
    for size in sizes:
        chain.append((first, first + size - 1))
        first += size
    for u_first, u_final in chain:
        bridge.diff(u_first, u_final)
    outcome = bridge.snapshot(last_update_id, None)
    if last_update_id + 1 < chain[0][0]:
        assert outcome == SnapshotTooOld("s", last_update_id, None)
    elif last_update_id >= chain[-1][1]:
        assert outcome is None
    else:
        assert isinstance(outcome, Bridged)
        assert outcome.first <= last_update_id + 1 <= outcome.final
