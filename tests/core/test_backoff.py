"""Back-off: full-jitter delays, the reconnect policy and HTTP error classification."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binance_streamer.core.backoff import (
    BAN_FALLBACK_S,
    ReconnectPolicy,
    Verdict,
    classify_http_status,
    full_jitter,
    retry_after_s,
)


class MaxRandom(random.Random):
    """A Random whose uniform(a, b) is always b: the ceiling of each jittered delay."""

    def uniform(self, a: float, b: float) -> float:
        return b


def counting() -> Iterator[float]:
    """Delays 1, 2, 3, ... so tests can see where the sequence is."""
    return (float(n) for n in itertools.count(1))


# full_jitter


def test_ceilings_double_from_base_up_to_cap() -> None:
    """Attempt n's ceiling is min(cap, base * factor**n): 0.5, 1, 2, 4, ... then the cap."""
    delays = full_jitter(base=0.5, cap=5.0, factor=2.0, rng=MaxRandom())
    assert list(itertools.islice(delays, 6)) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


@given(st.integers(0, 2**32))
def test_delays_lie_within_zero_and_the_ceiling(seed: int) -> None:
    """Each delay is drawn from [0, min(cap, base * factor**n)]."""
    delays = full_jitter(base=0.5, cap=30.0, factor=2.0, rng=random.Random(seed))
    for n, delay in enumerate(itertools.islice(delays, 20)):
        assert 0.0 <= delay <= min(30.0, 0.5 * 2.0**n)


def test_same_seed_gives_same_delays() -> None:
    """Two generators with equally seeded generators yield the same delays."""
    a = full_jitter(rng=random.Random(7))
    b = full_jitter(rng=random.Random(7))
    assert list(itertools.islice(a, 10)) == list(itertools.islice(b, 10))


def test_delays_are_jittered() -> None:
    """Delays at the cap are spread over the range, not all equal."""
    delays = list(itertools.islice(full_jitter(cap=1.0, rng=random.Random(1)), 50))[10:]
    assert len(set(delays)) > 30


def test_huge_attempt_numbers_do_not_overflow() -> None:
    """Ten thousand attempts with a large factor never overflow and never pass the cap."""
    delays = full_jitter(base=1.0, cap=30.0, factor=1000.0, rng=MaxRandom())
    assert list(itertools.islice(delays, 10_000))[-1] == 30.0


def test_base_above_cap_is_capped() -> None:
    """A base larger than the cap still never yields more than the cap."""
    assert next(full_jitter(base=60.0, cap=30.0, rng=MaxRandom())) == 30.0


def test_default_generator_needs_no_arguments() -> None:
    """full_jitter() with defaults yields delays within its 30 s cap."""
    assert all(0.0 <= d <= 30.0 for d in itertools.islice(full_jitter(), 100))


@pytest.mark.parametrize(
    "kwargs",
    [{"base": -1.0}, {"cap": -1.0}, {"factor": 0.5}, {"cap": float("inf")}, {"base": float("nan")}],
)
def test_invalid_parameters_are_rejected_at_once(kwargs: dict[str, float]) -> None:
    """A negative base or cap, a factor below 1 or a non-finite value raises ValueError on call."""
    with pytest.raises(ValueError, match=r"base|cap|factor|finite"):
        full_jitter(**kwargs)  # type: ignore[arg-type]


# ReconnectPolicy


def test_delays_come_from_the_injected_generator() -> None:
    """next_delay hands out the injected generator's delays in order."""
    policy = ReconnectPolicy(counting)
    assert [policy.next_delay() for _ in range(3)] == [1.0, 2.0, 3.0]
    assert policy.attempts == 3


def test_retry_after_is_a_floor() -> None:
    """A server's Retry-After longer than the back-off delay replaces it."""
    policy = ReconnectPolicy(counting)
    assert policy.next_delay(retry_after=120.0) == 120.0


def test_retry_after_shorter_than_the_delay_is_ignored() -> None:
    """A Retry-After shorter than the back-off delay leaves the delay unchanged."""
    policy = ReconnectPolicy(counting)
    policy.next_delay()
    assert policy.next_delay(retry_after=0.5) == 2.0


