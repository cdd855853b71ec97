"""Merging 100 ms depth diffs into 1000 ms ones, and snapshots one diff ahead, on real diffs."""

from __future__ import annotations

import json
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest

from binance_streamer.core.order_book import Bridged, OrderBook
from binance_streamer.exchange.book import OrderBook as ExchangeBook
from binance_streamer.exchange.depth_merge import DepthLookahead, DepthMerge
from tests.exchange.helpers import rebuilt_book
from tests.helpers import FIXTURES, payloads

SYMBOLS = ["BTCUSDT", "ETHUSDT", "DOTUSDT"]


def diffs_of(symbol: str) -> list[dict[str, Any]]:
    """The real ``@depth@100ms`` diffs of ``symbol`` from the 2021-04-04 capture."""
    return [d for d in payloads("binance_spot_depthUpdate_100ms.head600.jsonl")
            if d["s"] == symbol]


def snapshot_of(symbol: str) -> dict[str, Any]:
    """The real REST depth snapshot of ``symbol`` taken during the same capture."""
    lines = (FIXTURES / "binance_spot_rest_depth_snapshots.0404.jsonl").read_text().splitlines()
    return next(rec["body"] for rec in map(json.loads, lines) if symbol in rec["url"])


def merged_seconds(diffs: list[dict[str, Any]], symbol: str) -> list[dict[str, Any]]:
    """The diffs merged once per second of their event time, as the 1000 ms stream is."""
    merge, out = DepthMerge(), []
    second = diffs[0]["E"] // 1000
    for diff in diffs:
        if diff["E"] // 1000 != second:
            out.append(merge.take(symbol, second * 1000 + 1000))
            second = diff["E"] // 1000
        merge.add(diff)
    out.append(merge.take(symbol, second * 1000 + 1000))
    return out


def body(book: OrderBook) -> dict[str, Any]:
    """``book`` as a REST depth body with every level."""
    bids, asks = book.top(100_000)
    return {"lastUpdateId": book.last_update_id, "bids": bids, "asks": asks}


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("skip", [1, 4])
def test_merged_seconds_rebuild_the_book_the_100ms_diffs_rebuild(symbol: str, skip: int) -> None:
    """From a book at a diff boundary, the merged 1000 ms stream gives the same book, id for id,
    as the 100 ms stream, for a chain starting mid-second."""
    diffs = diffs_of(symbol)
    bridge = next(i for i, d in enumerate(diffs) if d["u"] > snapshot_of(symbol)["lastUpdateId"])
    start = body(rebuilt_book(snapshot_of(symbol), diffs[:bridge + skip]))
    chain = diffs[bridge + skip:]
    merged = merged_seconds(chain, symbol)
    assert len(merged) < len(chain) // 5 and merged[0]["U"] == start["lastUpdateId"] + 1
    assert all(b["U"] == a["u"] + 1 for a, b in pairwise(merged))
    fine, coarse = rebuilt_book(start, chain), rebuilt_book(start, merged)
    assert coarse.last_update_id == fine.last_update_id == diffs[-1]["u"]
    assert coarse.top(100_000) == fine.top(100_000)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_merged_seconds_bridge_a_real_snapshot_to_the_same_book(symbol: str) -> None:
    """From the real REST snapshot, the merged stream gives the book the 100 ms stream gives
    within the snapshot's price range (outside it, web-socket-streams.md's note on levels a
    snapshot leaves out applies: a merged second also holds diffs older than the snapshot)."""
    diffs, snapshot = diffs_of(symbol), snapshot_of(symbol)
    fine = rebuilt_book(snapshot, diffs)
    coarse = rebuilt_book(snapshot, merged_seconds(diffs, symbol))
    low, high = Decimal(snapshot["bids"][-1][0]), Decimal(snapshot["asks"][-1][0])
    assert coarse.last_update_id == fine.last_update_id
    for book_side, side in zip(coarse.top(100_000), fine.top(100_000), strict=True):
        assert [lv for lv in book_side if low <= Decimal(lv[0]) <= high] == [
            lv for lv in side if low <= Decimal(lv[0]) <= high]


def test_a_merged_event_holds_the_latest_quantity_of_each_price_in_binance_order() -> None:
    """U of the first diff, u of the last, the last quantity given for each price (zeros kept as
    removals), bids descending and asks ascending, the event time passed in."""
    diffs = diffs_of("ETHUSDT")[:10]
    merge = DepthMerge()
    for diff in diffs:
        merge.add(diff)
    event = merge.take("ETHUSDT", 1617566592000)
    assert event is not None
    assert list(event) == ["e", "E", "s", "U", "u", "b", "a"]
    assert (event["e"], event["E"], event["s"]) == ("depthUpdate", 1617566592000, "ETHUSDT")
    assert (event["U"], event["u"]) == (diffs[0]["U"], diffs[-1]["u"])
    for side in ("b", "a"):
        latest = {p: q for diff in diffs for p, q in diff[side]}
        assert dict(event[side]) == latest
        prices = [Decimal(p) for p, _ in event[side]]
        assert prices == sorted(prices, reverse=side == "b")
    assert any(Decimal(q) == 0 for _, q in event["b"] + event["a"])


