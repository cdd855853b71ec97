"""Sequencing: per-stream gap detection on ids, kline open times, depth U/u and silence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binance_streamer.core.decoding import Decoded, FrameDecoder
from binance_streamer.core.events import (
    AggTrade,
    BookTicker,
    DiffDepth,
    Kline,
    KlineEvent,
    MiniTicker,
    Ticker,
    Trade,
)
from binance_streamer.core.sequencing import (
    CAUSE_DEPTH,
    CAUSE_ID,
    CAUSE_KLINE,
    CAUSE_RESUME,
    CAUSE_SILENT,
    CAUSE_STALE,
    SEQUENCED_KINDS,
    Action,
    DepthChain,
    GapDetected,
    IdSequence,
    KlineGrid,
    NeedSnapshot,
    RateWatch,
    Sequencer,
    SilenceEnded,
    Staleness,
    bridge_index,
)
from binance_streamer.core.streams import InvalidStreamName, StreamKind

FIXTURES = Path(__file__).parent.parent / "fixtures"
MINUTE = 60_000


def frames(name: str) -> list[dict[str, Any]]:
    with (FIXTURES / name).open() as f:
        return [json.loads(line) for line in f]


@cache
def depth_events() -> dict[str, list[tuple[int, int]]]:
    """(U, u) of every diff depth event in the real capture, per stream, in arrival order."""
    events: dict[str, list[tuple[int, int]]] = {}
    for frame in frames("binance_spot_depthUpdate_100ms.head600.jsonl"):
        events.setdefault(frame["stream"], []).append((frame["data"]["U"], frame["data"]["u"]))
    return events


def decoded(name: str) -> list[Decoded]:
    """The decoded events of fixture ``name``, as the recorder gets them."""
    decoder = FrameDecoder()
    out = [decoder.decode(line) for line in (FIXTURES / name).read_bytes().splitlines()]
    assert all(isinstance(o, Decoded) for o in out)
    return [o for o in out if isinstance(o, Decoded)]


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


def agg_trade(agg_id: int) -> AggTrade:
    return AggTrade(1, "BTCUSDT", agg_id, "1.0", "2.0", 1, 1, 1, True)


def trade(trade_id: int) -> Trade:
    return Trade(1, "BTCUSDT", trade_id, "1.0", "2.0", 1, True)


def kline(open_time: int, closed: bool) -> KlineEvent:
    k = Kline(open_time, open_time + MINUTE - 1, "BTCUSDT", "1m", 1, 2, "1", "1", "1", "1", "0",
              0, closed, "0", "0", "0")
    return KlineEvent(1, "BTCUSDT", k)


def diff_depth(first: int, final: int) -> DiffDepth:
    return DiffDepth(1, "BTCUSDT", first, final, msgspec.Raw(b"[]"), msgspec.Raw(b"[]"))


# Actions


def test_actions_compare_by_value() -> None:
    """Actions are values: equal fields make equal actions."""
    assert GapDetected("s", 1, 2, "c") == GapDetected("s", 1, 2, "c")
    assert NeedSnapshot("s", "r") != NeedSnapshot("s", "other")
    assert SilenceEnded("s", 1, 9) == SilenceEnded("s", 1, 9)


def test_actions_support_match() -> None:
    """Actions can be taken apart with a match statement."""
    match GapDetected("btcusdt@trade", 5, 9, CAUSE_ID):
        case GapDetected(stream, first, last, cause):
            assert (stream, first, last, cause) == ("btcusdt@trade", 5, 9, CAUSE_ID)


# IdSequence


def test_first_id_sets_the_baseline() -> None:
    """The first id of a stream needs nothing and becomes the newest id."""
    seq = IdSequence("btcusdt@aggTrade")
    assert seq.observe(665076760) == ()
    assert seq.last == 665076760


def test_next_id_needs_nothing() -> None:
    """The id after the newest needs nothing and becomes the newest."""
    seq = IdSequence("s")
    seq.observe(10)
    assert seq.observe(11) == ()
    assert seq.last == 11


@pytest.mark.parametrize("old", [10, 9, 0, -5])
def test_seen_or_older_id_needs_nothing_and_keeps_the_newest(old: int) -> None:
    """An id at or below the newest (an overlap) needs nothing and leaves the newest id as is."""
    seq = IdSequence("s")
    feed_ids(seq, [9, 10])
    assert seq.observe(old) == ()
    assert seq.last == 10
    assert seq.observe(11) == ()


def test_jump_reports_the_missing_ids() -> None:
    """A jump from 100 to 105 reports 101..104 missing."""
    seq = IdSequence("btcusdt@trade")
    seq.observe(100)
    assert seq.observe(105) == (GapDetected("btcusdt@trade", 101, 104, CAUSE_ID),)
    assert seq.gaps == 1


def test_late_id_inside_a_reported_gap_needs_nothing() -> None:
    """An id arriving after the gap that covered it needs nothing (the gap stays reported)."""
    seq = IdSequence("s")
    feed_ids(seq, [100, 105])
    assert seq.observe(102) == ()
    assert seq.observe(106) == ()
    assert seq.gaps == 1


def test_resume_reveals_the_hole_since_a_restart() -> None:
    """After resume_from(last stored id), the first live id reports the ids missed meanwhile."""
    seq = IdSequence("s")
    seq.resume_from(500)
    assert seq.observe(520) == (GapDetected("s", 501, 519, CAUSE_RESUME),)
    assert seq.observe(522) == (GapDetected("s", 521, 521, CAUSE_ID),)


def test_resume_followed_by_the_next_id_reports_nothing() -> None:
    """A restart that missed nothing reports no gap, and a later jump is an ordinary id gap."""
    seq = IdSequence("s")
    seq.resume_from(500)
    assert seq.observe(501) == ()
    assert seq.observe(499) == ()
    assert seq.observe(503) == (GapDetected("s", 502, 502, CAUSE_ID),)


def test_resume_from_an_older_id_keeps_the_newer() -> None:
    """resume_from an id older than one already seen changes nothing."""
    seq = IdSequence("s")
    seq.observe(50)
    seq.resume_from(10)
    assert seq.last == 50
    assert seq.observe(51) == ()


def test_real_aggtrade_capture_has_no_gaps() -> None:
    """The real aggTrade capture, per stream, reports no gap."""
    seqs: dict[str, IdSequence] = {}
    for frame in frames("binance_spot_aggTrade.head400.jsonl"):
        stream = frame["stream"]
        assert seqs.setdefault(stream, IdSequence(stream)).observe(frame["data"]["a"]) == ()
    assert sum(s.gaps for s in seqs.values()) == 0 and len(seqs) > 1


def test_id_sequence_repr() -> None:
    """An id sequence's repr shows its stream, newest id and gap count."""
    seq = IdSequence("btcusdt@trade")
    seq.observe(7)
    assert repr(seq) == "<IdSequence btcusdt@trade last=7 gaps=0>"


