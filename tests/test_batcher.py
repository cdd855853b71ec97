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


async def test_batches_grow_while_one_waits_behind_the_one_being_written() -> None:
    """Age hands a batch over only while the writer has at most one; behind a waiting batch the
    next one grows until the writer takes the waiting one (or it reaches batch_rows)."""
    writer, events = FakeWriter(), list[str]()
    batcher = Batcher(writer, asyncio.get_running_loop(), batch_rows=100, batch_age_s=0.001,
                      max_pending=8, pause=lambda: events.append("pause"))

    async def receive(rows: int) -> None:
        for n in range(rows):
            if not batcher.batch.first_received_ns:
                batcher.started(n + 1)
            batcher.batch.add("trade", [(n,)])
        await asyncio.sleep(0.01)  # well past the batch age: its timer has fired

    await receive(3)  # idle writer: handed over at the end of the iteration
    await receive(4)  # one being written: handed over by age
    assert [b.market_rows for b in writer.batches] == [3, 4]
    await receive(5)
    await receive(6)  # one waits already: no new batch, however old
    assert writer.pending == 2 and len(batcher.batch) == 11
    writer.commit()
    batcher.written()  # the waiting one is being written now: the grown batch goes behind it
    assert [b.market_rows for b in writer.batches] == [4, 11]
    await receive(2)
    writer.commit()
    batcher.written()
    assert [b.market_rows for b in writer.batches] == [11, 2] and events == []
