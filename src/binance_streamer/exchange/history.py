"""Everything the exchange has published on its timeline, per stream, in order.

This is the ground truth tests compare a recorder's database against.
"""

from __future__ import annotations

from typing import Any

__all__ = ["History", "trim", "trim_appended"]


def trim(items: list[Any], limit: int | None) -> int:
    """Drop the oldest items once ``items`` exceeds ``limit`` by 10 %; returns how many."""
    if limit is None or len(items) <= limit + limit // 10:
        return 0
    excess = len(items) - limit
    del items[:excess]
    return excess


def trim_appended(items: list[Any], added: int, limit: int | None) -> int:
    """Trim ``items`` after ``added`` items were appended at once, leaving exactly what calling
    `trim` after each single append would have left; returns how many were dropped.

    ``items`` must have satisfied `trim`'s bound before the append.
    """
    if limit is None or added <= 0:
        return 0
    high = limit + limit // 10
    if len(items) <= high:
        return 0
    # The first trim happens at high + 1 items; every (high + 1 - limit) appends repeat it.
    keep = limit + (len(items) - high - 1) % (high + 1 - limit)
    excess = len(items) - keep
    del items[:excess]
    return excess


class History:
    """Published payloads per stream name (bare payloads, as sent on ``/ws``, times in ms).

    With ``limit``, only about the newest ``limit`` events per stream are kept (long runs), and
    `Market` adds only the recorded streams REST answers from (generated events would cost
    memory nobody reads).
    """

    def __init__(self, limit: int | None = None) -> None:
        self._by_stream: dict[str, list[Any]] = {}
        self.limit = limit

    def add(self, stream: str, payload: Any) -> None:
        """Append one published payload to ``stream``'s history."""
        lst = self._by_stream.get(stream)
        if lst is None:
            self._by_stream[stream] = [payload]
        else:
            lst.append(payload)
            if self.limit is not None:
                trim(lst, self.limit)

    def events(self, stream: str) -> list[Any]:
        """All payloads published on ``stream`` so far, oldest first (a copy)."""
        return list(self._by_stream.get(stream, ()))

    def streams(self) -> list[str]:
        """The names of every stream that has published at least one event."""
        return sorted(self._by_stream)

    def count(self, stream: str | None = None) -> int:
        """How many events ``stream`` (or all streams) published."""
        if stream is not None:
            return len(self._by_stream.get(stream, ()))
        return sum(len(v) for v in self._by_stream.values())

    def __repr__(self) -> str:
        return f"<History streams={len(self._by_stream)} events={self.count()}>"