@settings(deadline=None, max_examples=100)
@given(st.integers(-(10**12), 10**12), st.integers(1, 200),
       st.lists(st.tuples(st.integers(0, 199), st.integers(0, 199)), max_size=100))
def test_split_range_with_redeliveries_reports_no_gap(
        start: int, length: int, redeliveries: list[tuple[int, int]]) -> None:
    """A contiguous id range delivered in order, with earlier ids re-delivered anywhere, has no
    gap (each ``(at, back)`` re-delivers, after the id at ``at``, the id ``back`` before it)."""
    again: dict[int, list[int]] = {}
    for at, back in redeliveries:
        again.setdefault(at, []).append(max(0, at - back))
    seq = IdSequence("s")
    for n in range(length):
        for i in [start + n] + [start + m for m in again.get(n, [])]:
            assert seq.observe(i) == ()
    assert seq.last == start + length - 1


@settings(deadline=None, max_examples=100)
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


@settings(deadline=None, max_examples=100)
@given(st.lists(st.integers(-(2**70), 2**70), max_size=50))
def test_any_ids_give_well_formed_gaps(ids: list[int]) -> None:
    """Arbitrary ids in any order never raise, and every gap reported is a non-empty range."""
    seq = IdSequence("s")
    for i in ids:
        for gap in gaps(seq.observe(i)):
            assert gap.first_missing <= gap.last_missing


# KlineGrid


def test_updates_of_the_open_kline_need_nothing() -> None:
    """Repeated updates of the same open time need nothing; the latest wins in storage."""
    grid = KlineGrid("s", MINUTE)
    assert grid.observe(0) == ()
    assert grid.observe(0) == ()
    assert grid.last == 0


def test_next_open_time_on_the_grid_needs_nothing() -> None:
    """The open time one interval later reports no gap."""
    grid = KlineGrid("s", MINUTE)
    grid.observe(0)
    assert grid.observe(MINUTE) == ()


def test_older_open_time_needs_nothing_and_keeps_the_newest() -> None:
    """An open time before the newest needs nothing and does not move the grid back."""
    grid = KlineGrid("s", MINUTE)
    grid.observe(5 * MINUTE)
    assert grid.observe(4 * MINUTE) == ()
    assert grid.last == 5 * MINUTE


