"""The one retry decision: classify() verdicts and ReconnectPolicy.after() delays or give-ups."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from binance_streamer.core.backoff import ReconnectPolicy, Verdict, classify, retry_after_of
from binance_streamer.errors import (
    BadResponse,
    ConfigError,
    HandshakeRefused,
    IncompleteBackfill,
    InvalidStreamName,
    RateLimited,
    RestError,
    StorageBusy,
    StorageFatal,
    StreamerError,
    Unreachable,
)


def ones() -> Iterator[float]:
    """Delays of one second, forever."""
    return itertools.repeat(1.0)


@pytest.mark.parametrize("failure", [
    RestError(503, None, "busy"),
    RestError(429, None, "slow down"),
    RateLimited(418, 120.0),
    HandshakeRefused("wss://x", 502, "Bad Gateway"),
    Unreachable("https://x", "connection refused"),
    IncompleteBackfill("btcusdt@trade", 1, 2),
    StorageBusy("database is locked"),
    ConnectionResetError("reset by peer"),
    TimeoutError(),
])
def test_transient_failures_are_retried(failure: BaseException) -> None:
    """Server-side statuses, no connection, a lagging REST and a locked database are retried."""
    assert classify(failure) is Verdict.RETRY


@pytest.mark.parametrize("failure", [
    RestError(400, -1100, "Illegal characters"),
    RestError(301, None, "moved"),
    HandshakeRefused("wss://x", 404, "Not Found"),
    HandshakeRefused("wss://x", 200, "OK"),
    BadResponse("not JSON"),
    InvalidStreamName("x"),
    ConfigError("bad option"),
    StorageFatal("disk full"),
    StreamerError("anything else of ours"),
    ValueError("a bug"),
])
def test_other_failures_are_fatal(failure: BaseException) -> None:
    """Wrong requests, odd successes, wrong shapes, bad input, full disks and bugs are fatal."""
    assert classify(failure) is Verdict.FATAL


def test_retry_after_comes_from_rate_limits_and_refused_handshakes_only() -> None:
    """A 429/418's and a refused handshake's Retry-After are read; other failures have none."""
    assert retry_after_of(RateLimited(429, 7.0)) == 7.0
    assert retry_after_of(HandshakeRefused("wss://x", 429, "Too Many", retry_after=3.0)) == 3.0
    assert retry_after_of(HandshakeRefused("wss://x", 503, "Unavailable")) is None
    assert retry_after_of(Unreachable("https://x", "refused")) is None


def test_after_gives_a_delay_for_retryable_failures_and_none_for_fatal_ones() -> None:
    """after() returns the next delay for a retryable failure and None at once for a fatal one."""
    policy = ReconnectPolicy(ones)
    assert policy.after(Unreachable("https://x", "refused")) == 1.0
    assert policy.after(BadResponse("not JSON")) is None
    assert policy.attempts == 1


def test_after_waits_at_least_the_retry_after() -> None:
    """A rate limit's Retry-After longer than the delay is the delay."""
    assert ReconnectPolicy(ones).after(RateLimited(429, 30.0)) == 30.0


def test_after_gives_up_after_max_attempts_retries() -> None:
    """With max_attempts=2, two retries get delays and the third failure gives up."""
    policy = ReconnectPolicy(ones, max_attempts=2)
    failure = RestError(503, None, "busy")
    assert [policy.after(failure) for _ in range(3)] == [1.0, 1.0, None]
    policy.reset()
    assert policy.after(failure) == 1.0


def test_max_attempts_below_one_is_rejected() -> None:
    """A policy allowing no retry at all is refused: ValueError."""
    with pytest.raises(ValueError, match="max_attempts"):
        ReconnectPolicy(ones, max_attempts=0)
