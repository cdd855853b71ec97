"""The writer: one thread owning the database, fed batches, reporting back to the event loop.

The read loop never waits on the disk: it hands a `Batch` to `Writer.submit` and goes on. The
recorder bounds how many batches may be pending and pauses reading past that (back-pressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator

from binance_streamer.core.backoff import full_jitter
from binance_streamer.errors import StorageBusy, StorageError, StorageFatal
from binance_streamer.storage.base import Batch, Sink, WriteResult

__all__ = ["Writer"]

log = logging.getLogger(__name__)
_STOP = object()


class Writer:
    """Runs ``sink.write`` for each submitted batch in a dedicated thread, in order.

    ``on_written(batch, result)`` and ``on_fatal(error)`` run on ``loop``. A locked database is
    retried with delays from ``busy_delays`` until it succeeds; a fatal error stops the writer
    and every later batch is left unwritten (the caller stops the recording).
    """

    def __init__(
        self,
        sink: Sink,
        loop: asyncio.AbstractEventLoop,
        on_written: Callable[[Batch, WriteResult], None],
        on_fatal: Callable[[StorageError], None],
        busy_delays: Callable[[], Iterator[float]] = lambda: full_jitter(0.01, 1.0),
    ) -> None:
        self.sink = sink
        self._loop = loop
        self._on_written = on_written
        self._on_fatal = on_fatal
        self._busy_delays = busy_delays
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self.pending = 0
        self.busy_retries = 0
        self.failed: StorageError | None = None

    def __repr__(self) -> str:
        return f"<Writer {self.sink!r} pending={self.pending} busy_retries={self.busy_retries}>"

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        """Queue ``batch`` for writing (called on the event loop)."""
        self.pending += 1
        self._queue.put(batch)

    async def close(self) -> None:
        """Write everything submitted so far, then stop the thread; the thread closes the sink
        as its last act (a failure to close is reported through ``on_fatal``)."""
        self._queue.put(_STOP)
        if self._thread.ident is None:  # never started: nothing runs on the writer thread
            self._thread = threading.Thread(target=self._close_sink, name="writer", daemon=True)
            self._thread.start()
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        try:
            self._write_all()
        finally:
            self._close_sink()

    def _close_sink(self) -> None:
        try:
            self.sink.close()
        except Exception as exc:
            error = exc if isinstance(exc, StorageError) else StorageFatal(
                f"cannot close {self.sink!r}: {type(exc).__name__}: {exc}")
            log.error("%s", error)
            if self.failed is None:
                self.failed = error
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to tell
                    self._loop.call_soon_threadsafe(self._on_fatal, error)

    def _write_all(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            assert isinstance(item, Batch)
            if self.failed is not None:  # stopping: the batch is not written, but accounted for
                self._loop.call_soon_threadsafe(self._skipped)
                continue
            try:
                result = self._write(item)
            except Exception as exc:  # the writer must never die silently: stop the recording
                error = exc if isinstance(exc, StorageError) else StorageFatal(
                    f"cannot write {self.sink!r}: {type(exc).__name__}: {exc}")
                self.failed = error
                self._loop.call_soon_threadsafe(self._fatal, error)
            else:
                self._loop.call_soon_threadsafe(self._written, item, result)

    def _write(self, batch: Batch) -> WriteResult:
        delays = self._busy_delays()
        while True:
            try:
                return self.sink.write(batch)
            except StorageBusy as exc:
                self.busy_retries += 1
                if self.busy_retries % 50 == 1:
                    log.warning("database busy, retrying: %s", exc)
                time.sleep(next(delays))

    def _written(self, batch: Batch, result: WriteResult) -> None:
        self.pending -= 1
        self._on_written(batch, result)

    def _skipped(self) -> None:
        self.pending -= 1

    def _fatal(self, exc: StorageError) -> None:
        self.pending -= 1
        self._on_fatal(exc)
