"""Sequencing: per-stream gap detection on ids, kline open times, depth U/u and silence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binance_streamer.core.sequencing import (
    CAUSE_DEPTH,
    CAUSE_ID,
    CAUSE_KLINE,
    CAUSE_RESUME,
    CAUSE_SILENT,
    CAUSE_STALE,
    Action,
    DepthChain,
    Duplicate,
    Emit,
    GapDetected,
    IdSequence,
    KlineGrid,
    NeedSnapshot,
    Sequencer,
    Staleness,
    bridge_index,
)
from binance_streamer.core.streams import InvalidStreamName, StreamKind

FIXTURES = Path(__file__).parent.parent / "fixtures"
MINUTE = 60_000


def frames(name: str) -> list[dict[str, Any]]:
    with (FIXTURES / name).open() as f:
        return [json.loads(line) for line in f]


def depth_events() -> dict[str, list[tuple[int, int]]]:
    """(U, u) of every diff depth event in the real capture, per stream, in arrival order."""
    events: dict[str, list[tuple[int, int]]] = {}
    for frame in frames("binance_spot_depthUpdate_100ms.head600.jsonl"):
        events.setdefault(frame["stream"], []).append((frame["data"]["U"], frame["data"]["u"]))
    return events


def gaps(actions: Sequence[Action]) -> list[GapDetected]:
    return [a for a in actions if isinstance(a, GapDetected)]


def feed_ids(seq: IdSequence, ids: Sequence[int]) -> list[Action]:
    return [action for i in ids for action in seq.observe(i)]


def runs(ids: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive integers in sorted ``ids``, as inclusive ranges."""
    out: list[tuple[int, int]] = []
    for i in ids:
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


# Actions


def test_actions_compare_by_value() -> None:
    """Actions are values: equal fields make equal actions."""
    assert Emit() == Emit()
    assert GapDetected("s", 1, 2, "c") == GapDetected("s", 1, 2, "c")
    assert Duplicate(3) != Duplicate(4)


def test_actions_support_match() -> None:
    """Actions can be taken apart with a match statement."""
    match GapDetected("btcusdt@trade", 5, 9, CAUSE_ID):
        case GapDetected(stream, first, last, cause):
            assert (stream, first, last, cause) == ("btcusdt@trade", 5, 9, CAUSE_ID)


# IdSequence


def test_first_id_sets_the_baseline() -> None:
    """The first id of a stream is stored without any gap check."""
    assert IdSequence("btcusdt@aggTrade").observe(665076760) == [Emit()]


def test_next_id_is_emitted() -> None:
    """The id after the newest is stored."""
    seq = IdSequence("s")
    seq.observe(10)
    assert seq.observe(11) == [Emit()]
    assert seq.last == 11


@pytest.mark.parametrize("old", [10, 9, 0, -5])
def test_seen_or_older_id_is_a_duplicate(old: int) -> None:
    """An id at or below the newest is a duplicate carrying the newest id."""
    seq = IdSequence("s")
    feed_ids(seq, [9, 10])
    assert seq.observe(old) == [Duplicate(last_seen=10)]


def test_jump_reports_the_missing_ids_and_stores_the_message() -> None:
    """A jump from 100 to 105 reports 101..104 missing and still stores 105."""
    seq = IdSequence("btcusdt@trade")
    seq.observe(100)
    assert seq.observe(105) == [GapDetected("btcusdt@trade", 101, 104, CAUSE_ID), Emit()]
    assert seq.gaps == 1


def test_late_id_inside_a_reported_gap_is_stored() -> None:
    """An id arriving after the gap that covered it is stored, not dropped as a duplicate."""
    seq = IdSequence("s")
    feed_ids(seq, [100, 105])
    assert seq.observe(102) == [Emit()]
    assert seq.observe(100) == [Duplicate(105)]


def test_resume_reveals_the_hole_since_a_restart() -> None:
    """After resume_from(last stored id), the first live id reports the ids missed meanwhile."""
    seq = IdSequence("s")
    seq.resume_from(500)
    assert seq.observe(520) == [GapDetected("s", 501, 519, CAUSE_RESUME), Emit()]
    assert seq.observe(522) == [GapDetected("s", 521, 521, CAUSE_ID), Emit()]