def test_skipped_open_times_are_reported() -> None:
    """A jump of four intervals reports the three open times in between."""
    grid = KlineGrid("btcusdt@kline_1m", MINUTE)
    grid.observe(0)
    assert grid.observe(4 * MINUTE) == (
        GapDetected("btcusdt@kline_1m", MINUTE, 3 * MINUTE, CAUSE_KLINE),)
    assert grid.gaps == 1


def test_month_interval_has_no_grid() -> None:
    """With interval 0 (1M) any later open time reports no gap."""
    grid = KlineGrid("s@kline_1M", 0)
    grid.observe(0)
    assert grid.observe(31 * 86_400_000) == ()
    assert grid.observe(0) == ()
    assert grid.last == 31 * 86_400_000


def test_off_grid_time_within_one_interval_becomes_the_baseline() -> None:
    """An off-grid open time less than one interval ahead reports no gap and is the new base."""
    grid = KlineGrid("s", MINUTE)
    grid.observe(0)
    assert grid.observe(30_000) == ()
    assert grid.observe(90_000) == ()
    assert grid.last == 90_000


def test_off_grid_jump_reports_the_grid_points_before_it() -> None:
    """An off-grid jump reports the grid points strictly before the new open time."""
    grid = KlineGrid("s", MINUTE)
    grid.observe(0)
    assert grid.observe(150_000) == (GapDetected("s", MINUTE, 2 * MINUTE, CAUSE_KLINE),)


def test_kline_resume_reveals_missed_minutes() -> None:
    """After resume_from(last stored open time), missed open times are reported as a restart gap."""
    grid = KlineGrid("s", MINUTE)
    grid.resume_from(10 * MINUTE)
    assert grid.observe(13 * MINUTE) == (
        GapDetected("s", 11 * MINUTE, 12 * MINUTE, CAUSE_RESUME),)
    grid.resume_from(0)
    assert grid.last == 13 * MINUTE


def test_real_kline_capture_has_no_gaps() -> None:
    """The real 1m kline capture, per stream, reports no gap."""
    grids: dict[str, KlineGrid] = {}
    for frame in frames("binance_spot_kline_1m.0404.jsonl"):
        stream = frame["stream"]
        grid = grids.setdefault(stream, KlineGrid(stream, MINUTE))
        assert grid.observe(frame["data"]["k"]["t"], frame["data"]["k"]["x"]) == ()
    assert grids


@settings(deadline=None, max_examples=100)
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


def test_a_kline_left_unclosed_is_reported_missing() -> None:
    """When the next candle starts but the previous one was never seen closed, the previous
    one's open time is missing too (its final values must be fetched)."""
    grid = KlineGrid("s@kline_1s", 1_000)
    assert grid.observe(0, closed=False) == ()
    assert grid.observe(0, closed=True) == ()
    assert grid.observe(0, closed=False) == ()  # a late update does not reopen a closed kline
    assert grid.observe(1_000, closed=False) == ()
    assert grid.observe(2_000, closed=False) == (
        GapDetected("s@kline_1s", 1_000, 1_000, CAUSE_KLINE),)
    assert grid.observe(5_000, closed=True) == (
        GapDetected("s@kline_1s", 2_000, 4_000, CAUSE_KLINE),)
    assert grid.observe(6_000, closed=True) == ()


def test_an_unclosed_month_kline_is_reported_when_the_next_starts() -> None:
    """With no grid (1M), a kline never seen closed is still reported when the next one opens."""
    grid = KlineGrid("s@kline_1M", 0)
    grid.observe(0, closed=False)
    assert grid.observe(31 * 86_400_000, closed=False) == (
        GapDetected("s@kline_1M", 0, 0, CAUSE_KLINE),)


# DepthChain


def test_first_depth_event_asks_for_a_snapshot() -> None:
    """The first diff depth event asks for the initial snapshot."""
    chain = DepthChain("btcusdt@depth")
    assert chain.observe(10, 12) == (NeedSnapshot("btcusdt@depth", "initial snapshot"),)
    assert chain.snapshot_due and chain.last == 12


def test_initial_snapshot_can_be_turned_off() -> None:
    """With snapshot_on_start=False the first event needs nothing."""
    chain = DepthChain("s", snapshot_on_start=False)
    assert chain.observe(10, 12) == ()
    assert not chain.snapshot_due


def test_chained_event_needs_nothing() -> None:
    """An event with U == previous u + 1 continues the chain."""
    chain = DepthChain("s")
    chain.observe(10, 12)
    assert chain.observe(13, 20) == ()
    assert chain.last == 20


@pytest.mark.parametrize("event", [(10, 12), (5, 11), (13, 12)])
def test_event_ending_at_or_before_the_chain_needs_nothing(event: tuple[int, int]) -> None:
    """An event whose u is at or below the newest u needs nothing and keeps the newest u."""
    chain = DepthChain("s")
    chain.observe(10, 12)
    assert chain.observe(*event) == ()
    assert chain.last == 12


