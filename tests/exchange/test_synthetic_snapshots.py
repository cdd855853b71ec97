"""A synthetic symbol's REST depth snapshots taken between two 100 ms pushes of its diff stream
follow Binance's rule (web-socket-streams.md "How to manage a local order book correctly"): a
snapshot with ``lastUpdateId`` L holds every change with an id up to L and no other, and the
first diff to apply after it is the one with ``U <= L + 1 <= u``."""

from __future__ import annotations

import sys
from itertools import pairwise
from typing import Any

from binance_streamer.exchange import LocalExchange
from tests.exchange.helpers import book_body, rebuilt_book

WHOLE = sys.maxsize


def _levels(body: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(side, p, q) for side in ("bids", "asks") for p, q in body[side]}


def test_snapshots_between_pushes_hold_exactly_the_changes_up_to_their_id() -> None:
    """Snapshots after each step of five 100 ms intervals (stepped by hand): each bridges with
    its interval's diff to the book rebuilt at that diff's ``u``; two snapshots differ in no
    more levels than their ids do (one id, one level change), and only in levels that diff
    carries."""
    ex = LocalExchange(synthetic=["SOLUSDT"], start="manual")
    sym, state = ex.synthetic[0], ex.market.symbols["SOLUSDT"]
    start, now = book_body(ex, "SOLUSDT"), 1_700_000_000_000
    taken: list[list[dict[str, Any]]] = []
    for push in range(1, 6):
        taken.append([])
        for step in range(3):
            sym.step(now + 100 * push - 75 + 25 * step)
            taken[-1].append(state.current_book().top(WHOLE))
        sym.grid(now + 100 * push, 100 * push)
    diffs = ex.history.events("solusdt@depth@100ms")
    assert len(diffs) == len(taken)
    for k, (diff, snapshots) in enumerate(zip(diffs, taken, strict=True)):
        at_u = rebuilt_book(start, diffs[:k + 1]).top(WHOLE)
        assert diff["U"] <= snapshots[0]["lastUpdateId"] < diff["u"]  # strictly inside
        assert snapshots[-1]["lastUpdateId"] == diff["u"]
        carried = {(side, p) for side in ("bids", "asks") for p, _ in diff[side[0]]}
        for body in snapshots:
            assert rebuilt_book(body, [diff]).top(WHOLE) == at_u, body["lastUpdateId"]
        for older, newer in pairwise(snapshots):
            changed = _levels(older) ^ _levels(newer)
            prices = {(side, p) for side, p, _ in changed}
            assert prices <= carried
            assert 0 < len(prices) <= newer["lastUpdateId"] - older["lastUpdateId"]