def test_nothing_is_taken_without_new_diffs_and_stale_diffs_are_ignored() -> None:
    """A second without diffs gives None; a diff already merged (the merged event itself
    included) is not merged again."""
    diffs = diffs_of("BTCUSDT")[:4]
    merge = DepthMerge()
    assert merge.take("BTCUSDT", 1) is None
    for diff in diffs[:2]:
        merge.add(diff)
    event = merge.take("BTCUSDT", 2)
    assert event is not None
    merge.add(event)
    merge.add(diffs[1])
    assert merge.take("BTCUSDT", 3) is None
    merge.add(diffs[2])
    assert merge.take("BTCUSDT", 4) == {**diffs[2], "E": 4}


def book_after(symbol: str, diffs: list[dict[str, Any]]) -> ExchangeBook:
    """The exchange's book: the recorded snapshot with ``diffs`` applied (stale ones ignored)."""
    book = ExchangeBook.from_snapshot(snapshot_of(symbol))
    for diff in diffs:
        book.apply(diff["U"], diff["u"], diff["b"], diff["a"])
    return book


def test_a_snapshot_ahead_falls_strictly_inside_the_next_diff_and_bridges() -> None:
    """At a busy diff boundary the snapshot is labelled strictly inside the next diff's U..u,
    and a client bridging from it gets the book the diffs give."""
    diffs = diffs_of("BTCUSDT")
    ahead = DepthLookahead(diffs)
    k = next(i for i in range(20, len(diffs) - 1) if diffs[i + 1]["u"] > diffs[i + 1]["U"]
             and diffs[i + 1]["E"] - diffs[i]["E"] < 200)
    book = book_after("BTCUSDT", diffs[:k + 1])
    snap = ahead.snapshot(book).top(5000)
    nxt = diffs[k + 1]
    assert nxt["U"] < snap["lastUpdateId"] + 1 <= nxt["u"]
    client = OrderBook()
    client.load_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
    assert isinstance(client.apply(nxt["U"], nxt["u"], nxt["b"], nxt["a"]), Bridged)
    for diff in diffs[k + 2:]:
        client.apply(diff["U"], diff["u"], diff["b"], diff["a"])
    assert client.top(5000) == rebuilt_book(snapshot_of("BTCUSDT"), diffs).top(5000)
    assert book.last_update_id == diffs[k]["u"]  # the published book is left as it was


def test_a_snapshot_is_the_book_itself_when_it_cannot_look_ahead() -> None:
    """No look-ahead off a recorded diff boundary, after a quiet tick, before a one-update diff
    or after the last diff."""
    recorded = ExchangeBook.from_snapshot(snapshot_of("BTCUSDT"))  # strictly inside already
    assert DepthLookahead(diffs_of("BTCUSDT")).snapshot(recorded) is recorded
    diffs = diffs_of("DOTUSDT")
    ahead = DepthLookahead(diffs)
    single = next(i for i in range(20, len(diffs)) if diffs[i]["U"] == diffs[i]["u"])
    book = book_after("DOTUSDT", diffs[:single])
    assert ahead.snapshot(book) is book
    quiet = next(i for i in range(20, len(diffs)) if diffs[i]["E"] - diffs[i - 1]["E"] >= 200
                 and diffs[i]["u"] > diffs[i]["U"])
    book = book_after("DOTUSDT", diffs[:quiet])
    assert ahead.snapshot(book) is book
    book = book_after("DOTUSDT", diffs)
    assert ahead.snapshot(book) is book


def test_a_looping_replay_looks_ahead_by_the_same_diff_one_id_step_later() -> None:
    """With ``id_step``, a book at pass k's copy of a recorded diff boundary is shown one diff
    ahead with the ids of pass k."""
    diffs = diffs_of("BTCUSDT")
    step = diffs[-1]["u"] - diffs[0]["U"] + 2
    k = next(i for i in range(20, len(diffs) - 1) if diffs[i + 1]["u"] > diffs[i + 1]["U"]
             and diffs[i + 1]["E"] - diffs[i]["E"] < 200)
    once = DepthLookahead(diffs).snapshot(book_after("BTCUSDT", diffs[:k + 1]))
    for passes in (1, 3):
        book = book_after("BTCUSDT", diffs[:k + 1])
        book.last_update_id += passes * step
        ahead = DepthLookahead(diffs, id_step=step).snapshot(book)
        assert ahead.last_update_id == once.last_update_id + passes * step
        assert (ahead.bids, ahead.asks) == (once.bids, once.asks)
        assert DepthLookahead(diffs).snapshot(book) is book


def test_a_gap_restarts_the_merge_so_it_shows_between_events() -> None:
    """Diffs after a gap in U/u are merged from the first diff after it alone: the merged event
    starts above the last one's ``u`` + 1, as Binance shows a gap, and holds none of the levels
    from before it."""
    diffs = diffs_of("BTCUSDT")[:8]
    merge = DepthMerge()
    merge.add(diffs[0])
    before = merge.take("BTCUSDT", 1)
    for diff in (*diffs[1:3], *diffs[6:8]):  # diffs 3-5 are lost
        merge.add(diff)
    event = merge.take("BTCUSDT", 2)
    assert before is not None and event is not None
    assert (event["U"], event["u"]) == (diffs[6]["U"], diffs[7]["u"])
    assert event["U"] > diffs[2]["u"] + 1
    for side in ("b", "a"):
        assert dict(event[side]) == {p: q for diff in diffs[6:8] for p, q in diff[side]}