@pytest.mark.parametrize("bad", [-5.0, float("nan"), float("inf")])
def test_unusable_retry_after_is_ignored(bad: float) -> None:
    """A negative or non-finite Retry-After does not change the delay."""
    assert ReconnectPolicy(counting).next_delay(retry_after=bad) == 1.0


def test_retry_after_still_advances_the_sequence() -> None:
    """A delay replaced by Retry-After still counts as an attempt of the sequence."""
    policy = ReconnectPolicy(counting)
    policy.next_delay(retry_after=60.0)
    assert policy.next_delay() == 2.0


def test_stable_connection_resets_the_sequence() -> None:
    """A connection that stayed up stable_after_s or longer starts the delays again."""
    policy = ReconnectPolicy(counting, stable_after_s=60.0)
    policy.next_delay()
    policy.next_delay()
    policy.connected(100.0)
    policy.disconnected(160.0)
    assert policy.next_delay() == 1.0
    assert policy.attempts == 1


def test_short_lived_connection_keeps_backing_off() -> None:
    """A connection that dropped before stable_after_s keeps the sequence going."""
    policy = ReconnectPolicy(counting, stable_after_s=60.0)
    policy.next_delay()
    policy.connected(100.0)
    policy.disconnected(159.9)
    assert policy.next_delay() == 2.0


def test_disconnect_without_connect_keeps_the_sequence() -> None:
    """A failed attempt that never connected does not reset the delays."""
    policy = ReconnectPolicy(counting, stable_after_s=0.0)
    policy.next_delay()
    policy.disconnected(10.0)
    assert policy.next_delay() == 2.0


def test_explicit_reset_starts_again() -> None:
    """reset() starts the delay sequence from its first delay."""
    policy = ReconnectPolicy(counting)
    policy.next_delay()
    policy.reset()
    assert policy.next_delay() == 1.0


def test_exhausted_generator_repeats_its_last_delay() -> None:
    """A finite delay generator repeats its last delay once exhausted."""
    policy = ReconnectPolicy(lambda: iter([0.1, 5.0]))
    assert [policy.next_delay() for _ in range(4)] == [0.1, 5.0, 5.0, 5.0]


def test_empty_generator_gives_zero() -> None:
    """A delay generator that yields nothing gives no wait."""
    assert ReconnectPolicy(lambda: iter([])).next_delay() == 0.0


def test_default_policy_uses_full_jitter_within_its_cap() -> None:
    """The default policy's delays stay within full_jitter's 30 s cap."""
    policy = ReconnectPolicy()
    assert all(0.0 <= policy.next_delay() <= 30.0 for _ in range(50))


def test_negative_stable_period_is_rejected() -> None:
    """A negative stable_after_s raises ValueError."""
    with pytest.raises(ValueError, match="stable_after_s"):
        ReconnectPolicy(stable_after_s=-1.0)


def test_policy_repr_shows_state_and_attempts() -> None:
    """The policy's repr shows whether it is up, the attempts and the last delay."""
    policy = ReconnectPolicy(counting)
    policy.next_delay()
    policy.connected(0.0)
    assert repr(policy) == "<ReconnectPolicy up attempts=1 last_delay=1s>"


# HTTP classification


@pytest.mark.parametrize("status", [403, 408, 418, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    """Rate limits, bans, WAF blocks, timeouts and 5XX are retried."""
    assert classify_http_status(status) is Verdict.RETRY


@pytest.mark.parametrize("status", [400, 401, 404, 405, 409, 413, 422])
def test_request_errors_are_fatal(status: int) -> None:
    """Other 4XX statuses mean our request is wrong and are fatal."""
    assert classify_http_status(status) is Verdict.FATAL


def test_success_is_not_classified() -> None:
    """A status below 400 is not an error and raises ValueError."""
    with pytest.raises(ValueError, match="200"):
        classify_http_status(200)


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (429, "7", 7.0),
        (429, " 12 ", 12.0),
        (418, "3600", 3600.0),
        (418, None, BAN_FALLBACK_S),
        (418, "garbage", BAN_FALLBACK_S),
        (429, None, None),
        (429, "-3", None),
        (429, "nan", None),
        (429, "Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after_header_is_parsed(status: int, header: str | None, expected: float) -> None:
    """Retry-After seconds are read as given; a 418 without them waits the 2-minute fallback."""
    assert retry_after_s(status, header) == expected