def test_overlapping_event_continues_the_chain() -> None:
    """An event with U <= previous u < u (a replacement connection's batching) continues it."""
    chain = DepthChain("s")
    chain.observe(10, 12)
    assert chain.observe(11, 15) == ()
    assert chain.last == 15


def test_broken_chain_reports_the_gap_without_a_separate_snapshot_request() -> None:
    """U > previous u + 1 reports the missing update ids only: filling that gap fetches the
    snapshot, so no NeedSnapshot comes with it."""
    chain = DepthChain("btcusdt@depth@100ms", snapshot_on_start=False)
    chain.observe(10, 12)
    assert chain.observe(14, 25) == (GapDetected("btcusdt@depth@100ms", 13, 13, CAUSE_DEPTH),)
    assert chain.snapshot_due and chain.gaps == 1
    assert chain.observe(26, 30) == ()


def test_real_depth_capture_has_no_gaps() -> None:
    """The real diff depth capture chains without a gap on every stream."""
    for stream, events in depth_events().items():
        chain = DepthChain(stream, snapshot_on_start=False)
        for first, final in events:
            assert chain.observe(first, final) == ()


def test_deleting_any_one_real_depth_event_makes_exactly_that_gap() -> None:
    """Deleting any one event but a stream's first or last reports exactly its ids missing."""
    checked = 0
    for stream, events in depth_events().items():
        for index in range(1, len(events) - 1):
            chain = DepthChain(stream, snapshot_on_start=False)
            found = [a for n, (first, final) in enumerate(events) if n != index
                     for a in chain.observe(first, final)]
            assert found == [GapDetected(stream, *events[index], CAUSE_DEPTH)]
            checked += 1
    assert checked > 500


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
    """Events with u <= lastUpdateId are dropped; the bridging event holds lastUpdateId + 1."""
    assert bridge_index(100, [(90, 95), (96, 100), (101, 105), (106, 110)]) == 2
    assert bridge_index(103, [(90, 95), (96, 100), (101, 105), (106, 110)]) == 2


@pytest.mark.parametrize(("last_update_id", "expected"), [
    (99, 0),  # lastUpdateId + 1 == U: the event starts just after the snapshot
    (104, 0),  # lastUpdateId + 1 == u: the event ends just after it
    (105, 1),  # u == lastUpdateId: dropped, the next one bridges
])
def test_bridge_bounds_are_inclusive(last_update_id: int, expected: int) -> None:
    """The first applied event satisfies U <= lastUpdateId + 1 <= u with both bounds included."""
    assert bridge_index(last_update_id, [(100, 105), (106, 110)]) == expected


def test_bridge_refuses_a_snapshot_older_than_the_first_event() -> None:
    """A snapshot with lastUpdateId + 1 < the first U gives None: fetch it again."""
    assert bridge_index(98, [(100, 105), (106, 110)]) is None


def test_bridge_waits_when_no_event_is_newer_than_the_snapshot() -> None:
    """A snapshot newer than every buffered event gives None: buffer more and try again."""
    assert bridge_index(200, [(90, 95), (96, 100)]) is None
    assert bridge_index(200, []) is None


def test_bridge_requires_each_u_to_continue_the_chain() -> None:
    """After the bridging event, U == previous u + 1 continues; U == previous u + 2 breaks it."""
    assert bridge_index(100, [(96, 100), (101, 105), (106, 110)]) == 1
    assert bridge_index(100, [(96, 100), (101, 105), (107, 110)]) is None


def test_bridge_tolerates_duplicates_and_overlaps_after_the_bridging_event() -> None:
    """Re-delivered events after the bridging event are dropped, overlapping ones applied."""
    assert bridge_index(100, [(101, 105), (101, 105), (106, 110)]) == 0
    assert bridge_index(100, [(101, 105), (103, 108), (109, 110)]) == 0


def chain_of(start: int, sizes: list[int]) -> list[tuple[int, int]]:
    """Contiguous (U, u) events from update id ``start``, the n-th holding sizes[n] updates."""
    events = []
    for size in sizes:
        events.append((start, start + size - 1))
        start += size
    return events


@settings(deadline=None, max_examples=200)
@given(st.integers(1, 10**12), st.lists(st.integers(1, 5), min_size=1, max_size=30), st.data())
def test_a_snapshot_inside_a_contiguous_chain_bridges_at_the_event_holding_the_next_update(
        start: int, sizes: list[int], data: Any) -> None:
    """Over a gapless buffer, a snapshot from U0 - 1 up to before the last u bridges at the one
    event with U <= lastUpdateId + 1 <= u; an older or newer snapshot gives None."""
    events = chain_of(start, sizes)
    last_update_id = data.draw(st.integers(start - 3, events[-1][1] + 2))
    index = bridge_index(last_update_id, events)
    holding = [n for n, (first, final) in enumerate(events) if first <= last_update_id + 1 <= final]
    assert index == (holding[0] if holding else None)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.integers(1, 5), min_size=3, max_size=30), st.data())
