"""When a REST depth snapshot re-anchors a diff-depth stream: only when a diff bridges it.

web-socket-streams.md, "How to manage a local order book correctly": a snapshot with
``lastUpdateId`` L can start a book only if a diff event after it has ``U <= L + 1 <= u`` (step
5); a snapshot older than the first buffered event (``L + 1 < U`` of the first event with
``u > L``) must be fetched again (step 4). So a depth gap is filled, and a book can be rebuilt
past it, only once a stored snapshot is bridged by a stored diff; a snapshot fetched after the
break is not enough by itself.

`DepthBridge` keeps, for one stream, the ``(U, u)`` of the recent diffs and the snapshots that
wait for a bridge; each diff or snapshot it is told about returns the outcomes it settles:
`Bridged` (the gap, if any, is filled) or `SnapshotTooOld` (fetch another).
"""

from __future__ import annotations

from collections import deque

import msgspec

from binance_streamer.core.sequencing import GapDetected

__all__ = ["BridgeOutcome", "Bridged", "DepthBridge", "SnapshotTooOld"]


class Bridged(msgspec.Struct, frozen=True):
    """The snapshot at ``last_update_id`` is bridged by the diff ``first``..``final``."""

    stream: str
    last_update_id: int
    gap: GapDetected | None  # the depth gap the snapshot was fetched for (None: initial)
    first: int
    final: int


class SnapshotTooOld(msgspec.Struct, frozen=True):
    """The snapshot at ``last_update_id`` precedes the diffs at hand: fetch another."""

    stream: str
    last_update_id: int
    gap: GapDetected | None


BridgeOutcome = Bridged | SnapshotTooOld
_NONE: tuple[BridgeOutcome, ...] = ()


class DepthBridge:
    """Snapshots of one diff-depth stream waiting for the diff that bridges them.

    ``keep`` bounds how many recent diffs are remembered (a snapshot older than all of them is
    reported too old, which is safe: another is fetched).
    """

    __slots__ = ("_pending", "_recent", "stream")

    def __init__(self, stream: str, keep: int = 2048) -> None:
        self.stream = stream
        self._recent: deque[tuple[int, int]] = deque(maxlen=keep)
        self._pending: list[tuple[int, GapDetected | None]] = []

    @property
    def waiting(self) -> int:
        """Snapshots fetched and not yet bridged."""
        return len(self._pending)

    def snapshot(self, last_update_id: int, gap: GapDetected | None) -> BridgeOutcome | None:
        """A snapshot was stored: `Bridged` or `SnapshotTooOld` if a remembered diff decides,
        else ``None`` (it waits for the next diffs)."""
        for first, final in self._recent:
            if final > last_update_id:
                return self._settle(last_update_id, gap, first, final)
        self._pending.append((last_update_id, gap))
        return None

    def diff(self, first: int, final: int) -> tuple[BridgeOutcome, ...]:
        """A diff ``U``..``u`` was received: the waiting snapshots it settles."""
        self._recent.append((first, final))
        if not self._pending:
            return _NONE
        settled: list[BridgeOutcome] = []
        waiting: list[tuple[int, GapDetected | None]] = []
        for last_update_id, gap in self._pending:
            if final <= last_update_id:
                waiting.append((last_update_id, gap))
            else:
                settled.append(self._settle(last_update_id, gap, first, final))
        self._pending = waiting
        return tuple(settled)

    def _settle(self, last_update_id: int, gap: GapDetected | None, first: int, final: int
                ) -> BridgeOutcome:
        """The first diff with ``u > lastUpdateId`` decides: it bridges or the snapshot is old."""
        if first <= last_update_id + 1:
            return Bridged(self.stream, last_update_id, gap, first, final)
        return SnapshotTooOld(self.stream, last_update_id, gap)

    def __repr__(self) -> str:
        return f"<DepthBridge {self.stream} recent={len(self._recent)} waiting={self.waiting}>"