def test_resume_followed_by_the_next_id_reports_nothing() -> None:
    """A restart that missed nothing reports no gap."""
    seq = IdSequence("s")
    seq.resume_from(500)
    assert seq.observe(501) == [Emit()]
    assert seq.observe(499) == [Duplicate(501)]


def test_resume_from_an_older_id_keeps_the_newer() -> None:
    """resume_from an id older than one already seen changes nothing."""
    seq = IdSequence("s")
    seq.observe(50)
    seq.resume_from(10)
    assert seq.last == 50
    assert seq.observe(51) == [Emit()]


def test_real_aggtrade_capture_has_no_gaps() -> None:
    """The real aggTrade capture, per stream, reports no gap and no duplicate."""
    seqs: dict[str, IdSequence] = {}
    for frame in frames("binance_spot_aggTrade.head400.jsonl"):
        stream = frame["stream"]
        actions = seqs.setdefault(stream, IdSequence(stream)).observe(frame["data"]["a"])
        assert actions == [Emit()]


def test_id_sequence_repr() -> None:
    """An id sequence's repr shows its stream, newest id and gap count."""
    seq = IdSequence("btcusdt@trade")
    seq.observe(7)
    assert repr(seq) == "<IdSequence btcusdt@trade last=7 gaps=0>"


@given(
    st.integers(-(10**12), 10**12),
    st.integers(1, 200),
    st.data(),
)
def test_split_range_with_redeliveries_reports_no_gap(start: int, length: int, data: Any) -> None:
    """A contiguous id range delivered in order, with any earlier ids re-delivered, has no gap."""
    seq = IdSequence("s")
    delivered: list[int] = []
    emitted: list[int] = []
    for i in range(start, start + length):
        again = data.draw(st.lists(st.sampled_from(delivered), max_size=3)) if delivered else []
        for j in [*again, i]:
            actions = seq.observe(j)
            assert not gaps(actions)
            if actions == [Emit()]:
                emitted.append(j)
        delivered.append(i)
    assert emitted == list(range(start, start + length))


@given(st.integers(0, 10**9), st.lists(st.booleans(), min_size=1, max_size=300))
def test_deleted_ids_are_reported_as_exactly_their_ranges(start: int, keep: list[bool]) -> None:
    """Deleting ids from a contiguous run reports exactly the deleted runs before the last kept."""
    ids = [start + n for n in range(len(keep))]
    kept = [i for i, k in zip(ids, keep, strict=True) if k]
    deleted = [i for i, k in zip(ids, keep, strict=True) if not k]
    seq = IdSequence("s")
    seq.resume_from(start - 1)
    reported = [(g.first_missing, g.last_missing) for g in gaps(feed_ids(seq, kept))]
    last_kept = kept[-1] if kept else start - 1
    assert reported == runs([i for i in deleted if i < last_kept])


@given(st.lists(st.integers(-(2**70), 2**70), max_size=50))
def test_any_ids_never_raise(ids: list[int]) -> None:
    """Arbitrary ids in any order give actions, never an exception."""
    seq = IdSequence("s")
    for i in ids:
        assert seq.observe(i)


# KlineGrid


def test_updates_of_the_open_kline_are_stored() -> None:
    """Repeated updates of the same open time are all stored; the latest wins in storage."""
    grid = KlineGrid("s", MINUTE)
    assert grid.observe(0) == [Emit()]
    assert grid.observe(0) == [Emit()]


def test_next_open_time_on_the_grid_is_stored() -> None:
    """The open time one interval later is stored without a gap."""
    grid = KlineGrid("s", MINUTE)
    grid.observe(0)
    assert grid.observe(MINUTE) == [Emit()]


def test_older_open_time_is_a_duplicate() -> None:
    """An open time before the newest is a duplicate."""
    grid = KlineGrid("s", MINUTE)
    grid.observe(5 * MINUTE)
    assert grid.observe(4 * MINUTE) == [Duplicate(5 * MINUTE)]