def test_an_event_missing_after_the_bridge_makes_the_snapshot_unusable(
        sizes: list[int], data: Any) -> None:
    """Deleting any event after the bridging one (but the last) gives None."""
    events = chain_of(1_000, sizes)
    bridge = data.draw(st.integers(0, len(events) - 3))
    deleted = data.draw(st.integers(bridge + 1, len(events) - 2))
    last_update_id = events[bridge][0] - 1
    assert bridge_index(last_update_id, events) == bridge
    assert bridge_index(last_update_id, events[:deleted] + events[deleted + 1:]) is None


def test_successful_bridge_clears_the_snapshot_due_flag() -> None:
    """A bridged snapshot clears snapshot_due; a failed one leaves it."""
    chain = DepthChain("s")
    chain.observe(101, 105)
    assert chain.bridge_snapshot(50, [(101, 105)]) is None
    assert chain.snapshot_due
    assert chain.bridge_snapshot(102, [(101, 105)]) == 0
    assert not chain.snapshot_due


@settings(deadline=None, max_examples=100)
@given(st.lists(st.tuples(st.integers(-100, 100), st.integers(-100, 100)), max_size=40))
def test_any_depth_ids_never_raise(events: list[tuple[int, int]]) -> None:
    """Arbitrary U/u pairs, even with u < U, give well-formed gaps and bridge results."""
    chain = DepthChain("s")
    for first, final in events:
        for gap in gaps(chain.observe(first, final)):
            assert gap.first_missing <= gap.last_missing
    index = chain.bridge_snapshot(0, events)
    assert index is None or 0 <= index < len(events)


def test_depth_chain_repr() -> None:
    """A depth chain's repr shows its stream, newest u, gaps and a pending snapshot."""
    chain = DepthChain("s")
    chain.observe(1, 2)
    assert repr(chain) == "<DepthChain s last_u=2 gaps=0 snapshot-due>"
    assert repr(DepthChain("t")) == "<DepthChain t last_u=None gaps=0>"


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


def test_the_next_message_ends_the_silence_spanning_all_of_it() -> None:
    """A 12 s silence reported after 1 s ends, at the next message, just before that message."""
    dog = Staleness("btcusdt@ticker", 1_000)
    dog.seen(5_000)
    assert dog.check(6_001) == GapDetected("btcusdt@ticker", 5_001, 6_001, CAUSE_STALE)
    assert dog.seen(17_001) == SilenceEnded("btcusdt@ticker", 5_001, 17_000)
    assert dog.seen(17_500) is None


def test_a_message_without_a_reported_silence_ends_nothing() -> None:
    """seen() returns None while no silence is open."""
    dog = Staleness("s", 1_000)
    assert dog.seen(0) is None
    assert dog.seen(900) is None


def test_a_silence_never_ends_before_its_reported_end() -> None:
    """A message time older than the detection keeps the reported last_missing as the end."""
    dog = Staleness("s", 1_000)
    dog.seen(0)
    dog.check(5_000)
    assert dog.seen(3_000) == SilenceEnded("s", 1, 5_000)


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


def test_rewatch_restarts_the_clock() -> None:
    """watch() after a resubscribe restarts the silence clock of a stream not reported silent."""
    dog = Staleness("s", 1_000)
    dog.seen(0)
    dog.watch(2_000)
    assert dog.check(2_500) is None
    assert dog.check(3_001) == GapDetected("s", 2_001, 3_001, CAUSE_STALE)


def test_rewatch_keeps_a_reported_silence_open() -> None:
    """watch() during a reported silence keeps it open: not reported again, ended by a message."""
    dog = Staleness("s", 1_000)
    dog.seen(0)
    assert dog.check(2_000) == GapDetected("s", 1, 2_000, CAUSE_STALE)
    dog.watch(2_000)
    assert dog.check(9_000) is None
    assert dog.seen(9_001) == SilenceEnded("s", 1, 9_000)


def test_a_stop_ends_the_open_silence_once() -> None:
    """ended(now) closes a silence still open at now, once; without one it gives None."""
    dog = Staleness("s", 1_000)
    dog.seen(0)
    assert dog.ended(500) is None
    dog.check(2_000)
    assert dog.ended(7_000) == SilenceEnded("s", 1, 7_000)
    assert dog.ended(8_000) is None


