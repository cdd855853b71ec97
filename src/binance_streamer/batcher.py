"""Group commit with back-pressure: rows gather in a `Batch`, committed when the writer is idle.

The read loop adds rows to `Batcher.batch` and calls `started` on the first row of a batch; the
batch goes to the writer at the end of the current loop iteration when the writer is idle (every
frame already read joins it), after ``batch_age_s`` when it is writing one batch, and at once at
``batch_rows``. When a batch already waits behind the one being written, handing over another
would not commit anything sooner: the batch keeps growing (up to ``batch_rows``) until the writer
takes the waiting one. So the batches grow when the writer falls behind, and the writer's cost
per row (pages touched per commit) falls with them. While ``max_pending`` batches wait for the
disk, reading is paused (the kernel's bounded receive buffer then holds the rest), so memory
stays bounded and nothing is dropped.

Reading is fair: the pause takes effect at the end of the loop iteration that asked for it, so
every connection whose data was ready in that iteration still reads its chunk. Pausing at once
would cancel the other connections' queued reads, and since they are resumed together, the
same first connection would fill every batch while the last ones fell ever further behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from binance_streamer.storage.base import Batch

__all__ = ["BatchWriter", "Batcher"]


class BatchWriter(Protocol):
    """What the batcher needs of the writer thread."""

    @property
    def pending(self) -> int:
        """Batches submitted and not yet written."""
        ...

    @property
    def failed(self) -> object | None:
        """The fatal error that stopped the writer, if any."""
        ...

    def submit(self, batch: Batch) -> None:
        """Queue ``batch`` for writing."""
        ...


class Batcher:
    """Owns the batch being filled; hands it to ``writer`` by size, age or idleness."""

    def __init__(
        self,
        writer: BatchWriter,
        loop: asyncio.AbstractEventLoop,
        *,
        batch_rows: int = 5000,
        batch_age_s: float = 0.1,
        max_pending: int = 4,
        pause: Callable[[], None] = lambda: None,
        resume: Callable[[], None] = lambda: None,
    ) -> None:
        self.batch = Batch()
        self.batch_rows = batch_rows
        self._writer = writer
        self._loop = loop
        self._age_s = batch_age_s
        self._max_pending = max_pending
        self._pause, self._resume = pause, resume
        self._handle: asyncio.Handle | None = None
        self._pausing: asyncio.Handle | None = None  # a pause asked for, not yet applied
        self.paused = False
        self.pauses = 0  # times reading was paused
        self.batches = 0  # batches handed to the writer

    def __repr__(self) -> str:
        return (f"<Batcher rows={len(self.batch)} pending={self._writer.pending} "
                f"paused={self.paused} batches={self.batches}>")

    @property
    def empty(self) -> bool:
        """True when nothing waits in the current batch."""
        return not len(self.batch)

    def started(self, received_ns: int) -> None:
        """The first row of a batch arrived at ``received_ns``: schedule the batch's commit."""
        self.batch.first_received_ns = received_ns
        if self._handle is not None:
            return
        if self._writer.pending == 0:
            self._handle = self._loop.call_soon(self.flush)
        else:
            self._handle = self._loop.call_later(self._age_s, self._flush_by_age)

    def _flush_by_age(self) -> None:
        """The batch is ``batch_age_s`` old: hand it over unless one already waits for the
        writer (then `written` hands it over once that one is being written)."""
        self._handle = None
        if self._writer.pending < 2:
            self.flush()

    def add(self, table: str, rows: list[tuple[object, ...]]) -> None:
        """Add rows that did not come from the read loop (backfill) and commit them soon."""
        self.batch.add(table, rows)
        self.flush()

    def flush(self) -> None:
        """Hand the current batch to the writer now; pause reading if too many wait."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        batch, self.batch = self.batch, Batch()
        if not len(batch) or self._writer.failed is not None:
            return
        self.batches += 1
        self._writer.submit(batch)
        if self._writer.pending >= self._max_pending and not self.paused:
            self.paused = True
            self.pauses += 1
            self._pausing = self._loop.call_soon(self._apply_pause)

    def _apply_pause(self) -> None:
        """Pause reading now: every read ready in the iteration that asked has been served."""
        self._pausing = None
        self._pause()

    def written(self) -> None:
        """A batch was committed: what has gathered goes to the writer if nothing waits there
        yet (it is idle, or writing its last batch); reading may resume."""
        if self._writer.pending < 2 and len(self.batch):
            self.flush()
        if self.paused and self._writer.pending < self._max_pending:
            self.paused = False
            if self._pausing is not None:  # the pause never took effect: nothing to resume
                self._pausing.cancel()
                self._pausing = None
            else:
                self._resume()