def test_skipped_open_times_are_reported() -> None:
    """A jump of four intervals reports the three open times in between."""
    grid = KlineGrid("btcusdt@kline_1m", MINUTE)
    grid.observe(0)
    assert grid.observe(4 * MINUTE) == [
        GapDetected("btcusdt@kline_1m", MINUTE, 3 * MINUTE, CAUSE_KLINE),
        Emit(),
    ]
    assert grid.gaps == 1


def test_month_interval_has_no_grid() -> None:
    """With interval 0 (1M) any later open time is stored without a gap check."""
    grid = KlineGrid("s@kline_1M", 0)
    grid.observe(0)
    assert grid.observe(31 * 86_400_000) == [Emit()]
    assert grid.observe(0) == [Duplicate(31 * 86_400_000)]


def test_off_grid_time_within_one_interval_becomes_the_baseline() -> None:
    """An off-grid open time less than one interval ahead is stored with no gap."""
    grid = KlineGrid("s", MINUTE)
    grid.observe(0)
    assert grid.observe(30_000) == [Emit()]
    assert grid.observe(90_000) == [Emit()]


def test_off_grid_jump_reports_the_grid_points_before_it() -> None:
    """An off-grid jump reports the grid points strictly before the new open time."""
    grid = KlineGrid("s", MINUTE)
    grid.observe(0)
    assert gaps(grid.observe(150_000)) == [GapDetected("s", MINUTE, 2 * MINUTE, CAUSE_KLINE)]


def test_kline_resume_reveals_missed_minutes() -> None:
    """After resume_from(last stored open time), missed open times are reported as a restart gap."""
    grid = KlineGrid("s", MINUTE)
    grid.resume_from(10 * MINUTE)
    assert gaps(grid.observe(13 * MINUTE)) == [
        GapDetected("s", 11 * MINUTE, 12 * MINUTE, CAUSE_RESUME)
    ]
    grid.resume_from(0)
    assert grid.last == 13 * MINUTE


def test_real_kline_capture_has_no_gaps() -> None:
    """The real 1m kline capture, per stream, is all stored with no gap."""
    grids: dict[str, KlineGrid] = {}
    for frame in frames("binance_spot_kline_1m.0404.jsonl"):
        stream = frame["stream"]
        grid = grids.setdefault(stream, KlineGrid(stream, MINUTE))
        assert grid.observe(frame["data"]["k"]["t"]) == [Emit()]


@given(st.lists(st.booleans(), min_size=1, max_size=100), st.sampled_from([1_000, MINUTE]))
def test_deleted_open_times_are_reported_exactly(keep: list[bool], step: int) -> None:
    """Deleting open times from a grid reports exactly the deleted runs before the last kept."""
    times = [n * step for n in range(len(keep))]
    kept = [t for t, k in zip(times, keep, strict=True) if k]
    grid = KlineGrid("s", step)
    grid.resume_from(-step)
    reported = [(g.first_missing, g.last_missing) for t in kept for g in gaps(grid.observe(t))]
    last_kept = kept[-1] if kept else -step
    missing = [n for n, k in enumerate(keep) if not k and n * step < last_kept]
    assert reported == [(a * step, b * step) for a, b in runs(missing)]


def test_kline_grid_repr() -> None:
    """A kline grid's repr shows its stream, interval and newest open time."""
    assert repr(KlineGrid("s", MINUTE)) == "<KlineGrid s every=60000ms last=None>"


# DepthChain


def test_first_depth_event_asks_for_a_snapshot() -> None:
    """The first diff depth event is stored and asks for the initial snapshot."""
    chain = DepthChain("btcusdt@depth")
    assert chain.observe(10, 12) == [Emit(), NeedSnapshot("btcusdt@depth", "initial snapshot")]
    assert chain.snapshot_due


def test_initial_snapshot_can_be_turned_off() -> None:
    """With snapshot_on_start=False the first event is simply stored."""
    assert DepthChain("s", snapshot_on_start=False).observe(10, 12) == [Emit()]


def test_chained_event_is_emitted() -> None:
    """An event with U == previous u + 1 continues the chain."""
    chain = DepthChain("s")
    chain.observe(10, 12)
    assert chain.observe(13, 20) == [Emit()]
    assert chain.last == 20