def test_out_of_order_seen_keeps_the_latest() -> None:
    """An earlier receive time does not move the silence clock back."""
    dog = Staleness("s", 1_000)
    dog.seen(5_000)
    dog.seen(1_000)
    assert dog.check(5_500) is None


def test_staleness_repr() -> None:
    """A watchdog's repr shows its stream, bound and last message time."""
    assert repr(Staleness("s", 5_000)) == "<Staleness s max=5000ms last=None>"


def test_a_rate_watch_ends_its_silence_too() -> None:
    """A trade stream's watchdog reports a silence and ends it at the next trade."""
    dog = RateWatch("s@trade", initial_ms=1_000)
    dog.watch(0)
    assert dog.check(1_001) == GapDetected("s@trade", 1, 1_001, CAUSE_SILENT)
    assert dog.seen(4_000) == SilenceEnded("s@trade", 1, 3_999)


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
        ("btcusdt@blockTrade", 18_000_000),
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


def test_microsecond_klines_are_checked_on_a_microsecond_grid() -> None:
    """With time_scale 1000 (timeUnit=MICROSECOND) the kline grid is in µs."""
    grid = Sequencer(["btcusdt@kline_1s"], time_scale=1000).tracker("btcusdt@kline_1s")
    assert isinstance(grid, KlineGrid) and grid.interval_ms == 1_000_000


def test_each_sequenced_event_is_sequenced_by_its_own_id() -> None:
    """observe() sequences aggTrades by agg_id, trades by trade_id, klines by open time and
    closed flag, and diff depth by U/u."""
    seq = Sequencer(snapshot_on_start=False)
    assert seq.observe("btcusdt@aggTrade", agg_trade(1)) == ()
    assert seq.observe("btcusdt@aggTrade", agg_trade(4)) == (
        GapDetected("btcusdt@aggTrade", 2, 3, CAUSE_ID),)
    assert seq.observe("btcusdt@trade", trade(7)) == ()
    assert seq.observe("btcusdt@trade", trade(9)) == (
        GapDetected("btcusdt@trade", 8, 8, CAUSE_ID),)
    assert seq.observe("btcusdt@kline_1m", kline(0, closed=False)) == ()
    assert seq.observe("btcusdt@kline_1m", kline(MINUTE, closed=False)) == (
        GapDetected("btcusdt@kline_1m", 0, 0, CAUSE_KLINE),)
    assert seq.observe("btcusdt@depth", diff_depth(1, 5)) == ()
    assert seq.observe("btcusdt@depth", diff_depth(8, 9)) == (
        GapDetected("btcusdt@depth", 6, 7, CAUSE_DEPTH),)


def test_the_first_diff_depth_event_observed_asks_for_a_snapshot() -> None:
    """observe() of a diff-depth stream's first event returns the initial NeedSnapshot."""
    seq = Sequencer(["btcusdt@depth@100ms"])
    assert seq.observe("btcusdt@depth@100ms", diff_depth(10, 12)) == (
        NeedSnapshot("btcusdt@depth@100ms", "initial snapshot"),)


@pytest.mark.parametrize("event", [
    Ticker(1, "BTCUSDT", *["1"] * 15, 0, 1, 0, 1, 2),
    BookTicker(1, "BTCUSDT", "1", "1", "1", "1"),
    [MiniTicker(1, "BTCUSDT", "1", "1", "1", "1", "1", "1")],
])
def test_events_of_unsequenced_kinds_give_nothing(event: object) -> None:
    """observe() of an event that carries no sequence returns an empty tuple and tracks nothing."""
    seq = Sequencer()
    assert seq.observe("btcusdt@ticker", event) == ()
    assert len(seq) == 0


def test_sequenced_kinds_are_those_observe_sequences() -> None:
    """SEQUENCED_KINDS names exactly the kinds whose events observe() gives to a tracker."""
    assert {StreamKind.AGG_TRADE, StreamKind.TRADE, StreamKind.KLINE,
            StreamKind.DIFF_DEPTH} == SEQUENCED_KINDS
    seq = Sequencer()
    for stream, event in [("a@aggTrade", agg_trade(1)), ("a@trade", trade(1)),
                          ("a@kline_1m", kline(0, True)), ("a@depth", diff_depth(1, 2))]:
        seq.observe(stream, event)
        assert isinstance(seq.tracker(stream), IdSequence | KlineGrid | DepthChain)


def test_real_decoded_events_report_no_gap() -> None:
    """The recorder's path, FrameDecoder then observe(), finds no gap in the real captures."""
    seq = Sequencer(snapshot_on_start=False)
    names = ["binance_spot_aggTrade.head400.jsonl", "binance_spot_kline_1m.0404.jsonl",
             "binance_spot_depthUpdate_100ms.head600.jsonl", "binance_spot_trade.singletons.jsonl",
             "binance_spot_24hrTicker.singletons.jsonl"]
    events = [d for name in names for d in decoded(name)]
    assert len(events) > 1_000
    for d in events:
        assert seq.observe(d.route.stream.name, d.event) == ()
    assert repr(seq).endswith("gaps=0 snapshots_due=0>")


