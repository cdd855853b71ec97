"""Batching: rows are flushed in batches by size or by age, on an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binance_streamer.core.batching import Batcher

MS = 1_000_000


def test_add_returns_the_batch_when_it_fills() -> None:
    """Adding the max_rows-th item hands back the full batch, in order, and empties the batcher."""
    batcher: Batcher[str] = Batcher(max_rows=3)
    assert batcher.add("a", 0) is None
    assert batcher.add("b", 1) is None
    assert batcher.add("c", 2) == ["a", "b", "c"]
    assert len(batcher) == 0


def test_single_row_batches() -> None:
    """With max_rows=1 every item is its own batch."""
    batcher: Batcher[int] = Batcher(max_rows=1)
    assert batcher.add(7, 0) == [7]


def test_empty_batcher_is_never_due() -> None:
    """Nothing pending means nothing due and no deadline."""
    batcher: Batcher[int] = Batcher()
    assert not batcher.due(10**18)
    assert batcher.deadline_ns() is None


def test_batch_is_due_when_its_oldest_item_reaches_max_age() -> None:
    """A partial batch is due once its oldest item is max_age_ns old, not before."""
    batcher: Batcher[int] = Batcher(max_rows=100, max_age_ns=100 * MS)
    batcher.add(1, 1_000 * MS)
    batcher.add(2, 1_090 * MS)
    assert not batcher.due(1_099 * MS)
    assert batcher.due(1_100 * MS)


def test_deadline_is_the_oldest_item_plus_max_age() -> None:
    """The deadline is set by the oldest pending item, not the newest."""
    batcher: Batcher[int] = Batcher(max_age_ns=100 * MS)
    batcher.add(1, 5 * MS)
    batcher.add(2, 50 * MS)
    assert batcher.deadline_ns() == 105 * MS


def test_take_returns_pending_and_starts_a_new_batch() -> None:
    """take() returns everything pending and the next item starts a fresh age clock."""
    batcher: Batcher[int] = Batcher(max_age_ns=100 * MS)
    batcher.add(1, 0)
    assert batcher.take() == [1]
    assert batcher.take() == []
    batcher.add(2, 500 * MS)
    assert batcher.deadline_ns() == 600 * MS
    assert not batcher.due(550 * MS)


def test_full_batch_resets_the_age_clock() -> None:
    """After a full batch is handed back, the next item's time sets the new deadline."""
    batcher: Batcher[int] = Batcher(max_rows=2, max_age_ns=10)
    batcher.add(1, 0)
    batcher.add(2, 5)
    batcher.add(3, 100)
    assert batcher.deadline_ns() == 110


def test_zero_max_age_makes_every_pending_batch_due() -> None:
    """With max_age_ns=0 a pending batch is due at once."""
    batcher: Batcher[int] = Batcher(max_age_ns=0)
    batcher.add(1, 42)
    assert batcher.due(42)


def test_extend_returns_every_batch_it_filled() -> None:
    """extend() adds a drained queue and hands back each batch it filled; the rest waits."""
    batcher: Batcher[int] = Batcher(max_rows=2)
    assert batcher.extend(range(5), 0) == [[0, 1], [2, 3]]
    assert batcher.take() == [4]


def test_none_and_zero_items_are_kept() -> None:
    """Falsy items such as None and 0 are batched like any other."""
    batcher: Batcher[int | None] = Batcher(max_rows=2)
    assert batcher.add(None, 0) is None
    assert batcher.add(0, 0) == [None, 0]


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"max_rows": 0}, "max_rows"), ({"max_age_ns": -1}, "max_age_ns")]
)
def test_invalid_limits_are_rejected(kwargs: dict[str, int], match: str) -> None:
    """max_rows below 1 or a negative max_age_ns raises ValueError."""
    with pytest.raises(ValueError, match=match):
        Batcher(**kwargs)


def test_batcher_repr() -> None:
    """The batcher's repr shows pending rows against the limit and the age bound."""
    batcher: Batcher[int] = Batcher(max_rows=5000, max_age_ns=100 * MS)
    batcher.add(1, 0)
    assert repr(batcher) == "<Batcher pending=1/5000 max_age=100ms>"


@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.booleans()), max_size=300),
    st.integers(1, 50),
    st.integers(0, 1_000),
)
def test_every_item_comes_out_once_in_order_within_bounds(
    steps: list[tuple[int, bool]], max_rows: int, max_age: int
) -> None:
    """Items flushed by size or age come out exactly once, in order, no batch over max_rows,
    and none flushed by age before it was due."""
    batcher: Batcher[int] = Batcher(max_rows=max_rows, max_age_ns=max_age)
    out: list[list[int]] = []
    now = 0
    for n, (advance, poll) in enumerate(steps):
        now += advance
        if (batch := batcher.add(n, now)) is not None:
            out.append(batch)
        if poll and batcher.due(now):
            deadline = batcher.deadline_ns()
            assert deadline is not None and deadline <= now
            out.append(batcher.take())
    out.append(batcher.take())
    assert [i for batch in out for i in batch] == list(range(len(steps)))
    assert all(len(batch) <= max_rows for batch in out)
