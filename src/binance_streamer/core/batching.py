"""Rows -> batches, flushed by size or by age, with the clock injected.

The writer commits one transaction per batch (STYLE habit 6); a batch is flushed as soon as it
holds ``max_rows`` rows or its oldest row has waited ``max_age_ns`` (100 ms by default, the
recorder's receive-to-commit bound). Times are integer nanoseconds from the caller's monotonic
clock; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")


class Batcher(Generic[T]):
    """Collects items into batches of at most ``max_rows``, each flushed within ``max_age_ns``.

    `add` hands back a full batch the moment it fills; the caller flushes a partial batch when
    `due` says its oldest item is ``max_age_ns`` old (or sleeps until `deadline_ns`) and calls
    `take`. Items keep their order; every item added comes out of exactly one batch.
    """

    __slots__ = ("_oldest_ns", "_pending", "max_age_ns", "max_rows")

    def __init__(self, max_rows: int = 5000, max_age_ns: int = 100_000_000) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows!r}")
        if max_age_ns < 0:
            raise ValueError(f"max_age_ns must be >= 0, got {max_age_ns!r}")
        self.max_rows = max_rows
        self.max_age_ns = max_age_ns
        self._pending: list[T] = []
        self._oldest_ns = 0

    def add(self, item: T, now_ns: int) -> list[T] | None:
        """Add ``item`` received at ``now_ns``; the full batch if this filled it, else ``None``."""
        if not self._pending:
            self._oldest_ns = now_ns
        self._pending.append(item)
        if len(self._pending) >= self.max_rows:
            return self.take()
        return None

    def extend(self, items: Iterable[T], now_ns: int) -> list[list[T]]:
        """Add many items received at ``now_ns`` (a drained queue); the batches they filled."""
        full: list[list[T]] = []
        for item in items:
            batch = self.add(item, now_ns)
            if batch is not None:
                full.append(batch)
        return full

    def due(self, now_ns: int) -> bool:
        """Whether the pending batch must be flushed now: its oldest item is ``max_age_ns`` old."""
        return bool(self._pending) and now_ns - self._oldest_ns >= self.max_age_ns

    def deadline_ns(self) -> int | None:
        """When the pending batch must be flushed, ``None`` if nothing is pending."""
        return self._oldest_ns + self.max_age_ns if self._pending else None

    def take(self) -> list[T]:
        """Return the pending items (possibly none) and start a new batch."""
        batch, self._pending = self._pending, []
        return batch

    def __len__(self) -> int:
        return len(self._pending)

    def __repr__(self) -> str:
        return (
            f"<Batcher pending={len(self._pending)}/{self.max_rows} "
            f"max_age={self.max_age_ns / 1e6:g}ms>"
        )