def test_observations_are_routed_per_stream() -> None:
    """Each stream keeps its own sequence: a gap on one does not touch another."""
    seq = Sequencer(["btcusdt@trade", "ethusdt@trade"])
    seq.observe_id("btcusdt@trade", 1)
    seq.observe_id("ethusdt@trade", 100)
    assert seq.observe_id("btcusdt@trade", 2) == ()
    assert seq.observe_id("ethusdt@trade", 103) == (
        GapDetected("ethusdt@trade", 101, 102, CAUSE_ID),)


def test_kline_and_depth_observations_are_routed() -> None:
    """observe_kline and observe_depth reach the stream's grid and chain."""
    seq = Sequencer(["btcusdt@kline_1m", "btcusdt@depth@100ms"], snapshot_on_start=False)
    seq.observe_kline("btcusdt@kline_1m", 0)
    assert seq.observe_kline("btcusdt@kline_1m", 3 * MINUTE) == (
        GapDetected("btcusdt@kline_1m", MINUTE, 2 * MINUTE, CAUSE_KLINE),)
    seq.observe_depth("btcusdt@depth@100ms", 1, 5)
    assert seq.observe_depth("btcusdt@depth@100ms", 6, 9) == ()
    assert seq.bridge_snapshot("btcusdt@depth@100ms", 7, [(6, 9)]) == 0


def test_unregistered_stream_is_registered_on_first_use() -> None:
    """A stream first met in an observation is registered from its name."""
    seq = Sequencer()
    assert seq.observe("btcusdt@aggTrade", agg_trade(5)) == ()
    assert isinstance(seq.tracker("btcusdt@aggTrade"), IdSequence)


def test_unparsable_stream_gets_the_tracker_its_data_asks_for() -> None:
    """A stream name that cannot be parsed still gets tracked, by the event observed."""
    seq = Sequencer()
    seq.observe("BTCUSDT@weird", trade(1))
    assert seq.observe("BTCUSDT@weird", trade(3)) == (GapDetected("BTCUSDT@weird", 2, 2, CAUSE_ID),)
    assert seq.observe("??kline", kline(0, True)) == ()
    assert isinstance(seq.tracker("??kline"), KlineGrid)
    assert seq.observe("??depth", diff_depth(1, 2)) == (
        NeedSnapshot("??depth", "initial snapshot"),)


def test_an_event_of_another_kind_than_its_stream_is_a_type_error() -> None:
    """Observing a kline stream with a trade, or a ticker stream with depth, is a TypeError."""
    seq = Sequencer(["btcusdt@kline_1m", "btcusdt@ticker"])
    with pytest.raises(TypeError, match="IdSequence"):
        seq.observe("btcusdt@kline_1m", trade(1))
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


def test_seen_after_a_silence_returns_its_end() -> None:
    """seen() of a stream stale() reported returns the SilenceEnded to store as its real end."""
    seq = Sequencer(["btcusdt@ticker"])
    assert seq.seen("btcusdt@ticker", 0) is None
    assert seq.stale(6_000) == [GapDetected("btcusdt@ticker", 1, 6_000, CAUSE_STALE)]
    assert seq.stale(12_000) == []
    assert seq.seen("btcusdt@ticker", 13_000, count=3) == SilenceEnded("btcusdt@ticker", 1, 12_999)


def test_ended_closes_the_silences_open_at_a_stop() -> None:
    """ended(now) gives each silence still open, ending at now, and only once."""
    seq = Sequencer()
    seq.add("btcusdt@ticker", now_ms=0)
    seq.add("ethusdt@ticker", now_ms=0)
    seq.seen("ethusdt@ticker", 9_000)
    assert [g.stream for g in seq.stale(10_000)] == ["btcusdt@ticker"]
    assert seq.ended(11_000) == [SilenceEnded("btcusdt@ticker", 1, 11_000)]
    assert seq.ended(12_000) == []


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


def test_seen_on_a_stream_without_a_watchdog_ends_nothing() -> None:
    """Diff depth has no silence watchdog: seen() of it registers it and returns None."""
    seq = Sequencer()
    assert seq.seen("btcusdt@depth", 0) is None
    assert isinstance(seq.tracker("btcusdt@depth"), DepthChain)
    assert seq.seen("btcusdt@depth", 10**9) is None
    assert seq.stale(10**10) == []


