"""The one retry policy: which failures to retry, after how long, and when to give up.

`classify` is the single place that decides, for any failure a recorder meets (a WebSocket
handshake status, a socket error, a REST status and Binance error code, a database error), whether
it is worth retrying. `ReconnectPolicy.after` turns that verdict into a delay (a server's
``Retry-After`` wins) or ``None`` (give up). Delays come from a plain generator of seconds, so
callers take it as a value and tests inject a deterministic one instead of patching ``sleep`` (as
python-websockets does). Nothing here sleeps or reads a clock: `ReconnectPolicy` is told the
monotonic time by its caller.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from enum import StrEnum

from binance_streamer.errors import (
    BadResponse,
    ConfigError,
    HandshakeRefused,
    IncompleteBackfill,
    RateLimited,
    RestError,
    StorageBusy,
    StreamerError,
    Unreachable,
)

__all__ = [
    "BAN_FALLBACK_S",
    "ReconnectPolicy",
    "Verdict",
    "classify",
    "classify_http_status",
    "full_jitter",
    "retry_after_of",
    "retry_after_s",
]


def full_jitter(
    base: float = 0.5,
    cap: float = 30.0,
    factor: float = 2.0,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield retry delays forever: attempt ``n`` waits ``uniform(0, min(cap, base * factor**n))``.

    This is AWS's "full jitter": spreading each delay over the whole range keeps many clients that
    lost their connections at once from reconnecting in step (a reconnect storm trips Binance's
    300 attempts / 5 min per IP, web-socket-streams.md "WebSocket Limits"). Delays never exceed
    ``cap``; the ceiling is grown step by step and stops at ``cap``, so a huge attempt number
    cannot overflow.

    Raises `ValueError` unless ``base >= 0``, ``cap >= 0`` and ``factor >= 1`` are finite.
    """
    if not all(math.isfinite(x) for x in (base, cap, factor)):
        raise ValueError("base, cap and factor must be finite")
    if base < 0 or cap < 0 or factor < 1:
        raise ValueError(f"need base >= 0, cap >= 0, factor >= 1; got {base}, {cap}, {factor}")
    return _full_jitter(base, cap, factor, rng if rng is not None else random.Random())


def _full_jitter(base: float, cap: float, factor: float, rng: random.Random) -> Iterator[float]:
    ceiling = min(cap, base)
    while True:
        yield min(rng.uniform(0.0, ceiling), cap)
        ceiling = min(cap, ceiling * factor)


