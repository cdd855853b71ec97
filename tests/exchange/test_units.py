"""Pure parts of the exchange: URL parsing, control replies, kline grid, order book, framing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binance_streamer.core.streams import KLINE_INTERVALS
from binance_streamer.exchange.book import OrderBook
from binance_streamer.exchange.control import SessionState, handle_control, is_valid_stream
from binance_streamer.exchange.frames import FMT_COMBINED, FMT_MICROS, Event, frame
from binance_streamer.exchange.sources import stream_of
from binance_streamer.exchange.stats import bucket_bounds
from binance_streamer.exchange.timeline import grid_of
from binance_streamer.exchange.wsserver import BadTarget, parse_target


@pytest.mark.parametrize(("path", "query", "expected"), [
    ("/ws", "", (False, [], False)),
    ("/ws/", "", (False, [], False)),
    ("/ws/a@ticker/b@ticker", "", (False, ["a@ticker", "b@ticker"], False)),
    ("/stream", "streams=a@trade/b@depth@100ms", (True, ["a@trade", "b@depth@100ms"], False)),
    ("/stream", "streams=a%40trade&timeUnit=MICROSECOND", (True, ["a@trade"], True)),
    ("/stream", "streams=a@kline_1d@+08:00&timeUnit=microsecond",
     (True, ["a@kline_1d@+08:00"], True)),
    ("/ws/a@trade", "timeUnit=MILLISECOND", (False, ["a@trade"], False)),
])
def test_url_forms(path: str, query: str, expected: tuple[bool, list[str], bool]) -> None:
    """Every documented URL form parses to (combined, streams, microseconds)."""
    assert parse_target(path, query, 1024) == expected


@pytest.mark.parametrize(("path", "query"), [
    ("/ws/btcusdt@nonsense", ""), ("/ws/a@trade", "timeUnit=NANOSECOND"), ("/other", "")])
def test_bad_urls(path: str, query: str) -> None:
    """Malformed streams, unknown time units and unknown endpoints are refused."""
    with pytest.raises(BadTarget):
        parse_target(path, query, 1024)


def test_extra_documented_stream_types_are_accepted() -> None:
    """Stream types core.streams does not parse yet are still valid subscriptions."""
    assert all(map(is_valid_stream, ["bnbbtc@blockTrade", "bazusd@referencePrice",
                                     "!ticker_1h@arr", "BTCUSDT@trade"]))
    assert not any(map(is_valid_stream, ["!ticker@arr", "!bookTicker", "", 5, "a@b"]))


@given(st.text(max_size=300))
def test_control_never_raises_and_always_answers(text: str) -> None:
    """Any text gets exactly one reply object with a result or an error."""
    reply = handle_control(text, SessionState(), 1024).reply
    assert ("result" in reply) != ("error" in reply) and "id" in reply
    json.dumps(reply)


@given(st.integers(0, 4_102_444_800_000), st.sampled_from(KLINE_INTERVALS),
       st.sampled_from([0, 8 * 3_600_000]))
def test_kline_buckets_contain_the_time_and_tile(t: int, interval: str, tz: int) -> None:
    """A kline bucket contains its time and the next bucket starts right after it ends."""
    start, end = bucket_bounds(t, interval, tz)
    assert start <= t <= end
    assert bucket_bounds(end + 1, interval, tz)[0] == end + 1


def test_week_klines_open_on_monday() -> None:
    """1w klines open on Monday 00:00 UTC (2021-04-05 was a Monday)."""
    assert bucket_bounds(1_617_566_591_000, "1w")[0] == 1_617_580_800_000 - 7 * 86_400_000


def test_order_book_ignores_stale_diffs_and_reports_gaps() -> None:
    """Diffs at or below lastUpdateId are ignored; a diff past lastUpdateId+1 is a gap."""
    book = OrderBook.from_snapshot({"lastUpdateId": 10, "bids": [["1.0", "2"]], "asks": []})
    assert book.apply(5, 10, [["1.0", "0"]], [])
    assert book.bids == {"1.0": "2"}
    assert book.apply(9, 12, [["1.0", "0"]], [["2.0", "1"]])
    assert book.top(5) == {"lastUpdateId": 12, "bids": [], "asks": [["2.0", "1"]]}
    assert not book.apply(14, 15, [], [])


def test_an_order_book_copy_is_independent() -> None:
    """A copy has the same id and levels, and diffs to either book leave the other as it was."""
    book = OrderBook.from_snapshot({"lastUpdateId": 10, "bids": [["1.0", "2"]],
                                    "asks": [["2.0", "1"]]})
    copy = book.copy()
    assert copy.top(5) == book.top(5)
    book.apply(11, 11, [["1.0", "0"]], [])
    copy.apply(11, 12, [], [["3.0", "4"]])
    assert book.top(5) == {"lastUpdateId": 11, "bids": [], "asks": [["2.0", "1"]]}
    assert copy.top(5) == {"lastUpdateId": 12, "bids": [["1.0", "2"]],
                           "asks": [["2.0", "1"], ["3.0", "4"]]}


def test_frames_are_built_once_per_format() -> None:
    """An event's frame is a valid unmasked text frame, combined and microsecond on request."""
    event = Event("btcusdt@trade", {"e": "trade", "E": 1, "T": 2, "t": 3})
    assert event.frame(0) == frame(b'{"e":"trade","E":1,"T":2,"t":3}')
    assert event.frame(0) is event.frame(0)
    both = event.frame(FMT_COMBINED | FMT_MICROS)
    assert both[2:] == b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1000,"T":2000,"t":3}}'
    long = Event("s@trade", {"x": "y" * 70_000}).frame(0)
    assert long[:2] == b"\x81\x7f" and int.from_bytes(long[2:10], "big") == 70_008


