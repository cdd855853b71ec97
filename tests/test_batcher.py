"""The batcher's back-pressure: bounded, and fair to every connection ready at the same time."""

from __future__ import annotations

import asyncio

from binance_streamer.batcher import Batcher
from binance_streamer.storage.base import Batch


class FakeWriter:
    """Holds submitted batches until `commit` (the disk is slow)."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.failed: object | None = None

    @property
    def pending(self) -> int:
        return len(self.batches)

    def submit(self, batch: Batch) -> None:
        self.batches.append(batch)

    def commit(self) -> None:
        self.batches.pop(0)


def _batcher(writer: FakeWriter, events: list[str]) -> Batcher:
    return Batcher(writer, asyncio.get_running_loop(), batch_rows=1, max_pending=1,
                   pause=lambda: events.append("pause"), resume=lambda: events.append("resume"))


async def test_every_read_ready_in_the_iteration_runs_before_the_pause() -> None:
    writer, events = FakeWriter(), list[str]()
    batcher = _batcher(writer, events)
    loop = asyncio.get_running_loop()

    def read(connection: int) -> None:  # one connection's chunk: one row, a full batch
        events.append(f"read {connection}")
        batcher.batch.add("trade", [(connection,)])
        batcher.flush()

    for connection in range(3):  # three sockets ready in the same iteration
        loop.call_soon(read, connection)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert events == ["read 0", "read 1", "read 2", "pause"]
    assert batcher.paused and batcher.pauses == 1 and writer.pending == 3
    for _ in range(3):
        writer.commit()
        batcher.written()
    assert events[-1] == "resume" and not batcher.paused


async def test_a_commit_before_the_pause_applies_cancels_it() -> None:
    writer, events = FakeWriter(), list[str]()
    batcher = _batcher(writer, events)
    batcher.batch.add("trade", [(1,)])
    batcher.flush()
    assert batcher.paused and events == []  # asked, not applied yet
    writer.commit()
    batcher.written()  # the writer caught up first
    await asyncio.sleep(0)
    assert events == [] and not batcher.paused  # never paused, so nothing to resume
    batcher.batch.add("trade", [(2,)])
    batcher.flush()
    await asyncio.sleep(0)
    assert events == ["pause"] and batcher.pauses == 2