@pytest.mark.parametrize("event", [(10, 12), (5, 11), (13, 12)])
def test_event_ending_at_or_before_the_chain_is_a_duplicate(event: tuple[int, int]) -> None:
    """An event whose u is at or below the newest u is a duplicate."""
    chain = DepthChain("s")
    chain.observe(10, 12)
    assert chain.observe(*event) == [Duplicate(12)]


def test_overlapping_event_continues_the_chain() -> None:
    """An event with U <= previous u < u (a replacement connection's batching) is applied."""
    chain = DepthChain("s")
    chain.observe(10, 12)
    assert chain.observe(11, 15) == [Emit()]


def test_broken_chain_reports_the_gap_and_asks_for_a_snapshot() -> None:
    """U > previous u + 1 reports the missing update ids, asks for a snapshot, stores the event."""
    chain = DepthChain("btcusdt@depth@100ms", snapshot_on_start=False)
    chain.observe(10, 12)
    actions = chain.observe(20, 25)
    assert actions[0] == GapDetected("btcusdt@depth@100ms", 13, 19, CAUSE_DEPTH)
    assert isinstance(actions[1], NeedSnapshot)
    assert actions[1].stream == "btcusdt@depth@100ms"
    assert actions[2] == Emit()
    assert chain.snapshot_due and chain.gaps == 1
    assert chain.observe(26, 30) == [Emit()]


def test_real_depth_capture_has_no_gaps() -> None:
    """The real diff depth capture chains without a gap or duplicate on every stream."""
    for stream, events in depth_events().items():
        chain = DepthChain(stream, snapshot_on_start=False)
        for first, final in events:
            assert chain.observe(first, final) == [Emit()]


@given(st.data())
def test_deleting_one_real_depth_event_makes_exactly_one_gap(data: Any) -> None:
    """Deleting any event but a stream's first or last makes exactly that event's ids missing."""
    events = depth_events()
    stream = data.draw(st.sampled_from(sorted(events)))
    stream_events = events[stream]
    index = data.draw(st.integers(1, len(stream_events) - 2))
    chain = DepthChain(stream, snapshot_on_start=False)
    found: list[Action] = []
    for n, (first, final) in enumerate(stream_events):
        if n != index:
            found.extend(chain.observe(first, final))
    deleted = stream_events[index]
    assert gaps(found) == [GapDetected(stream, deleted[0], deleted[1], CAUSE_DEPTH)]
    assert sum(isinstance(a, NeedSnapshot) for a in found) == 1


def test_real_snapshots_bridge_at_the_documented_index() -> None:
    """Each real REST snapshot bridges its stream's events where U <= lastUpdateId+1 <= u."""
    events = depth_events()
    found = {}
    for snap in frames("binance_spot_rest_depth_snapshots.0404.jsonl"):
        symbol = snap["url"].split("symbol=")[1].split("&")[0].lower()
        stream = f"{symbol}@depth@100ms"
        last_update_id = snap["body"]["lastUpdateId"]
        index = DepthChain(stream).bridge_snapshot(last_update_id, events[stream])
        assert index is not None
        first, final = events[stream][index]
        assert first <= last_update_id + 1 <= final
        found[symbol] = index
    # BTCUSDT lastUpdateId 9893033066 bridges at index 10 of the BTCUSDT events.
    assert found == {"btcusdt": 10, "dotusdt": 9, "ethusdt": 13}


def test_bridge_drops_events_at_or_before_the_snapshot() -> None:
    """Events with u <= lastUpdateId are skipped; the bridging event holds lastUpdateId + 1."""
    assert bridge_index(100, [(90, 95), (96, 100), (101, 105), (106, 110)]) == 2
    assert bridge_index(103, [(90, 95), (96, 100), (101, 105), (106, 110)]) == 2


def test_bridge_refuses_a_snapshot_older_than_the_first_event() -> None:
    """A snapshot with lastUpdateId + 1 < the first U gives None: fetch it again."""
    assert bridge_index(80, [(90, 95), (96, 100)]) is None


