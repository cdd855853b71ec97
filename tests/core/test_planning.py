"""Planning: streams -> connections, combined URLs, SUBSCRIBE requests and their pacing."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binance_streamer.core.planning import (
    MAX_STREAMS_PER_CONNECTION,
    AttemptLimiter,
    ConnectionPlan,
    combined_url,
    plan_connections,
)

stream_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789@_", min_size=1, max_size=12)


def names(n: int) -> list[str]:
    return [f"sym{i}usdt@ticker" for i in range(n)]


# plan_connections


def test_250_streams_at_200_split_evenly() -> None:
    """250 streams with at most 200 per connection are split 125 + 125, not 200 + 50."""
    plans = plan_connections(names(250), 200)
    assert [len(p.streams) for p in plans] == [125, 125]


def test_sizes_differ_by_at_most_one() -> None:
    """401 streams at 200 per connection go on three connections of 134, 134 and 133."""
    assert [len(p.streams) for p in plan_connections(names(401), 200)] == [134, 134, 133]


def test_streams_fitting_one_connection_use_one() -> None:
    """Streams within the limit are planned on one connection holding all of them in order."""
    assert plan_connections(["a@trade", "b@trade"]) == [ConnectionPlan(0, ("a@trade", "b@trade"))]


def test_no_streams_no_connections() -> None:
    """No streams plan no connections."""
    assert plan_connections([]) == []


def test_duplicates_are_planned_once_in_first_seen_order() -> None:
    """A stream named twice is planned once, at its first position."""
    plans = plan_connections(["b@trade", "a@trade", "b@trade", "c@trade"], 2)
    assert [p.streams for p in plans] == [("b@trade", "a@trade"), ("c@trade",)]


def test_indexes_count_from_zero() -> None:
    """Connections are numbered 0, 1, 2, ... in plan order."""
    assert [p.index for p in plan_connections(names(5), 2)] == [0, 1, 2]


def test_binance_limit_of_1024_is_accepted() -> None:
    """max_streams may be Binance's per-connection limit of 1024 itself."""
    plans = plan_connections(names(2048), MAX_STREAMS_PER_CONNECTION)
    assert [len(p.streams) for p in plans] == [1024, 1024]


@pytest.mark.parametrize("bad", [0, -1, 1025, 10_000])
def test_max_streams_outside_binance_limit_is_rejected(bad: int) -> None:
    """max_streams outside 1..1024 raises ValueError naming the limit."""
    with pytest.raises(ValueError, match="1024"):
        plan_connections(names(3), bad)


@given(st.lists(stream_names, max_size=300), st.integers(1, 1024))
def test_every_stream_planned_exactly_once(streams: list[str], max_streams: int) -> None:
    """Every distinct stream appears in exactly one connection, in first-seen order."""
    plans = plan_connections(streams, max_streams)
    flat = [s for p in plans for s in p.streams]
    assert flat == list(dict.fromkeys(streams))


