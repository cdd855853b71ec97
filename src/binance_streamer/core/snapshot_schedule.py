"""When each diff-depth stream is due for a periodic REST depth snapshot.

A book rebuilt from a recording starts from the latest stored snapshot before the moment asked
for and applies the stored diffs from there (web-socket-streams.md, "How to manage a local order
book correctly"), so a fresh snapshot every ``every`` seconds bounds that replay to one interval
of diffs. Each stream's interval is counted from its own last stored snapshot, whatever asked for
that one.

Snapshots taken for other reasons come in bursts: every stream's first one at start, every
stream of a connection after a reconnect broke their chains. So the periodic snapshot that
follows one of those comes early by a share of the interval (up to `SPREAD`) that differs per
stream, and the next round of requests is spread over part of an interval instead of one second.
Later periodic snapshots keep that spread, each one interval after the stream's previous one.

Pure: nothing here sleeps or reads a clock; callers pass the monotonic time in seconds.
"""

from __future__ import annotations

import math

__all__ = ["SPREAD", "SnapshotSchedule"]

SPREAD = 0.5  # the periodic snapshot after a burst comes up to half an interval early
# Phases k * (golden ratio) mod 1 lie evenly in [0, 1) for any number of streams k = 0, 1, ...
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


class SnapshotSchedule:
    """The due time of each stream's next periodic snapshot; ``every`` seconds apart, 0 for
    never (`ValueError` unless finite and >= 0).

    A stream is scheduled once a snapshot of it is `stored`; `due` hands each due stream out
    once, and it is due again only after the next `stored` (or `skipped`).
    """

    __slots__ = ("_due", "_phases", "every")

    def __init__(self, every: float) -> None:
        if not (math.isfinite(every) and every >= 0.0):
            raise ValueError(f"the snapshot interval must be a finite number of seconds >= 0, "
                             f"got {every!r}")
        self.every = every
        self._due: dict[str, float] = {}  # stream -> when its next periodic snapshot is due
        self._phases: dict[str, float] = {}  # stream -> its share of SPREAD, in [0, 1)

    def stored(self, stream: str, now: float, *, periodic: bool) -> None:
        """A snapshot of ``stream`` was stored at ``now``: the next one is due one interval
        later, or earlier by the stream's share of `SPREAD` when this one was not periodic."""
        if not self.every:
            return
        phase = self._phases.setdefault(stream, len(self._phases) * _GOLDEN % 1.0)
        self._due[stream] = now + self.every * (1.0 - (0.0 if periodic else SPREAD * phase))

    def skipped(self, stream: str, now: float) -> None:
        """No snapshot of ``stream`` came of its last request (given up): due again one
        interval from ``now``."""
        if self.every:
            self._due[stream] = now + self.every

    def forget(self, stream: str) -> None:
        """``stream`` is no longer recorded: no periodic snapshot of it until it is `stored`
        again."""
        self._due.pop(stream, None)

    def due(self, now: float) -> list[str]:
        """The streams due at ``now``, longest due first; each is handed out once."""
        ready = sorted((at, stream) for stream, at in self._due.items() if at <= now)
        for _, stream in ready:
            del self._due[stream]
        return [stream for _, stream in ready]

    def next_due(self) -> float | None:
        """When the next stream becomes due (None: none is scheduled)."""
        return min(self._due.values(), default=None)

    def __repr__(self) -> str:
        upcoming = self.next_due()
        when = "none" if upcoming is None else f"{upcoming:.3f}"
        return f"<SnapshotSchedule every={self.every:g}s streams={len(self._due)} next={when}>"