def test_bridge_waits_when_no_event_is_newer_than_the_snapshot() -> None:
    """A snapshot newer than every buffered event gives None: buffer more and try again."""
    assert bridge_index(200, [(90, 95), (96, 100)]) is None
    assert bridge_index(200, []) is None


def test_bridge_refuses_a_snapshot_before_a_later_break() -> None:
    """A chain break after the bridging event makes the snapshot unusable."""
    assert bridge_index(100, [(96, 100), (101, 105), (110, 115)]) is None


def test_bridge_tolerates_duplicates_after_the_bridging_event() -> None:
    """Re-delivered events after the bridging event do not break it."""
    assert bridge_index(100, [(101, 105), (101, 105), (106, 110)]) == 0


def test_successful_bridge_clears_the_snapshot_due_flag() -> None:
    """A bridged snapshot clears snapshot_due; a failed one leaves it."""
    chain = DepthChain("s")
    chain.observe(101, 105)
    assert chain.bridge_snapshot(50, [(101, 105)]) is None
    assert chain.snapshot_due
    assert chain.bridge_snapshot(102, [(101, 105)]) == 0
    assert not chain.snapshot_due


@given(st.lists(st.tuples(st.integers(-100, 100), st.integers(-100, 100)), max_size=40))
def test_any_depth_ids_never_raise(events: list[tuple[int, int]]) -> None:
    """Arbitrary U/u pairs, even with u < U, give actions and bridge results, never exceptions."""
    chain = DepthChain("s")
    for first, final in events:
        assert chain.observe(first, final)
    index = chain.bridge_snapshot(0, events)
    assert index is None or 0 <= index < len(events)


def test_depth_chain_repr() -> None:
    """A depth chain's repr shows its stream, newest u, gaps and a pending snapshot."""
    chain = DepthChain("s")
    chain.observe(1, 2)
    assert repr(chain) == "<DepthChain s last_u=2 gaps=0 snapshot-due>"


# Staleness


def test_unwatched_stream_is_never_stale() -> None:
    """A stream neither watched nor seen is not reported."""
    assert Staleness("s", 1_000).check(10**9) is None


def test_silence_within_the_bound_is_fine() -> None:
    """A silence of exactly max_silence_ms is not reported."""
    dog = Staleness("s", 1_000)
    dog.seen(5_000)
    assert dog.check(6_000) is None


def test_silence_past_the_bound_is_reported_once() -> None:
    """A silence past the bound is reported once, spanning from after the last message to now."""
    dog = Staleness("btcusdt@ticker", 1_000)
    dog.seen(5_000)
    assert dog.check(6_001) == GapDetected("btcusdt@ticker", 5_001, 6_001, CAUSE_STALE)
    assert dog.check(9_000) is None


def test_new_message_rearms_the_watchdog() -> None:
    """After a message arrives, the next silence is reported again."""
    dog = Staleness("s", 1_000)
    dog.seen(0)
    dog.check(2_000)
    dog.seen(3_000)
    assert dog.check(5_000) == GapDetected("s", 3_001, 5_000, CAUSE_STALE)


def test_stream_silent_since_subscribe_is_reported_as_such() -> None:
    """A stream watched but never seen is reported as silent since subscribe."""
    dog = Staleness("xrpxrp@miniTicker", 1_000)
    dog.watch(0)
    assert dog.check(1_500) == GapDetected("xrpxrp@miniTicker", 1, 1_500, CAUSE_SILENT)


def test_rewatch_after_resubscribe_restarts_the_clock() -> None:
    """watch() after a resubscribe restarts the silence clock and re-arms the report."""
    dog = Staleness("s", 1_000)
    dog.seen(0)
    assert dog.check(2_000) is not None
    dog.watch(2_000)
    assert dog.check(2_500) is None
    assert dog.check(3_001) == GapDetected("s", 2_001, 3_001, CAUSE_STALE)


def test_out_of_order_seen_keeps_the_latest() -> None:
    """An earlier receive time does not move the silence clock back."""
    dog = Staleness("s", 1_000)
    dog.seen(5_000)
    dog.seen(1_000)
    assert dog.check(5_500) is None


