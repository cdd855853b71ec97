"""Streams -> connections, combined-stream URLs, and pacing of connection attempts.

Streams are named in the connection URL, so the recorder sends no SUBSCRIBE messages: the only
messages it sends are pongs, far under Binance's 5 per second, even when every connection
reconnects at once.

Everything here is pure: callers pass the current monotonic time (``now``, float seconds) and get
back values or delays; nothing sleeps, reads a clock or touches the network.

Binance limits this module keeps (web-socket-streams.md, "WebSocket Limits"):

* at most 1024 streams per connection (`plan_connections`);
* at most 300 connection attempts every 5 minutes per IP, shared by every connection
  (`AttemptLimiter`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

__all__ = [
    "MAX_STREAMS_PER_CONNECTION",
    "TIME_UNITS",
    "AttemptLimiter",
    "ConnectionPlan",
    "combined_url",
    "plan_connections",
]

# web-socket-streams.md "WebSocket Limits": "A single connection can listen to a maximum of 1024
# streams".
MAX_STREAMS_PER_CONNECTION = 1024

# web-socket-streams.md "General WSS information" (timeUnit): both spellings are accepted.
TIME_UNITS: frozenset[str] = frozenset({"MICROSECOND", "microsecond", "MILLISECOND", "millisecond"})

# Characters left as they are in the ``streams=`` query value. ``+`` (from ``@+08:00`` kline
# streams) is percent-encoded because a form decoder would read it as a space; Binance accepts
# URL-encoded URLs since CHANGELOG.md 2025-12-02.
_STREAM_SAFE = "@/!:_-."


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """The streams one combined connection carries; ``index`` numbers connections from 0."""

    index: int
    streams: tuple[str, ...]

    def __repr__(self) -> str:
        first = f" first={self.streams[0]!r}" if self.streams else ""
        return f"<ConnectionPlan #{self.index} streams={len(self.streams)}{first}>"


def _check_limit(name: str, value: int) -> None:
    if not 1 <= value <= MAX_STREAMS_PER_CONNECTION:
        raise ValueError(
            f"{name} must be in 1..{MAX_STREAMS_PER_CONNECTION} (Binance's per-connection stream "
            f"limit), got {value!r}"
        )


def plan_connections(streams: Sequence[str], max_streams: int = 200) -> list[ConnectionPlan]:
    """Split ``streams`` over as few connections as ``max_streams`` allows, evenly.

    Every distinct stream is planned exactly once, in its first-seen order; duplicates are dropped.
    Connection sizes differ by at most one (250 streams at 200 -> 125 + 125, not 200 + 50), so a
    lost connection costs as little as possible. No streams -> no connections.

    Raises `ValueError` unless ``1 <= max_streams <= 1024``.
    """
    _check_limit("max_streams", max_streams)
    unique = list(dict.fromkeys(streams))
    if not unique:
        return []
    count = math.ceil(len(unique) / max_streams)
    size, extra = divmod(len(unique), count)
    plans: list[ConnectionPlan] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        plans.append(ConnectionPlan(index, tuple(unique[start:end])))
        start = end
    return plans


def combined_url(ws_base: str, streams: Sequence[str], time_unit: str | None = None) -> str:
    """The combined-stream URL ``<base>/stream?streams=a/b/c[&timeUnit=...]``.

    ``ws_base`` may end with or without ``/`` and may already name a ``/ws`` or ``/stream`` path
    (optionally with a raw stream after ``/ws/``); that path is replaced by ``/stream``, since only
    the combined form wraps events with their stream name (web-socket-streams.md "General WSS
    information": ``{"stream":"<streamName>","data":<rawPayload>}``). Other query
    parameters of ``ws_base`` are kept; its ``streams`` and ``timeUnit`` are replaced. Without
    streams the URL is the bare ``/stream`` endpoint, ready for SUBSCRIBE.

    Raises `ValueError` for a ``time_unit`` Binance does not know.
    """
    if time_unit is not None and time_unit not in TIME_UNITS:
        raise ValueError(f"time_unit must be one of {sorted(TIME_UNITS)}, got {time_unit!r}")
    parts = urlsplit(ws_base)
    path = _strip_stream_path(parts.path)
    kept = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key not in ("streams", "timeUnit")
    ]
    query: list[str] = []
    unique = list(dict.fromkeys(streams))
    if unique:
        query.append("streams=" + "/".join(quote(s, safe=_STREAM_SAFE) for s in unique))
    if kept:
        query.append(urlencode(kept))
    if time_unit is not None:
        query.append(f"timeUnit={time_unit}")
    return urlunsplit((parts.scheme, parts.netloc, path + "/stream", "&".join(query), ""))


def _strip_stream_path(path: str) -> str:
    """``path`` without a trailing ``/``, ``/ws``, ``/ws/<raw stream>`` or ``/stream``."""
    segments = path.rstrip("/").split("/")
    for i in range(len(segments) - 1, -1, -1):
        if segments[i] in ("ws", "stream"):
            return "/".join(segments[:i])
    return "/".join(segments)


class AttemptLimiter:
    """Keeps connection attempts under Binance's 300 per 5 minutes per IP.

    One limiter is shared by every connection of the process (the limit is per IP,
    web-socket-streams.md "WebSocket Limits"). It allows ``max(1, floor(limit * headroom))``
    attempts in any sliding window of ``window_s`` seconds (270 by default), leaving the rest
    for other clients
    on the same IP and for clock differences.
    """

    __slots__ = ("_allowed", "_attempts", "_total", "_window")

    def __init__(self, limit: int = 300, window_s: float = 300.0, headroom: float = 0.9) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a positive finite number, got {window_s!r}")
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom!r}")
        self._allowed = max(1, math.floor(limit * headroom))
        self._window = window_s
        # Only the latest `allowed` attempts can decide the next delay.
        self._attempts: deque[float] = deque(maxlen=self._allowed)
        self._total = 0

    @property
    def allowed(self) -> int:
        """Attempts allowed in any one window."""
        return self._allowed

    def delay(self, now: float) -> float:
        """Seconds to wait from ``now`` before the next connection attempt may start.

        Between 0 and ``window_s`` inclusive, even if ``now`` goes backwards.
        """
        if len(self._attempts) < self._allowed:
            return 0.0
        return min(max(self._attempts[0] + self._window - now, 0.0), self._window)

    def record(self, now: float) -> None:
        """Record one connection attempt started at ``now``."""
        self._attempts.append(now)
        self._total += 1

    def __repr__(self) -> str:
        return (
            f"<AttemptLimiter {self._allowed}/{self._window:g}s attempts={self._total} "
            f"recent={len(self._attempts)}>"
        )