@given(st.lists(stream_names, unique=True, max_size=300), st.integers(1, 1024))
def test_plan_is_minimal_bounded_and_balanced(streams: list[str], max_streams: int) -> None:
    """Connections hold at most max_streams each, are as few as possible and differ by <= 1."""
    plans = plan_connections(streams, max_streams)
    sizes = [len(p.streams) for p in plans]
    assert all(0 < size <= max_streams for size in sizes)
    assert len(plans) == -(-len(streams) // max_streams)
    assert not sizes or max(sizes) - min(sizes) <= 1


def test_plan_repr_names_index_size_and_first_stream() -> None:
    """A plan's repr shows its index, stream count and first stream."""
    plan = ConnectionPlan(3, ("btcusdt@trade", "ethusdt@trade"))
    assert repr(plan) == "<ConnectionPlan #3 streams=2 first='btcusdt@trade'>"
    assert repr(ConnectionPlan(0, ())) == "<ConnectionPlan #0 streams=0>"


def test_plan_is_frozen() -> None:
    """A ConnectionPlan cannot be changed after it is made."""
    plan = ConnectionPlan(0, ("a@trade",))
    with pytest.raises(AttributeError):
        plan.index = 1  # type: ignore[misc]


# combined_url

BASE = "wss://stream.binance.com:9443"


@pytest.mark.parametrize(
    "base",
    [
        BASE,
        BASE + "/",
        BASE + "/ws",
        BASE + "/ws/",
        BASE + "/stream",
        BASE + "/stream/",
        BASE + "/ws/btcusdt@trade",
    ],
)
def test_any_base_spelling_gives_the_stream_path(base: str) -> None:
    """A base with or without a trailing slash, /ws or /stream gets exactly one /stream path."""
    url = combined_url(base, ["btcusdt@trade", "ethusdt@trade"])
    assert url == BASE + "/stream?streams=btcusdt@trade/ethusdt@trade"


def test_time_unit_is_appended() -> None:
    """A time unit is added as the timeUnit query parameter after the streams."""
    url = combined_url(BASE, ["btcusdt@trade"], "MICROSECOND")
    assert url == BASE + "/stream?streams=btcusdt@trade&timeUnit=MICROSECOND"


def test_unknown_time_unit_is_rejected() -> None:
    """A time unit Binance does not document raises ValueError."""
    with pytest.raises(ValueError, match="time_unit"):
        combined_url(BASE, ["btcusdt@trade"], "NANOSECOND")


def test_no_streams_gives_the_bare_stream_endpoint() -> None:
    """Without streams the URL is the bare /stream endpoint, ready for SUBSCRIBE."""
    assert combined_url("ws://127.0.0.1:8765/", []) == "ws://127.0.0.1:8765/stream"


def test_path_prefix_is_kept() -> None:
    """A proxy path in front of /ws is kept."""
    url = combined_url("ws://localhost:80/proxy/binance/ws", ["a@trade"])
    assert url == "ws://localhost:80/proxy/binance/stream?streams=a@trade"


def test_other_query_parameters_are_kept_and_streams_replaced() -> None:
    """The base's own query parameters are kept; its streams and timeUnit are replaced."""
    url = combined_url(BASE + "/stream?streams=x@trade&timeUnit=millisecond&k=v", ["a@trade"])
    assert url == BASE + "/stream?streams=a@trade&k=v"


def test_special_characters_survive_query_decoding() -> None:
    """Market-wide and UTC+8 kline names decode back exactly from the URL's query."""
    streams = ["!miniTicker@arr", "btcusdt@kline_1m@+08:00"]
    url = combined_url(BASE, streams)
    assert parse_qs(urlsplit(url).query)["streams"] == ["/".join(streams)]


def test_duplicate_streams_appear_once_in_the_url() -> None:
    """A stream named twice appears once in the URL."""
    assert combined_url(BASE, ["a@trade", "a@trade"]) == BASE + "/stream?streams=a@trade"


# AttemptLimiter


def test_default_allows_270_attempts_per_five_minutes() -> None:
    """The default limiter allows 90% of Binance's 300 attempts per 300 s."""
    limiter = AttemptLimiter()
    assert limiter.allowed == 270


def test_attempts_within_the_allowance_start_at_once() -> None:
    """Attempts up to the allowance start with no wait."""
    limiter = AttemptLimiter(limit=3, window_s=10.0, headroom=1.0)
    for t in (0.0, 1.0, 2.0):
        assert limiter.delay(t) == 0.0
        limiter.record(t)


def test_attempt_over_the_allowance_waits_for_the_oldest_to_leave_the_window() -> None:
    """With the window full, the next attempt waits until the oldest attempt is window_s old."""
    limiter = AttemptLimiter(limit=3, window_s=10.0, headroom=1.0)
    for t in (0.0, 1.0, 2.0):
        limiter.record(t)
    assert limiter.delay(4.0) == pytest.approx(6.0)
    assert limiter.delay(10.0) == 0.0
    limiter.record(10.0)
    assert limiter.delay(10.0) == pytest.approx(1.0)


def test_headroom_never_allows_zero_attempts() -> None:
    """A tiny limit with headroom still allows one attempt per window."""
    assert AttemptLimiter(limit=1, headroom=0.5).allowed == 1


def test_limiter_delay_is_bounded_when_time_goes_back() -> None:
    """A clock going backwards never makes the limiter wait more than one window."""
    limiter = AttemptLimiter(limit=1, window_s=10.0, headroom=1.0)
    limiter.record(100.0)
    assert limiter.delay(0.0) == 10.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"limit": 0}, "limit"),
        ({"window_s": 0.0}, "window_s"),
        ({"window_s": float("inf")}, "window_s"),
        ({"headroom": 0.0}, "headroom"),
        ({"headroom": 1.5}, "headroom"),
    ],
)
def test_limiter_arguments_are_validated(kwargs: dict[str, float], match: str) -> None:
    """A limit below 1, a non-positive window or a headroom outside (0, 1] raises ValueError."""
    with pytest.raises(ValueError, match=match):
        AttemptLimiter(**kwargs)  # type: ignore[arg-type]


@given(st.lists(st.floats(0.0, 30.0), min_size=1, max_size=200))
def test_limited_attempts_never_exceed_the_allowance(gaps: list[float]) -> None:
    """Attempts that honour the limiter never exceed the allowance in any sliding window."""
    limiter = AttemptLimiter(limit=10, window_s=60.0, headroom=0.9)
    now, times = 0.0, []
    for gap in gaps:
        now += gap
        now += limiter.delay(now)
        limiter.record(now)
        times.append(now)
    for start in times:
        # A float rounding tolerance: an attempt exactly at the window's end is outside it.
        assert sum(start <= t < start + 60.0 - 1e-9 for t in times) <= 9


def test_limiter_repr_shows_allowance_and_attempts() -> None:
    """The limiter's repr shows its allowance, window and attempts so far."""
    limiter = AttemptLimiter()
    limiter.record(0.0)
    assert repr(limiter) == "<AttemptLimiter 270/300s attempts=1 recent=1>"