def test_staleness_repr() -> None:
    """A watchdog's repr shows its stream, bound and last message time."""
    assert repr(Staleness("s", 5_000)) == "<Staleness s max=5000ms last=None>"


# Sequencer


@pytest.mark.parametrize(
    ("stream", "tracker"),
    [
        ("btcusdt@aggTrade", IdSequence),
        ("btcusdt@trade", IdSequence),
        ("btcusdt@kline_1m", KlineGrid),
        ("btcusdt@depth", DepthChain),
        ("btcusdt@depth@100ms", DepthChain),
        ("btcusdt@ticker", Staleness),
        ("btcusdt@miniTicker", Staleness),
        ("btcusdt@ticker_1h", Staleness),
        ("btcusdt@avgPrice", Staleness),
        ("btcusdt@bookTicker", Staleness),
        ("btcusdt@depth20@100ms", Staleness),
        ("!miniTicker@arr", Staleness),
    ],
)
def test_each_kind_gets_its_tracker(stream: str, tracker: type) -> None:
    """Each stream kind is tracked by the tracker its data calls for."""
    assert isinstance(Sequencer([stream]).tracker(stream), tracker)


@pytest.mark.parametrize(
    ("stream", "bound_ms"),
    [
        ("btcusdt@ticker", 5_000),
        ("btcusdt@miniTicker", 5_000),
        ("btcusdt@ticker_4h", 5_000),
        ("btcusdt@avgPrice", 5_000),
        ("!miniTicker@arr", 5_000),
        ("btcusdt@bookTicker", 50_000),
        ("btcusdt@depth5", 5_000),
        ("btcusdt@depth10@100ms", 500),
    ],
)
def test_silence_bounds_follow_cadence_times_tolerance(stream: str, bound_ms: int) -> None:
    """A stream's silence bound is its kind's push cadence times the tolerance (5 by default)."""
    dog = Sequencer([stream]).tracker(stream)
    assert isinstance(dog, Staleness)
    assert dog.max_silence_ms == bound_ms


def test_klines_are_also_watched_for_silence() -> None:
    """Kline streams, pushed every 2 s (1 s for 1s klines), are watched for silence too."""
    seq = Sequencer(["btcusdt@kline_1m", "btcusdt@kline_1s"], tolerance=2.0)
    seq.seen("btcusdt@kline_1m", 0)
    seq.seen("btcusdt@kline_1s", 0)
    assert [g.stream for g in seq.stale(3_000)] == ["btcusdt@kline_1s"]
    assert [g.stream for g in seq.stale(5_000)] == ["btcusdt@kline_1m"]


def test_silence_bound_can_be_overridden_per_kind() -> None:
    """max_silence_ms overrides the bound for a kind."""
    seq = Sequencer(["btcusdt@ticker"], max_silence_ms={StreamKind.TICKER: 60_000})
    dog = seq.tracker("btcusdt@ticker")
    assert isinstance(dog, Staleness) and dog.max_silence_ms == 60_000


def test_month_klines_have_no_grid() -> None:
    """A 1M kline stream gets a grid of 0, so no grid check."""
    grid = Sequencer(["btcusdt@kline_1M"]).tracker("btcusdt@kline_1M")
    assert isinstance(grid, KlineGrid) and grid.interval_ms == 0


def test_observations_are_routed_per_stream() -> None:
    """Each stream keeps its own sequence: a gap on one does not touch another."""
    seq = Sequencer(["btcusdt@trade", "ethusdt@trade"])
    seq.observe_id("btcusdt@trade", 1)
    seq.observe_id("ethusdt@trade", 100)
    assert seq.observe_id("btcusdt@trade", 2) == [Emit()]
    assert gaps(seq.observe_id("ethusdt@trade", 103)) == [
        GapDetected("ethusdt@trade", 101, 102, CAUSE_ID)
    ]


