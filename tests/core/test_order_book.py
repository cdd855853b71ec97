"""The pure order book: Binance's snapshot-and-diff rules as typed outcomes, exact levels."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from binance_streamer.core.order_book import (
    Applied,
    Bridged,
    Gap,
    OrderBook,
    Stale,
    Unsynced,
    is_zero,
)


def _book(last: int = 100) -> OrderBook:
    book = OrderBook()
    book.load_snapshot(last, [["10.00", "1.0"], ["9.50", "2.0"]],
                       [["10.50", "3.0"], ["11.00", "4.0"]])
    return book


def test_a_diff_before_any_snapshot_is_unsynced_and_changes_nothing() -> None:
    """Without a snapshot a diff is reported Unsynced and the book stays empty."""
    book = OrderBook()
    assert book.apply(1, 2, [["1", "1"]], []) == Unsynced(1, 2)
    assert book.depth == (0, 0)
    assert not book.synced
    assert "unsynced" in repr(book)


def test_diffs_ending_at_or_before_the_snapshot_are_stale() -> None:
    """A diff with u <= lastUpdateId is dropped as Stale (step 5)."""
    book = _book(100)
    assert book.apply(90, 100, [["10.00", "0"]], []) == Stale(90, 100)
    assert book.top(5)[0][0] == ("10.00", "1.0")


def test_the_first_diff_spanning_the_snapshot_bridges_then_chained_diffs_apply() -> None:
    """U <= lastUpdateId + 1 <= u bridges; the next diff with U == u + 1 is Applied."""
    book = _book(100)
    assert book.apply(95, 105, [["10.00", "5.0"]], []) == Bridged(100, 95, 105)
    assert book.apply(106, 110, [], [["10.50", "0.00000000"]]) == Applied(106, 110)
    assert book.last_update_id == 110
    assert book.best_bid() == ("10.00", "5.0")
    assert book.best_ask() == ("11.00", "4.0")
    assert book.updates == 2


def test_a_diff_starting_past_the_next_id_is_a_gap_and_unsyncs_the_book() -> None:
    """U > last + 1 is a Gap naming the first missing id; later diffs are Unsynced."""
    book = _book(100)
    assert book.apply(101, 101, [], []) == Bridged(100, 101, 101)
    assert book.apply(105, 107, [["1", "1"]], []) == Gap(102, 105, 107)
    assert book.apply(108, 109, [], []) == Unsynced(108, 109)
    book.load_snapshot(200, [], [])
    assert book.apply(201, 202, [], []) == Bridged(200, 201, 202)


def test_removing_a_level_the_book_does_not_hold_is_normal() -> None:
    """A zero quantity for an unknown price is applied without error (step 7 note)."""
    book = _book(100)
    assert isinstance(book.apply(101, 101, [["1.23", "0"]], [["99", "0.0"]]), Bridged)
    assert book.depth == (2, 2)


def test_levels_order_by_exact_decimal_value_not_by_string() -> None:
    """'9.9' sorts below '10.0' and two prices one satoshi apart keep their own levels."""
    book = OrderBook()
    book.load_snapshot(1, [["9.9", "1"], ["10.0", "1"], ["60000.00000001", "1"],
                           ["60000.00000000", "2"]],
                       [["100.5", "1"], ["99.5", "1"], ["0", "0"]])
    bids, asks = book.top(10)
    assert [p for p, _ in bids] == ["60000.00000001", "60000.00000000", "10.0", "9.9"]
    assert [p for p, _ in asks] == ["99.5", "100.5"]  # zero-quantity snapshot level skipped
    assert OrderBook().best_bid() is None and OrderBook().best_ask() is None


def test_is_zero_recognises_binance_zero_strings_only() -> None:
    """Zero strings of any precision are zero; any other digit is not."""
    assert all(is_zero(q) for q in ("0", "0.0", "0.00000000", "00.000"))
    assert not any(is_zero(q) for q in ("0.00000001", "1", "10.00000000", "100"))


def test_the_price_key_cache_forgets_prices_long_gone() -> None:
    """Sorting after many prices came and went still gives the exact best levels."""
    book = _book(0)
    for i in range(1, 3000):
        book.apply(2 * i - 1, 2 * i - 1, [[f"{i + 20}.5", "1"]], [])
        assert book.best_bid() == (f"{i + 20}.5", "1")
        book.apply(2 * i, 2 * i, [[f"{i + 20}.5", "0"]], [])
    assert book.best_bid() == ("10.00", "1.0")
    assert "bids=2" in repr(book)


_PRICES = st.sampled_from([f"{n / 4:.2f}" for n in range(1, 40)])
_QTYS = st.sampled_from(["0", "0.00000000", "1.5", "2.00000000", "0.1"])
_LEVELS = st.lists(st.tuples(_PRICES, _QTYS).map(list), max_size=6)


@given(snapshot=st.tuples(_LEVELS, _LEVELS),
       diffs=st.lists(st.tuples(_LEVELS, _LEVELS), max_size=30))
def test_chained_diffs_give_the_same_book_as_a_plain_dict_model(
        snapshot: tuple[list[list[str]], list[list[str]]],
        diffs: list[tuple[list[list[str]], list[list[str]]]]) -> None:
    """Any snapshot and chain of diffs yields the levels a dict model yields, in decimal order."""
    book = OrderBook()
    book.load_snapshot(10, *snapshot)
    model = [{p: q for p, q in side if Decimal(q)} for side in snapshot]
    next_id = 11
    for bids, asks in diffs:
        outcome = book.apply(next_id, next_id + 1, bids, asks)
        assert isinstance(outcome, Bridged if next_id == 11 else Applied)
        next_id += 2
        for side, levels in zip(model, (bids, asks), strict=True):
            for p, q in levels:
                if Decimal(q):
                    side[p] = q
                else:
                    side.pop(p, None)
        top_bids, top_asks = book.top(3)  # the cached best levels follow every change
        assert top_bids == sorted(model[0].items(), key=lambda kv: Decimal(kv[0]),
                                  reverse=True)[:3]
        assert top_asks == sorted(model[1].items(), key=lambda kv: Decimal(kv[0]))[:3]
    bids, asks = book.top(100)
    assert bids == sorted(model[0].items(), key=lambda kv: Decimal(kv[0]), reverse=True)
    assert asks == sorted(model[1].items(), key=lambda kv: Decimal(kv[0]))


def test_a_cut_snapshot_reports_no_level_past_its_worst_price() -> None:
    """Levels beyond a cut snapshot's worst bid or ask stay unreported, even once a diff sets
    one; levels inside the range are reported as usual."""
    book = OrderBook()
    book.load_snapshot(10, [["10", "1"], ["9", "1"]], [["11", "1"], ["12", "1"]],
                       cut=(True, True))
    book.apply(11, 11, [["8", "5"], ["9.5", "2"]], [["13", "5"], ["11.5", "2"]])
    assert book.top(5) == ([("10", "1"), ("9.5", "2"), ("9", "1")],
                           [("11", "1"), ("11.5", "2"), ("12", "1")])
    book.apply(12, 12, [["10", "0"], ["9.5", "0"], ["9", "0"]], [])
    assert book.best_bid() is None and book.depth == (1, 4)  # 8 is held, never shown
    book.load_snapshot(20, [], [["11", "1"]], cut=(True, False))  # an empty side cuts nothing
    book.apply(21, 21, [["7", "1"]], [["99", "1"]])
    assert book.top(5) == ([("7", "1")], [("11", "1"), ("99", "1")])


def test_the_cached_best_levels_follow_additions_removals_and_quantities() -> None:
    """After top(2): a better new level, a removed cached level, a changed quantity and a
    deeper request are all reflected; a worse new level leaves the best two alone."""
    book = _book(100)
    assert book.top(2)[0] == [("10.00", "1.0"), ("9.50", "2.0")]
    book.apply(101, 101, [["9.00", "3"]], [])  # worse than the cached two
    assert book.top(2)[0] == [("10.00", "1.0"), ("9.50", "2.0")]
    book.apply(102, 102, [["10.00", "7"], ["9.75", "4"]], [])  # a quantity, a better level
    assert book.top(2)[0] == [("10.00", "7"), ("9.75", "4")]
    book.apply(103, 103, [["10.00", "0"]], [])
    assert book.top(3)[0] == [("9.75", "4"), ("9.50", "2.0"), ("9.00", "3")]
    book.apply(104, 104, [["1.00", "1"]], [])  # all levels were cached: a new one joins
    assert book.top(5)[0][-1] == ("1.00", "1")
