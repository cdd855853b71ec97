"""Shifting recorded payloads in time and ids (exchange/shift.py), on real recorded payloads."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from binance_streamer.exchange.shift import Extents, Shift, Shifts, Space
from tests.helpers import FIXTURES

SHIFT = Shift(time_ms=1_000, agg_ids=10, trade_ids=100, update_ids=1_000, block_ids=7)


def first(name: str) -> Any:
    """The payload of the first line of a fixture file (frames unwrapped, REST bodies)."""
    rec = json.loads((FIXTURES / name).read_text().splitlines()[0])
    return rec.get("data", rec.get("body", rec)) if isinstance(rec, dict) else rec


def plus(payload: dict[str, Any], **moves: int) -> dict[str, Any]:
    """``payload`` with ``moves`` added to the named fields."""
    return {k: v + moves[k] if k in moves else v for k, v in payload.items()}


def test_each_payload_kind_moves_its_times_and_ids_and_nothing_else() -> None:
    """Event, trade and window times move by the time shift, a kline's candle to the one
    holding its shifted event time; aggregate trade ids, trade ids and order book update ids
    by their own amounts; other fields and key order stay."""
    agg = first("binance_spot_aggTrade.head400.jsonl")
    trade = first("binance_spot_trade.singletons.jsonl")
    depth = first("binance_spot_depthUpdate_100ms.head600.jsonl")
    book = first("binance_spot_bookTicker.head300.jsonl")
    ticker = first("binance_spot_24hrTicker.singletons.jsonl")
    mini = first("binance_spot_miniTicker.singletons.jsonl")
    snapshot = first("binance_spot_rest_depth_snapshots.0404.jsonl")
    kline = first("binance_spot_kline_1m.0404.jsonl")
    t, a, i, u = 1_000, 10, 100, 1_000
    expected = [
        (agg, plus(agg, E=t, T=t, a=a, f=i, l=i)),
        (trade, plus(trade, E=t, T=t, t=i)),  # "b"/"a" are order ids: not trade ids
        (depth, plus(depth, E=t, U=u, u=u)),
        (book, plus(book, u=u)),
        (ticker, plus(ticker, E=t, O=t, C=t, F=i, L=i)),
        (mini, plus(mini, E=t)),
        (snapshot, plus(snapshot, lastUpdateId=u)),
        (kline, {**plus(kline, E=t), "k": plus(kline["k"], f=i, L=i)}),  # the same minute
    ]
    for payload, want in expected:
        kept = copy.deepcopy(payload)
        got = SHIFT.apply(payload)
        assert got == want and list(got) == list(payload)
        assert payload == kept  # the recorded payload is never mutated


def test_a_shift_off_the_interval_puts_a_candle_back_on_its_grid() -> None:
    """Shifted by a time that is not a whole number of its interval, a kline is the candle of
    its interval holding the shifted event time (a closing event's, at most its ``T``)."""
    kline = first("binance_spot_kline_1m.0404.jsonl")
    start, event = kline["k"]["t"], kline["E"]
    for time_ms in (1_000, 59_000, 61_000, -61_000):
        candle = Shift(time_ms=time_ms).apply(kline)["k"]
        assert candle["t"] % 60_000 == start % 60_000 and candle["T"] == candle["t"] + 59_999
        assert candle["t"] <= event + time_ms <= candle["T"]
    closing = {**kline, "E": kline["k"]["T"] + 2_000}  # pushed after the candle closed
    assert Shift(time_ms=-1_000).apply(closing)["k"]["t"] == start


def test_documented_kinds_without_a_capture_move_their_fields() -> None:
    """blockTrade ids are their own sequence; avgPrice and referencePrice times move
    (payloads as web-socket-streams.md shows them)."""
    block = {"e": "blockTrade", "E": 1772506983582, "s": "BNBBTC", "t": 582, "p": "0.052",
             "q": "5838", "T": 1772506983321, "m": True}
    avg = {"e": "avgPrice", "E": 1693907033000, "s": "BTCUSDT", "i": "5m",
           "w": "25776.86000000", "T": 1693907032213}
    ref = {"e": "referencePrice", "s": "BTCUSDT", "r": "72000.00", "t": 1770313263917}
    assert SHIFT.apply(block) == plus(block, E=1_000, T=1_000, t=7)
    assert SHIFT.apply(avg) == plus(avg, E=1_000, T=1_000)
    assert SHIFT.apply(ref) == plus(ref, t=1_000)


def test_no_trade_ids_stay_minus_one() -> None:
    """A ticker or kline without trades keeps its -1 first and last trade ids."""
    ticker = {**first("binance_spot_24hrTicker.singletons.jsonl"), "F": -1, "L": -1}
    got = SHIFT.apply(ticker)
    assert (got["F"], got["L"]) == (-1, -1) and got["E"] == ticker["E"] + 1_000


def test_a_zero_shift_returns_the_recorded_payload_itself() -> None:
    """Nothing to move: the payload object itself, so replayed frames stay byte-identical."""
    agg = first("binance_spot_aggTrade.head400.jsonl")
    assert Shift().apply(agg) is agg and not Shift()


def test_arrays_shift_each_element_by_its_own_symbol() -> None:
    """In ``!miniTicker@arr`` each element moves by its symbol's shift, others by the default."""
    arr = first("binance_spot_miniTicker_arr.singletons.jsonl")
    shifts = Shifts(Shift(time_ms=5), {arr[0]["s"]: Shift(time_ms=60_000)})
    got = shifts.apply(arr, "")
    assert got[0]["E"] == arr[0]["E"] + 60_000
    assert [g["E"] - a["E"] for g, a in zip(got[1:], arr[1:], strict=True)] == [5] * (len(arr) - 1)


def test_payloads_without_a_symbol_use_the_given_one() -> None:
    """A REST snapshot body has no ``s``: the caller's symbol picks its shift."""
    snapshot = first("binance_spot_rest_depth_snapshots.0404.jsonl")
    shifts = Shifts(Shift(), {"DOTUSDT": Shift(update_ids=3)})
    assert shifts.apply(snapshot, "DOTUSDT")["lastUpdateId"] == snapshot["lastUpdateId"] + 3
    assert shifts.apply(snapshot, "BTCUSDT") is snapshot


def test_extents_take_sequences_from_trades_not_klines() -> None:
    """Trade id extents come from trades and aggregate trades (a kline's first trade id lies
    before the recording); update ids span diffs, book tickers and snapshots alike."""
    ext = Extents()
    ext.add("s@aggTrade", "S", {"e": "aggTrade", "E": 10, "s": "S", "a": 5, "f": 50, "l": 52,
                                "T": 9})
    ext.add("s@aggTrade", "S", {"e": "aggTrade", "E": 70, "s": "S", "a": 6, "f": 53, "l": 53,
                                "T": 69})
    ext.add("s@kline_1m", "S", {"e": "kline", "E": 20, "s": "S", "k": {
        "t": 0, "T": 59_999, "s": "S", "i": "1m", "f": 1, "L": 53}})
    ext.add("s@bookTicker", "S", {"u": 400, "s": "S", "b": "1", "B": "1", "a": "2", "A": "1"})
    ext.add("", "S", {"lastUpdateId": 420, "bids": [], "asks": []})
    assert ext.id_range("S", Space.AGG_ID) == (5, 6)
    assert ext.id_range("S", Space.TRADE_ID) == (50, 53)
    assert ext.id_range("S", Space.UPDATE_ID) == (400, 420)
    assert ext.id_range("S", Space.BLOCK_ID) is None
    assert ext.time_span_ms == 60  # aggTrade E 10..70; each field of each stream on its own


def test_klines_alone_give_the_trade_id_extent() -> None:
    """Without trades, kline trade ids give the trade id extent."""
    ext = Extents()
    ext.add("s@kline_1m", "S", {"e": "kline", "E": 20, "s": "S", "k": {
        "t": 0, "T": 59_999, "s": "S", "i": "1m", "f": 1, "L": 53}})
    assert ext.id_range("S", Space.TRADE_ID) == (1, 53)


@given(st.integers(0, 10**12), st.integers(0, 10**9), st.integers(0, 10**12),
       st.integers(0, 10**9))
def test_two_shifts_compose_into_their_sum(t1: int, i1: int, t2: int, i2: int) -> None:
    """Shifting by one amount and then another equals shifting by their sum."""
    agg = first("binance_spot_aggTrade.head400.jsonl")
    one, two = Shift(t1, i1, i1, i1), Shift(t2, i2, i2, i2)
    assert two.apply(one.apply(agg)) == Shift(t1 + t2, i1 + i2, i1 + i2, i1 + i2).apply(agg)