def test_stream_of_bare_payloads() -> None:
    """Bare payloads map to their stream names; partial depth cannot be placed."""
    assert stream_of({"e": "kline", "s": "BTCUSDT", "k": {"i": "1m"}}) == "btcusdt@kline_1m"
    assert stream_of({"u": 1, "s": "BNBUSDT", "b": "", "B": "", "a": "", "A": ""}) == (
        "bnbusdt@bookTicker")
    assert stream_of({"lastUpdateId": 1, "bids": [], "asks": []}) is None


def test_the_shift_grid_keeps_every_recorded_kline_interval() -> None:
    """Shifts are whole multiples of 1 s and of every recorded kline interval (their least
    common multiple); 1M candles have no fixed length and do not count."""
    assert grid_of(["btcusdt@aggTrade"]) == 1_000
    assert grid_of(["a@kline_1m", "b@kline_15m@+08:00", "c@aggTrade"]) == 900_000
    assert grid_of(["a@kline_3d", "b@kline_1w", "c@kline_1M"]) == 21 * 86_400_000


def test_the_shift_grid_leaves_out_candles_longer_than_a_pass() -> None:
    """Kline intervals longer than the pass span given do not count in the grid."""
    assert grid_of(["a@kline_1m", "b@kline_1d"], 92_000) == 60_000
    assert grid_of(["a@kline_1m", "b@kline_1d"], 86_400_000) == 86_400_000


@given(st.integers(0, 2 * 10**12), st.sampled_from(KLINE_INTERVALS[:-1]), st.integers(-50, 50))
def test_a_shift_on_the_grid_keeps_candles_on_their_grid(t: int, interval: str, k: int) -> None:
    """Moving a time by a multiple of the grid moves its candle by the same amount."""
    grid = grid_of([f"x@kline_{interval}"])
    lo, hi = bucket_bounds(t, interval)
    assert bucket_bounds(t + k * grid, interval) == (lo + k * grid, hi + k * grid)


def test_history_limit_keeps_the_newest_events() -> None:
    """A bounded history keeps (about) the newest events of each stream, in order."""
    from binance_streamer.exchange.history import History

    history = History(limit=100)
    for i in range(1000):
        history.add("s@trade", i)
    kept = history.events("s@trade")
    assert kept == list(range(1000 - len(kept), 1000)) and 100 <= len(kept) <= 110


@given(st.text(max_size=80), st.text(max_size=80))
def test_any_url_parses_or_is_refused(path: str, query: str) -> None:
    """Any request target either parses into valid streams or is refused with BadTarget."""
    refused: BadTarget | None = None
    try:
        combined, streams, _ = parse_target("/" + path, query, 1024)
    except BadTarget as exc:
        refused = exc
    if refused is not None:
        assert refused.code in (2, 4)
    else:
        assert all(is_valid_stream(s) for s in streams) and isinstance(combined, bool)