class ReconnectPolicy:
    """How long to wait before each reconnect attempt of one connection.

    ``delays`` builds a fresh delay iterator (`full_jitter` by default). Each `next_delay` takes
    the next delay from it. A connection that stayed up for ``stable_after_s`` seconds or more
    counts as healthy: when it drops, the sequence starts again from its first (shortest) delay.
    A finite iterator repeats its last delay once exhausted (0.0 if it yielded nothing).
    """

    __slots__ = ("_attempts", "_connected_at", "_delays", "_factory", "_last", "_max_attempts",
                 "_stable_after")

    def __init__(
        self,
        delays: Callable[[], Iterator[float]] = full_jitter,
        stable_after_s: float = 60.0,
        max_attempts: int | None = None,
    ) -> None:
        if not stable_after_s >= 0:
            raise ValueError(f"stable_after_s must be >= 0, got {stable_after_s!r}")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        self._max_attempts = max_attempts
        self._factory = delays
        self._stable_after = stable_after_s
        self._delays = delays()
        self._last = 0.0
        self._attempts = 0
        self._connected_at: float | None = None

    @property
    def attempts(self) -> int:
        """Delays handed out since the sequence last started."""
        return self._attempts

    def next_delay(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt.

        A server's ``Retry-After`` (seconds, rest-api.md "LIMITS"), when given, is a floor:
        the delay is never shorter. A negative or non-finite ``retry_after`` is ignored.
        """
        self._last = next(self._delays, self._last)
        self._attempts += 1
        if retry_after is not None and math.isfinite(retry_after) and retry_after > self._last:
            return float(retry_after)
        return self._last

    def after(self, failure: BaseException) -> float | None:
        """Seconds to wait before retrying after ``failure``, or ``None`` to give up.

        Gives up at once on a failure `classify` calls fatal, and after ``max_attempts`` retries
        of retryable ones (never, when ``max_attempts`` is None). The failure's ``Retry-After``
        wins over a shorter delay.
        """
        if classify(failure) is Verdict.FATAL:
            return None
        if self._max_attempts is not None and self._attempts >= self._max_attempts:
            return None
        return self.next_delay(retry_after_of(failure))

    def connected(self, now: float) -> None:
        """Record that the connection came up at monotonic time ``now``."""
        self._connected_at = now

    def disconnected(self, now: float) -> None:
        """Record that the connection dropped at ``now``; reset the delays if it had been stable."""
        if self._connected_at is not None and now - self._connected_at >= self._stable_after:
            self.reset()
        self._connected_at = None

    def reset(self) -> None:
        """Start the delay sequence again from its first delay."""
        self._delays = self._factory()
        self._last = 0.0
        self._attempts = 0

    def __repr__(self) -> str:
        state = "up" if self._connected_at is not None else "down"
        return f"<ReconnectPolicy {state} attempts={self._attempts} last_delay={self._last:.3g}s>"


class Verdict(StrEnum):
    """What to do about a failure."""

    RETRY = "retry"
    FATAL = "fatal"


# A 418 without a usable Retry-After waits 2 minutes: Binance's bans "scale in duration for
# repeat offenders, from 2 minutes to 3 days" (rest-api.md "LIMITS").
BAN_FALLBACK_S = 120.0


def classify_http_status(status: int) -> Verdict:
    """Whether a REST error status is worth retrying (rest-api.md "LIMITS", "HTTP Return Codes").

    429 (rate limit), 418 (IP ban, retry after it ends), 403 (WAF), 408 and every 5XX (status
    unknown, not a failure) are retried; any other 4XX means our request is wrong and is fatal.
    Statuses below 400 are not errors: `ValueError`.
    """
    if status < 400:
        raise ValueError(f"HTTP {status} is not an error status")
    if status in (403, 408, 418, 429) or status >= 500:
        return Verdict.RETRY
    return Verdict.FATAL


def retry_after_s(status: int, header: str | None) -> float | None:
    """Seconds the server asked us to wait, from its ``Retry-After`` header (delta-seconds).

    Binance sends it with 429 and 418 (rest-api.md "LIMITS"). A 418 without a usable header
    falls back to `BAN_FALLBACK_S`. A missing, negative or unparsable header otherwise gives
    ``None`` (HTTP-date values are not parsed: that would need a clock).
    """
    seconds: float | None = None
    if header is not None:
        try:
            seconds = float(header.strip())
        except ValueError:
            seconds = None
        if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
            seconds = None
    if seconds is None and status == 418:
        return BAN_FALLBACK_S
    return seconds


def classify(failure: BaseException) -> Verdict:
    """Whether ``failure`` is worth retrying: the one place that decides.

    - REST and handshake statuses follow `classify_http_status` (429, 418, 403, 408 and 5XX are
      retried; any other 4XX means the request itself is wrong: a bad URL, path or parameter).
    - No connection at all (`Unreachable`, or a bare socket error or timeout), a backfill REST
      could not complete yet, and a locked database are retried.
    - Bad input, an answer of the wrong shape, a database that refuses writes, and anything
      unexpected are fatal.
    """
    if isinstance(failure, RestError | HandshakeRefused):
        if failure.status < 400:
            return Verdict.FATAL  # a redirect or odd success where an upgrade was due
        return classify_http_status(failure.status)
    if isinstance(failure, Unreachable | IncompleteBackfill | StorageBusy):
        return Verdict.RETRY
    if isinstance(failure, ConfigError | BadResponse | StreamerError):
        return Verdict.FATAL
    if isinstance(failure, OSError | TimeoutError):  # ConnectionError is an OSError
        return Verdict.RETRY
    return Verdict.FATAL


def retry_after_of(failure: BaseException) -> float | None:
    """The wait a server asked for with ``failure`` (HTTP 429/418 Retry-After), if any."""
    if isinstance(failure, RateLimited | HandshakeRefused):
        return failure.retry_after
    return None
