"""The recorder: plan -> connections -> decode -> sequence -> batch -> writer -> database.

Every task has an owner (one ``asyncio.TaskGroup``); the writer runs in its own thread; reads pause
while more than ``max_pending_batches`` batches wait for the disk (back-pressure), so memory stays
bounded and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from binance_streamer.core.backoff import full_jitter
from binance_streamer.core.decoding import ControlReply, Decoded, FrameDecoder, Reject, Shutdown
from binance_streamer.core.planning import AttemptLimiter, combined_url, plan_connections
from binance_streamer.core.sequencing import GapDetected, NeedSnapshot, Sequencer
from binance_streamer.core.streams import StreamKind, streams_for
from binance_streamer.errors import ConfigError, RateLimited, StorageError, Unreachable
from binance_streamer.io.backfill import Backfiller
from binance_streamer.io.rest import BINANCE_REST_URL, RestClient
from binance_streamer.io.websocket import ConnectionSettings, StreamConnection
from binance_streamer.storage.base import Batch, Sink, WriteResult
from binance_streamer.storage.writer import Writer

__all__ = ["BINANCE_WS_URL", "Recorder", "RecorderConfig", "RecorderStats"]

log = logging.getLogger(__name__)
BINANCE_WS_URL = "wss://stream.binance.com:9443"
# Kinds whose ids or open times are checked for gaps on every message.
_SEQUENCED = frozenset(
    {StreamKind.AGG_TRADE, StreamKind.TRADE, StreamKind.KLINE, StreamKind.DIFF_DEPTH})


@dataclass
class RecorderConfig:
    """What to record, from where, into what, and how hard to batch."""

    symbols: list[str] = field(default_factory=lambda: ["BTCUSDT", "ETHUSDT", "BNBUSDT"])
    streams: list[str] = field(default_factory=lambda: ["ticker"])
    database: str | Path = "binance_data.db"
    ws_url: str = BINANCE_WS_URL
    rest_url: str = BINANCE_REST_URL
    max_streams_per_connection: int = 200
    batch_rows: int = 5000
    batch_age_s: float = 0.1
    max_pending_batches: int = 4
    raw: bool = False
    microseconds: bool = False  # exchange times in µs (timeUnit=MICROSECOND) instead of ms
    validate_symbols: bool = True
    startup_attempts: int = 5  # REST validation tries before giving up
    backfill: bool = True
    backfill_drain_s: float = 5.0  # on stop, how long queued gaps may still be filled
    connection: ConnectionSettings = field(default_factory=ConnectionSettings)

    @property
    def stream_names(self) -> list[str]:
        """Every stream recorded: each symbol x each stream type, market-wide ones once."""
        return streams_for(self.symbols, self.streams)


@dataclass
class RecorderStats:
    """Counters a status line or a summary prints."""

    started: float = field(default_factory=time.monotonic)
    messages: Counter[str] = field(default_factory=Counter)  # by stream kind
    stored: Counter[str] = field(default_factory=Counter)  # new rows by table
    quarantined: int = 0
    gaps: int = 0  # holes in id-sequenced streams this run handles, earlier runs' unfilled too
    stale: int = 0  # silences of streams without sequence numbers
    gaps_filled: int = 0
    rows_backfilled: int = 0
    batches: int = 0
    paused: int = 0
    commit_latency_ns: list[int] = field(default_factory=list)

    @property
    def total_messages(self) -> int:
        """Market messages decoded, all kinds."""
        return sum(self.messages.values())

    @property
    def total_stored(self) -> int:
        """Market rows written (new or, for klines, updated), bookkeeping tables excluded."""
        skip = ("raw_frame", "quarantine", "gaps")
        return sum(v for k, v in self.stored.items() if k not in skip)


class Recorder:
    """Records ``config.stream_names`` into ``sink`` until `stop` or the duration ends."""

    def __init__(
        self, config: RecorderConfig, sink_factory: Callable[[], Sink] | None = None
    ) -> None:
        self.config = config
        self._sink_factory = sink_factory or _sink_factory(config.database)
        self.stats = RecorderStats()
        self.connections: list[StreamConnection] = []
        self.decoder = FrameDecoder()
        self.sequencer = Sequencer(time_scale=1000 if config.microseconds else 1)
        self.error: BaseException | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._batch = Batch()
        self._flush_handle: asyncio.Handle | None = None
        self._writer: Writer | None = None
        self.backfiller: Backfiller | None = None
        self._paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._progress = asyncio.Event()
        self._seen_count: dict[str, int] = {}

    def __repr__(self) -> str:
        return (f"<Recorder streams={len(self.config.stream_names)} "
                f"connections={sum(c.is_open for c in self.connections)}/{len(self.connections)} "
                f"messages={self.stats.total_messages} stored={self.stats.total_stored}>")

    @property
    def flushed(self) -> bool:
        """True when every message received so far is committed (nothing waits for the disk)."""
        return not len(self._batch) and self._writer is not None and not self._writer.pending

    async def wait_until(self, done: Callable[[RecorderStats], bool], timeout: float) -> None:
        """Wait until ``done(stats)`` holds, re-checked after every committed batch."""
        async with asyncio.timeout(timeout):
            while not done(self.stats):
                await self._progress.wait()

    def stop(self) -> None:
        """Ask the recorder to flush everything and return from `run` (thread-safe)."""
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        else:
            self._stop.set()

    async def run(self, duration: float | None = None) -> RecorderStats:
        """Validate, connect and record; returns the stats once stopped and flushed.

        Raises `UnknownSymbolError` before connecting, and `StorageFatal` if the database
        cannot be written (after keeping everything already stored).
        """
        self._loop = asyncio.get_running_loop()
        names = self.config.stream_names
        async with RestClient(self.config.rest_url, microseconds=self.config.microseconds) as rest:
            if self.config.validate_symbols and self.config.symbols:
                await self._validate(rest)
            sink = await asyncio.to_thread(self._sink_factory)
            await asyncio.to_thread(_check_time_unit, sink, self.config.microseconds)
            self._writer = Writer(sink, self._loop, self._on_written, self._on_fatal)
            self._writer.start()
            self.backfiller = Backfiller(rest, self._submit_rows, self._on_filled)
            if self.config.backfill:
                await self._resume_from(sink)
            try:
                await self._record(names, duration)
            finally:
                await self._shutdown()
        if self.error is not None:
            raise self.error
        return self.stats

    async def _validate(self, rest: RestClient) -> None:
        """Check the symbols over REST, retrying an unreachable or failing server a few times."""
        delays = full_jitter(0.5, 10.0)
        for attempt in range(1, self.config.startup_attempts + 1):
            try:
                await rest.validate_symbols(self.config.symbols)
                return
            except (Unreachable, RateLimited) as exc:
                if attempt == self.config.startup_attempts:
                    raise
                delay = max(next(delays), getattr(exc, "retry_after", 0.0))
                log.warning("%s; retrying in %.1fs (attempt %d of %d)", exc, delay, attempt,
                            self.config.startup_attempts)
                await asyncio.sleep(delay)

    async def _record(self, names: list[str], duration: float | None) -> None:
        limiter = AttemptLimiter()
        time_unit = "MICROSECOND" if self.config.microseconds else None
        plans = plan_connections(names, self.config.max_streams_per_connection)
        self.connections = [
            StreamConnection(p.index, combined_url(self.config.ws_url, p.streams, time_unit),
                             self._on_frame, limiter, self.config.connection, self._on_event)
            for p in plans
        ]
        now_ms = time.time_ns() // 1_000_000
        for name in names:
            self.sequencer.add(name, now_ms)
        async with asyncio.TaskGroup() as tasks:
            for conn in self.connections:
                tasks.create_task(conn.run(), name=f"connection-{conn.index}")
            assert self.backfiller is not None
            backfill = tasks.create_task(self.backfiller.run(), name="backfill")
            watchdog = tasks.create_task(self._watch_staleness(), name="staleness")
            self.ready.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), duration)
            for conn in self.connections:
                conn.stop()
            watchdog.cancel()
            await self.backfiller.drain(timeout=self.config.backfill_drain_s)
            backfill.cancel()

    async def _shutdown(self) -> None:
        self._flush()
        if self._writer is not None:
            await self._writer.close()

    async def _resume_from(self, sink: Sink) -> None:
        """Seed sequencing with the last stored ids, so the first live id reveals the hole since
        the last run, and queue the gaps an earlier run left unfilled."""
        names = self.config.stream_names
        for stream, last in (await asyncio.to_thread(sink.last_ids, names)).items():
            self.sequencer.resume(stream, last)
        assert self.backfiller is not None
        for stream, first, last, cause in await asyncio.to_thread(sink.unfilled_gaps, names):
            log.info("gap %s %d..%d from an earlier run: filling it", stream, first, last)
            self.stats.gaps += 1
            self.backfiller.request(GapDetected(stream, first, last, cause))

    # -- hot path --------------------------------------------------------------------------

    def _on_frame(self, connection: int, received_ns: int, payload: bytes) -> None:
        out = self.decoder.decode(payload)
        batch = self._batch
        if type(out) is Decoded:
            route = out.route
            batch.add(route.table.name, route.rows(out.event, received_ns, "ws"))
            stream = route.stream
            self.stats.messages[stream.kind] += 1
            # Read and reset by the silence watchdog each second.
            self._seen_count[stream.name] = self._seen_count.get(stream.name, 0) + 1
            if stream.kind in _SEQUENCED:
                self._sequence(stream.kind, stream.name, out.event, received_ns)
        elif type(out) is Reject:
            self.stats.quarantined += 1
            batch.quarantine.append(
                (received_ns, out.stream, out.reason, out.raw.decode("utf-8", "replace")))
        elif type(out) is Shutdown:
            log.info("serverShutdown on connection #%d: rolling over", connection)
            self.connections[connection].request_rollover()
        elif type(out) is ControlReply and out.error is not None:
            log.warning("connection #%d: server error %s", connection, out.error)
        if self.config.raw:
            batch.raw_frames.append((received_ns, connection, payload.decode("utf-8", "replace")))
        if not batch.first_received_ns:
            batch.first_received_ns = received_ns
            self._schedule_flush()
        if batch.market_rows >= self.config.batch_rows:
            self._flush()

    def _schedule_flush(self) -> None:
        """Group commit: an idle writer gets the batch at the end of this loop iteration (every
        frame already read joins it); a busy one gets it when it is done, or after
        ``batch_age_s`` at the latest, or at ``batch_rows``."""
        assert self._loop is not None and self._writer is not None
        if self._writer.pending == 0:
            self._flush_handle = self._loop.call_soon(self._flush)
        else:
            self._flush_handle = self._loop.call_later(self.config.batch_age_s, self._flush)

    def _sequence(self, kind: StreamKind, stream: str, event: object, received_ns: int) -> None:
        seq = self.sequencer
        if kind is StreamKind.AGG_TRADE:
            actions = seq.observe_id(stream, event.agg_id)  # type: ignore[attr-defined]
        elif kind is StreamKind.TRADE:
            actions = seq.observe_id(stream, event.trade_id)  # type: ignore[attr-defined]
        elif kind is StreamKind.KLINE:
            kline = event.kline  # type: ignore[attr-defined]
            actions = seq.observe_kline(stream, kline.open_time, kline.is_closed)
        else:
            actions = seq.observe_depth(
                stream, event.first_update_id, event.final_update_id)  # type: ignore[attr-defined]
        gap = False
        for action in actions:
            if type(action) is GapDetected:
                gap = True
                self._gap(action, received_ns)
            elif type(action) is NeedSnapshot and not gap and self.backfiller is not None:
                self.backfiller.request(action)  # initial snapshot of a diff-depth stream

    def _gap(self, gap: GapDetected, detected_ns: int) -> None:
        self.stats.gaps += 1
        log.warning("gap on %s: %d..%d missing (%s)", gap.stream, gap.first_missing,
                    gap.last_missing, gap.cause)
        self._batch.gaps.append(
            (gap.stream, gap.first_missing, gap.last_missing, gap.cause, detected_ns))
        if self.config.backfill and self.backfiller is not None:
            self.backfiller.request(gap)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self._batch = self._batch, Batch()
        if not len(batch) or self._writer is None or self._writer.failed is not None:
            return
        self.stats.batches += 1
        self._writer.submit(batch)
        if self._writer.pending >= self.config.max_pending_batches and not self._paused:
            self._paused = True
            self.stats.paused += 1
            for conn in self.connections:
                conn.pause_reading()

    # -- callbacks from the writer, the backfiller and the connections -----------------------

    def _on_written(self, batch: Batch, result: WriteResult) -> None:
        self.stats.stored.update(result.stored)
        self._progress.set()
        self._progress = asyncio.Event()
        if batch.first_received_ns:
            latency = time.time_ns() - batch.first_received_ns
            if len(self.stats.commit_latency_ns) < 100_000:
                self.stats.commit_latency_ns.append(latency)
        assert self._writer is not None
        if self._writer.pending == 0 and len(self._batch):
            self._flush()  # group commit: the writer is idle, hand it what has accumulated
        if self._paused and self._writer.pending < self.config.max_pending_batches:
            self._paused = False
            for conn in self.connections:
                conn.resume_reading()

    def _on_fatal(self, exc: StorageError) -> None:
        log.error("storage failed, stopping: %s", exc)
        self.error = exc
        self._progress.set()
        self._stop.set()

    def _submit_rows(self, table: str, rows: list[tuple[object, ...]]) -> None:
        self._batch.add(table, rows)
        self._flush()

    def _on_filled(self, gap: GapDetected, rows: int) -> None:
        self.stats.gaps_filled += 1
        self.stats.rows_backfilled += rows
        self._batch.gap_fills.append(
            (time.time_ns(), rows, gap.stream, gap.first_missing, gap.last_missing))
        self._flush()

    def _on_event(self, conn: StreamConnection, event: str) -> None:
        log.info("connection #%d %s", conn.index, event)

    async def _watch_staleness(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            # Messages counted since the last round are taken as seen now: 1 s resolution.
            now_ms = time.time_ns() // 1_000_000
            counts, self._seen_count = self._seen_count, {}
            for stream, count in counts.items():
                self.sequencer.seen(stream, now_ms, count)
            for gap in self.sequencer.stale(now_ms):
                log.warning("stream %s silent since %d ms", gap.stream, gap.first_missing)
                self.stats.stale += 1
                self._batch.gaps.append((gap.stream, gap.first_missing, gap.last_missing,
                                         gap.cause, time.time_ns()))
                self._flush()


def _check_time_unit(sink: Sink, microseconds: bool) -> None:
    """A database keeps one time unit: refuse to mix µs rows into a ms database or back."""
    unit = "microsecond" if microseconds else "millisecond"
    stored = sink.meta("time_unit", unit)
    if stored != unit:
        sink.close()
        raise ConfigError(f"this database holds exchange times in {stored}s; "
                          f"record with{'out' if stored == 'millisecond' else ''} --microseconds")


def _sink_factory(database: str | Path) -> Callable[[], Sink]:
    """Opens PostgreSQL for a ``postgresql://`` URL, else the SQLite file ``database``."""
    def open_sink() -> Sink:
        from binance_streamer.storage.postgres import PostgresSink, is_postgres_url
        from binance_streamer.storage.sqlite import SqliteSink

        if is_postgres_url(database):
            return PostgresSink(str(database))
        return SqliteSink(database)

    return open_sink