def test_kline_and_depth_observations_are_routed() -> None:
    """observe_kline and observe_depth reach the stream's grid and chain."""
    seq = Sequencer(["btcusdt@kline_1m", "btcusdt@depth@100ms"], snapshot_on_start=False)
    seq.observe_kline("btcusdt@kline_1m", 0)
    assert gaps(seq.observe_kline("btcusdt@kline_1m", 3 * MINUTE)) == [
        GapDetected("btcusdt@kline_1m", MINUTE, 2 * MINUTE, CAUSE_KLINE)
    ]
    seq.observe_depth("btcusdt@depth@100ms", 1, 5)
    assert seq.observe_depth("btcusdt@depth@100ms", 6, 9) == [Emit()]
    assert seq.bridge_snapshot("btcusdt@depth@100ms", 7, [(6, 9)]) == 0


def test_unregistered_stream_is_registered_on_first_use() -> None:
    """A stream first met in an observation is registered from its name."""
    seq = Sequencer()
    assert seq.observe_id("btcusdt@aggTrade", 5) == [Emit()]
    assert isinstance(seq.tracker("btcusdt@aggTrade"), IdSequence)


def test_unparsable_stream_gets_the_tracker_its_data_asks_for() -> None:
    """A stream name that cannot be parsed still gets tracked, by the method used."""
    seq = Sequencer()
    seq.observe_id("BTCUSDT@weird", 1)
    assert gaps(seq.observe_id("BTCUSDT@weird", 3)) == [
        GapDetected("BTCUSDT@weird", 2, 2, CAUSE_ID)
    ]
    assert seq.observe_kline("??kline", 0) == [Emit()]
    assert seq.observe_depth("??depth", 1, 2) == [
        Emit(),
        NeedSnapshot("??depth", "initial snapshot"),
    ]


def test_wrong_method_for_a_stream_is_a_type_error() -> None:
    """Calling observe_id on a kline stream is a programming error: TypeError."""
    seq = Sequencer(["btcusdt@kline_1m", "btcusdt@ticker"])
    with pytest.raises(TypeError, match="IdSequence"):
        seq.observe_id("btcusdt@kline_1m", 1)
    with pytest.raises(TypeError, match="DepthChain"):
        seq.observe_depth("btcusdt@ticker", 1, 2)


def test_invalid_stream_name_is_rejected_on_add() -> None:
    """add() of a malformed stream name raises InvalidStreamName."""
    with pytest.raises(InvalidStreamName):
        Sequencer(["BTCUSDT@ticker"])


def test_stale_lists_only_silent_streams_once() -> None:
    """stale() reports each silent stream once per silence and skips ones that spoke."""
    seq = Sequencer(["btcusdt@ticker", "ethusdt@ticker", "btcusdt@aggTrade"])
    seq.seen("btcusdt@ticker", 0)
    seq.seen("ethusdt@ticker", 4_000)
    seq.seen("btcusdt@aggTrade", 0)
    assert seq.stale(6_000) == [GapDetected("btcusdt@ticker", 1, 6_000, CAUSE_STALE)]
    assert seq.stale(7_000) == []


def test_add_with_time_starts_the_silence_clock() -> None:
    """A stream added at a time and never heard from is reported as silent since subscribe."""
    seq = Sequencer()
    seq.add("xrpxrp@miniTicker", now_ms=1_000)
    assert seq.stale(7_000) == [GapDetected("xrpxrp@miniTicker", 1_001, 7_000, CAUSE_SILENT)]


def test_trade_streams_are_watched_at_their_own_rate() -> None:
    """A busy trade stream is stale after the 10 s floor; a slow one only after 20 of its gaps."""
    seq = Sequencer()
    seq.add("btcusdt@trade", now_ms=0)
    seq.add("btcusdt@trade", now_ms=0)
    assert len(seq) == 1
    seq.seen("btcusdt@trade", 500, count=25)
    seq.seen("btcusdt@trade", 1_000, count=25)  # 50 trades/s
    assert seq.stale(11_000) == []
    assert seq.stale(11_001) == [GapDetected("btcusdt@trade", 1_001, 11_001, CAUSE_STALE)]
    seq.add("dentusdt@aggTrade", now_ms=0)
    seq.seen("dentusdt@aggTrade", 60_000)
    seq.seen("dentusdt@aggTrade", 120_000)  # one trade a minute: 20 minutes of silence allowed
    assert [g.stream for g in seq.stale(120_000 + 1_200_000)] == []
    assert [g.stream for g in seq.stale(120_000 + 1_200_001)] == ["dentusdt@aggTrade"]


