"""One model of a running recording's state, read by the dashboard, the plain status line, the
JSON status lines and the Prometheus metrics alike.

`Monitor.sample` turns a `Recorder` or `RecorderFleet` into a frozen `RecordingState`: per
connection (state, streams, msgs/s, reconnects, last message age), per stream kind (msgs/s, lag
p50/p99), the writer (queue depth, batches/s, commit latency p99, rows stored, database size),
gaps and the REST budget. Rates and the recent lag and commit-latency quantiles are taken over a
rolling window of the samples of the last ``window_s`` seconds, so any number of readers (a
dashboard each second, a Prometheus scrape every 15 s) may sample without shortening each
other's windows. Sampling reads counters the recorder keeps anyway: it adds nothing per message.

`health` turns a state into a verdict: unhealthy when a connection has been down, or open but
silent, or a stream kind silent, for longer than a bound.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from binance_streamer.core.lag import LagHistogram
from binance_streamer.core.rest_budget import RestBudget
from binance_streamer.recorder import RecorderConfig, RecorderStats

__all__ = ["ConnectionState", "DatabaseSize", "GapState", "Health", "KindState", "Monitor",
           "RecordingState", "RestState", "WriterState", "health"]

log = logging.getLogger(__name__)


class _Connection(Protocol):
    """What the monitor reads of a connection (`StreamConnection` or a fleet's view of one)."""

    @property
    def index(self) -> int: ...
    @property
    def is_open(self) -> bool: ...
    @property
    def frames(self) -> int: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def last_frame(self) -> float: ...
    @property
    def closed_since(self) -> float | None: ...
    @property
    def stream_count(self) -> int: ...


class Recording(Protocol):
    """What the monitor reads of a `Recorder` or a `RecorderFleet`."""

    config: RecorderConfig

    @property
    def stats(self) -> RecorderStats: ...
    @property
    def connections(self) -> Sequence[Any]: ...
    @property
    def writer_pending(self) -> int: ...
    @property
    def writer_busy_retries(self) -> int: ...
    def rest_budget(self) -> RestBudget | None: ...


# -- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """One WebSocket connection. ``state`` is ``open``, ``connecting`` (never connected yet) or
    ``down`` (reconnecting); ages are seconds (None: no message yet / connected)."""

    index: int
    state: str
    streams: int
    msgs_per_s: float
    frames: int
    reconnects: int
    last_message_age_s: float | None
    down_for_s: float | None


@dataclass(frozen=True, slots=True)
class KindState:
    """One stream kind (``trade``, ``depth``...): messages, their rate, and the lag (receive
    time minus event time, ms) over the window; ``lag_count`` 0 when none was measured."""

    kind: str
    messages: int
    msgs_per_s: float
    lag_p50_ms: int
    lag_p99_ms: int
    lag_count: int
    # Since the first sample that saw its count unchanged since the last growth: a lower bound
    # of the true age (resolution: how often the state is sampled). None: nothing received yet.
    last_message_age_s: float | None


@dataclass(frozen=True, slots=True)
class WriterState:
    """The writer: queue depth (batches waiting), batches committed and their rate, commit
    latency p99 (first receive to commit, ms) over the window, rows stored, database size."""

    queue_batches: int
    batches: int
    batches_per_s: float
    commit_p99_ms: int
    rows_stored: int
    stored: Mapping[str, int]
    rows_per_s: float
    paused: int
    busy_retries: int  # writes retried on a database locked by another writer
    db_size_bytes: int | None  # None: not known (yet)


@dataclass(frozen=True, slots=True)
class GapState:
    """Gaps detected (earlier runs' unfilled ones included), filled, still open; silences of
    streams without ids; frames quarantined; rows fetched over REST."""

    detected: int
    filled: int
    open: int
    stale: int
    quarantined: int
    rows_backfilled: int


@dataclass(frozen=True, slots=True)
class RestState:
    """The REST budget: weight used this minute of the limit, requests in flight, jobs queued
    per lane, Retry-After pause left, 429/418 answers."""

    used_weight: int
    weight_limit: int
    in_flight: int
    queued: Mapping[str, int]
    paused_s: float
    rate_limited: int
    summary: str


@dataclass(frozen=True, slots=True)
class RecordingState:
    """A running recording at one moment (`Monitor.sample`)."""

    uptime_s: float
    window_s: float  # the span the rates and recent quantiles cover
    connections: tuple[ConnectionState, ...]
    kinds: tuple[KindState, ...]
    writer: WriterState
    gaps: GapState
    rest: RestState | None
    messages: int
    lag_run: Mapping[str, LagHistogram] = field(repr=False)  # per kind, the whole run
    commit_run: LagHistogram = field(repr=False)  # commit latency (ms), the whole run

    @property
    def connections_open(self) -> int:
        """Connections connected now."""
        return sum(c.state == "open" for c in self.connections)

    @property
    def reconnects(self) -> int:
        """Reconnects of every connection so far."""
        return sum(c.reconnects for c in self.connections)

    def to_json(self) -> dict[str, Any]:
        """The state as JSON-ready values (``--log-format json``)."""
        return {
            "uptime_s": round(self.uptime_s, 3), "window_s": round(self.window_s, 3),
            "messages": self.messages,
            "connections": {"open": self.connections_open, "total": len(self.connections),
                            "reconnects": self.reconnects,
                            "list": [_plain(c) for c in self.connections]},
            "kinds": {k.kind: {n: v for n, v in _plain(k).items() if n != "kind"}
                      for k in self.kinds},
            "writer": _plain(self.writer), "gaps": _plain(self.gaps),
            "rest": None if self.rest is None else _plain(self.rest),
        }


def _plain(obj: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in obj.__slots__:  # type: ignore[attr-defined]
        value = getattr(obj, name)
        if isinstance(value, float):
            value = round(value, 3)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[name] = value
    return out


@dataclass(frozen=True, slots=True)
class Health:
    """The verdict of `health`: ``ok``, and why not."""

    ok: bool
    reasons: tuple[str, ...]


def health(state: RecordingState, stale_after_s: float) -> Health:
    """Unhealthy when a connection has been down (or never connected) for more than
    ``stale_after_s``, or is open but has received nothing for that long, or when a stream kind
    that was flowing has sent nothing for that long (over all its symbols)."""
    reasons = []
    for conn in state.connections:
        if conn.down_for_s is not None and conn.down_for_s > stale_after_s:
            reasons.append(f"connection #{conn.index} {conn.state} for {conn.down_for_s:.0f}s")
        elif (conn.state == "open" and conn.last_message_age_s is not None
              and conn.last_message_age_s > stale_after_s):
            reasons.append(f"connection #{conn.index} silent for "
                           f"{conn.last_message_age_s:.0f}s")
    for kind in state.kinds:
        if kind.last_message_age_s is not None and kind.last_message_age_s > stale_after_s:
            reasons.append(f"stream kind {kind.kind} silent for {kind.last_message_age_s:.0f}s")
    return Health(not reasons, tuple(reasons))


# -- sampling ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Sample:
    at: float
    messages: dict[str, int]
    frames: dict[int, int]
    batches: int
    rows: int
    lag: dict[str, LagHistogram]  # taken at this sample (the window since the previous one)
    commit: dict[int, int]  # the run's commit-latency counts at this sample


class Monitor:
    """Samples one recording; see the module docstring. Call from the recording's event loop
    (sampling takes the lag tracker's window)."""

    def __init__(self, recording: Recording, window_s: float = 10.0,
                 db_size: DatabaseSize | None = None) -> None:
        self.recording = recording
        self.window_s = window_s
        self.db_size = db_size if db_size is not None else DatabaseSize(
            str(recording.config.database))
        now = time.monotonic()
        self._samples: deque[_Sample] = deque([_Sample(now, {}, {}, 0, 0, {}, {})])
        self._kind_seen: dict[str, tuple[int, float]] = {}  # kind -> (count, when it grew)

    def __repr__(self) -> str:
        return f"<Monitor samples={len(self._samples)} window={self.window_s}s>"

    def sample(self, now: float | None = None) -> RecordingState:
        """The recording's state now, rates and recent quantiles over the rolling window."""
        now = time.monotonic() if now is None else now
        rec = self.recording
        stats = rec.stats
        conns: Sequence[_Connection] = rec.connections
        lag_kinds, _ = stats.lag.take_groups()
        current = _Sample(now, dict(stats.messages), {c.index: c.frames for c in conns},
                          stats.batches, stats.total_stored, lag_kinds,
                          dict(stats.commit_ms.counts))
        base = self._advance(current)
        span = max(now - base.at, 1e-9)
        return RecordingState(
            uptime_s=now - stats.started, window_s=now - base.at,
            connections=tuple(_connection(c, base, span, now) for c in conns),
            kinds=self._kinds(stats, base, span, now),
            writer=WriterState(
                queue_batches=rec.writer_pending, batches=stats.batches,
                batches_per_s=(stats.batches - base.batches) / span,
                commit_p99_ms=_difference(current.commit, base.commit).quantile(0.99),
                rows_stored=stats.total_stored, stored=dict(stats.stored),
                rows_per_s=(stats.total_stored - base.rows) / span, paused=stats.paused,
                busy_retries=rec.writer_busy_retries, db_size_bytes=self.db_size.get(now)),
            gaps=GapState(stats.gaps, stats.gaps_filled, stats.gaps_open, stats.stale,
                          stats.quarantined, stats.rows_backfilled),
            rest=_rest(rec.rest_budget()), messages=stats.total_messages,
            lag_run=dict(stats.lag.run_kinds), commit_run=stats.commit_ms)

    def _advance(self, current: _Sample) -> _Sample:
        """Add ``current``; drop samples older than the window (keeping one as the base); the
        base the rates are measured from."""
        samples = self._samples
        samples.append(current)
        while len(samples) > 2 and samples[1].at <= current.at - self.window_s:
            samples.popleft()
        return samples[0]

    def _kinds(self, stats: RecorderStats, base: _Sample, span: float, now: float
               ) -> tuple[KindState, ...]:
        recent: dict[str, LagHistogram] = {}
        for sample in list(self._samples)[1:]:
            for kind, hist in sample.lag.items():
                recent.setdefault(kind, LagHistogram()).merge(hist)
        out = []
        for kind, count in sorted(stats.messages.items()):
            seen, when = self._kind_seen.get(kind, (0, now))
            if count != seen:
                self._kind_seen[kind] = (count, now)
                when = now
            lag = recent.get(kind)
            summary = lag.summary() if lag is not None else None
            out.append(KindState(
                kind, count, (count - base.messages.get(kind, 0)) / span,
                0 if summary is None else summary.p50_ms,
                0 if summary is None else summary.p99_ms,
                0 if summary is None else summary.count, now - when))
        return tuple(out)


def _connection(conn: _Connection, base: _Sample, span: float, now: float) -> ConnectionState:
    if conn.is_open:
        state, down = "open", None
    else:
        state = "down" if conn.reconnects or conn.frames else "connecting"
        down = None if conn.closed_since is None else max(0.0, now - conn.closed_since)
    return ConnectionState(
        conn.index, state, conn.stream_count,
        (conn.frames - base.frames.get(conn.index, 0)) / span, conn.frames, conn.reconnects,
        max(0.0, now - conn.last_frame) if conn.frames else None, down)


def _difference(now: dict[int, int], then: dict[int, int]) -> LagHistogram:
    hist = LagHistogram()
    hist.counts = {k: n - then.get(k, 0) for k, n in now.items() if n > then.get(k, 0)}
    return hist


def _rest(budget: RestBudget | None) -> RestState | None:
    if budget is None:
        return None
    return RestState(budget.used_weight, budget.weight_limit, budget.in_flight,
                     {lane.name.lower(): n for lane, n in budget.queued.items()},
                     budget.paused_s, budget.rate_limited, budget.summary())


# -- the database's size -------------------------------------------------------------------------


class DatabaseSize:
    """The database's size in bytes, read at most every ``every_s`` seconds: a SQLite file plus
    its WAL by ``stat``, PostgreSQL's ``pg_database_size`` in a thread of its own (never on the
    event loop). `get` returns the last value read (None until the first read ends)."""

    def __init__(self, database: str, every_s: float = 5.0) -> None:
        self.database = database
        self.every_s = every_s
        self._value: int | None = None
        self._due = 0.0
        self._reading: threading.Thread | None = None
        self._postgres = database.startswith(("postgresql://", "postgres://"))

    def __repr__(self) -> str:
        return f"<DatabaseSize {self._value} bytes>"

    def get(self, now: float) -> int | None:
        """The latest size known; starts a new read when the last is ``every_s`` old."""
        if now >= self._due and (self._reading is None or not self._reading.is_alive()):
            self._due = now + self.every_s
            if self._postgres:
                self._reading = threading.Thread(target=self._read_postgres, daemon=True,
                                                 name="db-size")
                self._reading.start()
            else:
                self._value = sqlite_size(self.database)
        return self._value

    def join(self, timeout: float | None = None) -> None:
        """Wait for a read in progress to end (tests, shutdown)."""
        if self._reading is not None:
            self._reading.join(timeout)

    def _read_postgres(self) -> None:
        try:
            import psycopg

            with psycopg.connect(self.database, connect_timeout=5) as conn:
                row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            self._value = None if row is None else int(row[0])
        except Exception as exc:  # a size is a nicety: never fail the recording over it
            log.debug("database size not read: %s", exc)


def sqlite_size(path: str) -> int | None:
    """Bytes of a SQLite database file and its write-ahead log; None if the file is missing."""
    total = None
    for name in (path, path + "-wal"):
        try:
            size = os.stat(name).st_size
        except OSError:
            continue
        total = (total or 0) + size
    return total