def test_resume_applies_to_sequenced_streams_only() -> None:
    """resume() sets the baseline of id, kline and diff-depth streams and declines tickers."""
    seq = Sequencer()
    assert seq.resume("btcusdt@aggTrade", 99)
    assert seq.resume("btcusdt@kline_1m", 0)
    assert seq.resume("btcusdt@depth", 99)
    assert not seq.resume("btcusdt@ticker", 99)
    assert seq.observe("btcusdt@aggTrade", agg_trade(102)) == (
        GapDetected("btcusdt@aggTrade", 100, 101, CAUSE_RESUME),)
    assert seq.observe("btcusdt@depth", diff_depth(105, 110)) == (
        GapDetected("btcusdt@depth", 100, 104, CAUSE_RESUME),)


def test_a_resumed_depth_chain_that_continues_needs_no_snapshot() -> None:
    """A restart whose first live diff continues the stored chain reports nothing, not even the
    initial snapshot request; a later break is an ordinary chain break."""
    chain = DepthChain("btcusdt@depth")
    chain.resume_from(100)
    chain.resume_from(50)  # an older resume point changes nothing
    assert chain.observe(98, 104) == ()
    assert chain.observe(110, 112) == (GapDetected("btcusdt@depth", 105, 109, CAUSE_DEPTH),)


def test_an_unclosed_stored_kline_is_fetched_again_after_a_restart() -> None:
    """A kline stored mid-candle is reported missing once a later candle arrives, together with
    the candles missed meanwhile; a closed one is not."""
    grid = KlineGrid("s", MINUTE)
    grid.resume_from(10 * MINUTE, closed=False)
    assert grid.observe(12 * MINUTE) == (
        GapDetected("s", 10 * MINUTE, 11 * MINUTE, CAUSE_RESUME),)
    same = KlineGrid("s", MINUTE)
    same.resume_from(10 * MINUTE, closed=False)
    assert same.observe(10 * MINUTE, False) == () and same.observe(10 * MINUTE, True) == ()
    assert same.observe(11 * MINUTE) == ()


def test_time_we_did_not_read_is_not_the_exchange_silence() -> None:
    """excuse(ms) moves every watchdog's clock later, so a pause of our own reading does not
    make a stream stale; an open silence is left as it is, and 0 changes nothing."""
    seq = Sequencer(["btcusdt@ticker", "ethusdt@ticker"])
    seq.add("btcusdt@ticker", 0)
    seq.add("ethusdt@ticker", 0)
    assert [g.stream for g in seq.stale(6_000)] == ["btcusdt@ticker", "ethusdt@ticker"]
    seq.seen("btcusdt@ticker", 6_000)
    seq.excuse(0)
    seq.excuse(4_000)  # paused for 4 s
    assert seq.stale(14_000) == []
    assert [g.stream for g in seq.stale(15_001)] == ["btcusdt@ticker"]
    assert seq.seen("ethusdt@ticker", 15_001) == SilenceEnded("ethusdt@ticker", 1, 15_000)


def test_unknown_stream_has_no_tracker() -> None:
    """tracker() of a stream never registered is None."""
    assert Sequencer().tracker("btcusdt@trade") is None


def test_sequencer_repr_counts_streams_gaps_and_snapshots() -> None:
    """The sequencer's repr shows streams, gaps so far and snapshots due."""
    seq = Sequencer(["btcusdt@trade", "btcusdt@depth", "btcusdt@ticker"])
    seq.observe("btcusdt@trade", trade(1))
    seq.observe("btcusdt@trade", trade(5))
    seq.observe("btcusdt@depth", diff_depth(1, 2))
    assert repr(seq) == "<Sequencer streams=3 gaps=1 snapshots_due=1>"


def test_drop_forgets_a_stream_and_ends_its_open_silence() -> None:
    """drop() of an unsubscribed stream: its silence ends then, it is never stale again, and a
    later add starts it afresh (a returning aggTrade stream is not a gap from its old ids)."""
    seq = Sequencer(["btcusdt@ticker", "ethusdt@aggTrade"])
    seq.seen("btcusdt@ticker", 0)
    assert [g.stream for g in seq.stale(6_000)] == ["btcusdt@ticker"]
    assert seq.drop("btcusdt@ticker", 7_000) == SilenceEnded("btcusdt@ticker", 1, 7_000)
    assert seq.stale(60_000) == [] and seq.tracker("btcusdt@ticker") is None
    seq.observe_id("ethusdt@aggTrade", 10)
    assert seq.drop("ethusdt@aggTrade", 8_000) is None  # nothing open
    assert seq.drop("never@added", 8_000) is None
    seq.add("ethusdt@aggTrade")
    assert seq.observe_id("ethusdt@aggTrade", 500) == ()