def test_a_trade_stream_silent_since_subscribe_is_reported_after_a_minute() -> None:
    """With no rate known yet, a trade stream may stay silent for one minute, not longer."""
    seq = Sequencer()
    seq.add("xrpxrp@trade", now_ms=0)
    assert seq.stale(60_000) == []
    assert seq.stale(60_001) == [GapDetected("xrpxrp@trade", 1, 60_001, CAUSE_SILENT)]


def test_the_message_count_sets_the_trade_silence_bound() -> None:
    """Two trades a second allow 10 s of silence; one trade in ten seconds allows 200 s."""
    busy, quiet = Sequencer(), Sequencer()
    busy.add("s@aggTrade", now_ms=0)
    for t in range(1_000, 12_000, 1_000):  # one report a second, as the recorder does
        busy.seen("s@aggTrade", t, count=2)
    assert busy.stale(21_000) == [] and busy.stale(21_001) != []
    quiet.add("s@aggTrade", now_ms=0)
    quiet.seen("s@aggTrade", 1_000, count=1)
    quiet.seen("s@aggTrade", 11_000, count=1)
    # quiet: 1 message over 10 s -> rate 0.1/s -> 20 gaps of 10 s = 200 s
    assert quiet.stale(11_000 + 200_000) == []
    assert quiet.stale(11_000 + 200_001) != []


def test_seen_registers_an_unknown_stream() -> None:
    """seen() on a stream not yet registered registers and watches it."""
    seq = Sequencer()
    seq.seen("btcusdt@ticker", 0)
    assert len(seq) == 1
    assert seq.stale(5_001) == [GapDetected("btcusdt@ticker", 1, 5_001, CAUSE_STALE)]


def test_resume_applies_to_id_and_kline_streams_only() -> None:
    """resume() sets the baseline of id and kline streams and declines depth and tickers."""
    seq = Sequencer()
    assert seq.resume("btcusdt@aggTrade", 99)
    assert seq.resume("btcusdt@kline_1m", 0)
    assert not seq.resume("btcusdt@depth", 99)
    assert not seq.resume("btcusdt@ticker", 99)
    assert gaps(seq.observe_id("btcusdt@aggTrade", 102)) == [
        GapDetected("btcusdt@aggTrade", 100, 101, CAUSE_RESUME)
    ]


def test_unknown_stream_has_no_tracker() -> None:
    """tracker() of a stream never registered is None."""
    assert Sequencer().tracker("btcusdt@trade") is None


def test_sequencer_repr_counts_streams_gaps_and_snapshots() -> None:
    """The sequencer's repr shows streams, gaps so far and snapshots due."""
    seq = Sequencer(["btcusdt@trade", "btcusdt@depth", "btcusdt@ticker"])
    seq.observe_id("btcusdt@trade", 1)
    seq.observe_id("btcusdt@trade", 5)
    seq.observe_depth("btcusdt@depth", 1, 2)
    assert repr(seq) == "<Sequencer streams=3 gaps=1 snapshots_due=1>"


def test_a_kline_left_unclosed_is_reported_missing() -> None:
    """When the next candle starts but the previous one was never seen closed, the previous
    one's open time is missing too (its final values must be fetched)."""
    grid = KlineGrid("s@kline_1s", 1_000)
    assert grid.observe(0, closed=False) == [Emit()]
    assert grid.observe(0, closed=True) == [Emit()]
    assert grid.observe(1_000, closed=False) == [Emit()]
    assert grid.observe(2_000, closed=False) == [
        GapDetected("s@kline_1s", 1_000, 1_000, CAUSE_KLINE), Emit()]
    assert grid.observe(5_000, closed=True) == [
        GapDetected("s@kline_1s", 2_000, 4_000, CAUSE_KLINE), Emit()]
    assert grid.observe(6_000, closed=True) == [Emit()]
