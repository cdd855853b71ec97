"""Recording with several processes: one `Recorder` per shard of the streams, one database.

One interpreter decodes, sequences and batches on its event loop and writes from a thread under
the same GIL, so one recorder tops out at one core. `RecorderFleet` runs ``N`` child processes
instead, child ``i`` a full `Recorder` of ``Shard(i, N)`` (rendezvous hashing of stream names,
`binance_streamer.core.sharding`), all writing into the same database: SQLite serialises only
the write transactions (WAL, one writer at a time, busy retries in `storage.writer`), PostgreSQL
not even those. Shipping rows to one writer process would cost more CPU in pickling than it saves.

Children are started with multiprocessing's *spawn* context, not as ``python -m binance_streamer``
subprocesses: the whole `RecorderConfig` (connection settings, batching knobs the CLI does not
expose) travels as it is, a duplex pipe carries stats, log records and errors (rebuilt with their
own types), and spawn forks no event loop, socket or thread of the parent.

Each child sends a stats snapshot four times a second and a last one once flushed; the parent
sums them into `stats` and `connections`, which the CLI's status line and summary read as they
read a `Recorder`'s. ``processes=1`` is a plain in-process `Recorder`, no child. A child that dies
(``kill -9``, a crash) is restarted after a back-off and resumes from the database like any
restarted recorder (gap detection and REST backfill fill the hole); a child failing with a
`StreamerError` (bad option, unknown symbol, storage failure) stops the fleet and `run` raises
it. Children watch the parent: pipe EOF or a new parent pid (``kill -9`` of the parent) stops
them cleanly, flushing. Back-pressure stays per process, so memory stays bounded per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal

from binance_streamer.core.backoff import full_jitter
from binance_streamer.core.lag import LagHistogram, LagTracker
from binance_streamer.core.rest_budget import RestBudget
from binance_streamer.core.sharding import Shard
from binance_streamer.core.streams import streams_for
from binance_streamer.errors import ConfigError, StreamerError
from binance_streamer.recorder import Recorder, RecorderConfig, RecorderStats, check_duration
from binance_streamer.storage.base import Sink
from binance_streamer.storage.open import open_sink

__all__ = ["AUTO_MIN_STREAMS", "Processes", "RecorderFleet", "auto_processes",
           "resolve_processes"]

log = logging.getLogger(__name__)

Processes = int | Literal["auto"]
AUTO_MIN_STREAMS = 100  # fewer streams than this: one process is plenty (see auto_processes)
AUTO_MAX_PROCESSES = 4
AUTO_STREAMS_PER_PROCESS = 50
SNAPSHOT_EVERY_S = 0.25
_HEALTHY_AFTER_S = 60.0  # a child that ran this long restarts without the back-off it built up
_STOP = "stop"


def auto_processes(config: RecorderConfig, cpu_count: int | None = None) -> int:
    """The process count ``--processes auto`` picks for ``config`` on this machine.

    One process records ~90,000 msgs/s on one core, far beyond a few streams: under
    `AUTO_MIN_STREAMS` streams (a handful of symbols), 1, so small recordings run exactly as
    before. With many streams (the case where one core saturates: hundreds of trade/depth
    streams), one process per `AUTO_STREAMS_PER_PROCESS` streams, at most one per core and at
    most `AUTO_MAX_PROCESSES` (SQLite commits one transaction at a time: past ~4 writers they
    only wait for each other).
    """
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    if config.all_symbols:  # the whole market: thousands of streams, known only at start
        return max(1, min(cores, AUTO_MAX_PROCESSES))
    streams = len(streams_for(config.symbols, config.streams))
    if streams < AUTO_MIN_STREAMS:
        return 1
    return max(1, min(cores, AUTO_MAX_PROCESSES, streams // AUTO_STREAMS_PER_PROCESS))


def resolve_processes(config: RecorderConfig, processes: Processes) -> int:
    """``processes`` as a count: ``"auto"`` resolved by `auto_processes`; `ConfigError` for
    anything below 1."""
    if processes == "auto":
        return auto_processes(config)
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ConfigError(f"the process count must be 'auto' or at least 1, not {processes!r}")
    return processes


# -- what crosses the pipe -----------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionView:
    """One connection of one child, as its last snapshot saw it (times: ``time.monotonic``,
    one clock for every process of the machine)."""

    index: int  # across the fleet (in a snapshot: the child's own)
    is_open: bool
    frames: int
    shard: Shard
    reconnects: int = 0
    last_frame: float = 0.0  # when its last message arrived
    closed_since: float | None = None  # down since then; None while connected
    stream_count: int = 0  # the streams it should carry


@dataclass
class Snapshot:
    """A child's counters (its current incarnation), sent over the pipe."""

    messages: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    gaps: int = 0
    stale: int = 0
    gaps_filled: int = 0
    rows_backfilled: int = 0
    batches: int = 0
    paused: int = 0
    new_latencies_ns: list[int] = field(default_factory=list)  # since the previous snapshot
    # Lags since the previous snapshot, per stream kind and per (the child's) connection.
    lag_kinds: dict[str, LagHistogram] = field(default_factory=dict)
    lag_connections: dict[int, LagHistogram] = field(default_factory=dict)
    rest_budget: RestBudget | None = None
    silent_streams: list[str] = field(default_factory=list)  # final snapshot only
    rest_unchecked: bool = False
    connections: list[ConnectionView] = field(default_factory=list)
    writer_pending: int = 0  # batches waiting for the writer thread
    writer_busy_retries: int = 0
    commit_ms: LagHistogram = field(default_factory=LagHistogram)  # this incarnation's
    ready: bool = False
    flushed: bool = False
    peak_rss_kb: int = 0
    cpu_s: float = 0.0


@dataclass
class _ErrorParcel:
    """An exception rebuilt in the parent with its own type, whatever its ``__init__`` takes."""

    kind: type[BaseException]
    message: str
    attrs: dict[str, Any]

    @classmethod
    def of(cls, exc: BaseException) -> _ErrorParcel:
        return cls(type(exc), str(exc), {k: v for k, v in vars(exc).items()
                                         if isinstance(v, (str, int, float, bool, list, tuple,
                                                           type(None)))})

    def rebuild(self) -> BaseException:
        exc = self.kind.__new__(self.kind)
        BaseException.__init__(exc, self.message)
        vars(exc).update(self.attrs)
        return exc


@dataclass
class _LogParcel:
    level: int
    name: str
    message: str


# -- the child -----------------------------------------------------------------------------------


def _child_main(config: RecorderConfig, conn: Connection, parent_pid: int, log_level: int
                ) -> None:
    """A child process: record ``config`` (one shard) until the parent says stop or is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which says stop
    channel = _Channel(conn)
    root = logging.getLogger()
    root.handlers[:] = [_PipeLogHandler(channel, f"[shard {config.shard}] ")]
    root.setLevel(log_level)
    asyncio.run(_child(config, channel, parent_pid))


class _Channel:
    """The child's end of the pipe: thread-safe sends that stop at the first broken pipe."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.broken = False
        self._lock = threading.Lock()

    def send(self, message: object) -> None:
        with self._lock:
            if self.broken:
                return
            try:
                self.conn.send(message)
            except (OSError, EOFError):
                self.broken = True


class _PipeLogHandler(logging.Handler):
    """Sends log records to the parent, which logs them through its own handlers."""

    def __init__(self, channel: _Channel, prefix: str) -> None:
        super().__init__()
        self.channel = channel
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.prefix + record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # pragma: no cover - a broken format string
            self.handleError(record)
            return
        self.channel.send(_LogParcel(record.levelno, record.name, message))


async def _child(config: RecorderConfig, channel: _Channel, parent_pid: int) -> None:
    loop = asyncio.get_running_loop()
    recorder = Recorder(config, sink_factory=_sink_factory(config))
    loop.add_signal_handler(signal.SIGTERM, recorder.stop)
    conn = channel.conn

    def on_message() -> None:
        try:
            while conn.poll():
                if conn.recv() == _STOP:
                    recorder.stop()
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            log.warning("the supervising process is gone: stopping")
            channel.broken = True
            recorder.stop()

    loop.add_reader(conn.fileno(), on_message)
    sent = _Sent()
    reporter = asyncio.create_task(_report(recorder, channel, parent_pid, sent))
    error: BaseException | None = None
    try:
        await recorder.run()
    except StreamerError as exc:
        error = exc
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        with contextlib.suppress(OSError, ValueError):
            loop.remove_reader(conn.fileno())
    channel.send(_snapshot(recorder, sent, final=True))
    channel.send(("done", None if error is None else _ErrorParcel.of(error)))


@dataclass
class _Sent:
    latencies: int = 0  # commit latencies already sent


async def _report(recorder: Recorder, channel: _Channel, parent_pid: int, sent: _Sent
                  ) -> None:
    """Send a snapshot a few times a second; stop the recorder when the parent is gone."""
    while True:
        channel.send(_snapshot(recorder, sent, final=False))
        if channel.broken or os.getppid() != parent_pid:
            log.warning("the supervising process is gone: stopping")
            recorder.stop()
            return
        await asyncio.sleep(SNAPSHOT_EVERY_S)


def _snapshot(recorder: Recorder, sent: _Sent, final: bool) -> Snapshot:
    stats = recorder.stats
    latencies = stats.commit_latency_ns[sent.latencies:]
    sent.latencies += len(latencies)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    lag_kinds, lag_connections = stats.lag.take_groups()
    return Snapshot(
        messages=dict(stats.messages), stored=dict(stats.stored),
        quarantined=stats.quarantined, gaps=stats.gaps, stale=stats.stale,
        gaps_filled=stats.gaps_filled, rows_backfilled=stats.rows_backfilled,
        batches=stats.batches, paused=stats.paused, new_latencies_ns=list(latencies),
        lag_kinds=lag_kinds, lag_connections=lag_connections,
        rest_budget=None if (budget := recorder.rest_budget()) is None else budget.portable(),
        silent_streams=list(stats.silent_streams) if final else [],
        rest_unchecked=stats.rest_unchecked,
        connections=[ConnectionView(c.index, c.is_open, c.frames, recorder.config.shard or
                                    Shard(1, 1), c.reconnects, c.last_frame, c.closed_since,
                                    c.stream_count)
                     for c in recorder.connections],
        writer_pending=recorder.writer_pending,
        writer_busy_retries=recorder.writer_busy_retries, commit_ms=stats.commit_ms,
        ready=recorder.ready.is_set(), flushed=recorder.flushed,
        peak_rss_kb=usage.ru_maxrss, cpu_s=usage.ru_utime + usage.ru_stime)


# -- the parent ----------------------------------------------------------------------------------


@dataclass
class _Child:
    """The parent's view of one shard's process, across restarts."""

    shard: Shard
    config: RecorderConfig
    process: BaseProcess | None = None
    conn: Connection | None = None
    current: Snapshot = field(default_factory=Snapshot)  # this incarnation
    earlier: Snapshot = field(default_factory=Snapshot)  # earlier incarnations, summed
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False  # the incarnation said it stopped and flushed
    error: BaseException | None = None
    restarts: int = 0
    peak_rss_kb: int = 0
    started: float = 0.0


class RecorderFleet:
    """Records ``config`` with ``processes`` processes, one shard each, into one database.

    Used like a `Recorder`: ``await run(duration)``, `stop` (thread-safe), ``ready``, ``stats``
    and ``connections``. ``processes=1`` runs a plain `Recorder` in this process; ``"auto"``
    picks a count with `auto_processes`.
    """

    def __init__(self, config: RecorderConfig, processes: Processes = 1) -> None:
        self.config = config
        self.processes = resolve_processes(config, processes)
        self.error: BaseException | None = None
        self.ready = asyncio.Event()
        # One process: today's Recorder (with the shard lock when the config names a shard).
        self._single = (Recorder(config, sink_factory=_sink_factory(config))
                        if self.processes == 1 else None)
        self._children: list[_Child] = []
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = time.monotonic()
        self._latencies: list[int] = []
        self._lag = LagTracker()  # the children's lags, numbered by fleet-wide connection
        self._final_silent: list[str] = []

    def __repr__(self) -> str:
        if self._single is not None:
            return f"<RecorderFleet 1 process {self._single!r}>"
        alive = sum(c.process is not None and c.process.is_alive() for c in self._children)
        return (f"<RecorderFleet processes={alive}/{len(self._children)} "
                f"messages={self.stats.total_messages} stored={self.stats.total_stored}>")

    # -- what the CLI reads ---------------------------------------------------------------------

    @property
    def recorder(self) -> Recorder | None:
        """The in-process `Recorder` when ``processes`` is 1."""
        return self._single

    @property
    def stats(self) -> RecorderStats:
        """Every child's counters summed (restarted children: every incarnation)."""
        if self._single is not None:
            return self._single.stats
        stats = RecorderStats(started=self._started)
        for child in self._children:
            for snap in (child.earlier, child.current):
                _add(stats, snap)
        stats.commit_latency_ns = self._latencies
        for child in self._children:
            for snap in (child.earlier, child.current):
                stats.commit_ms.merge(snap.commit_ms)
        stats.lag = self._lag
        stats.silent_streams = list(self._final_silent)
        stats.rest_unchecked = any(c.current.rest_unchecked for c in self._children)
        return stats

    def rest_budget(self) -> RestBudget | None:
        """Every child's REST budget as one (they share the IP's weight)."""
        if self._single is not None:
            return self._single.rest_budget()
        return RestBudget.combined([c.current.rest_budget for c in self._children
                                    if c.current.rest_budget is not None])

    def _first_connection(self, child: _Child) -> int:
        """The fleet-wide number of ``child``'s first connection (as `connections` counts)."""
        first = 0
        for other in self._children:
            if other is child:
                return first
            first += len(other.current.connections)
        raise AssertionError("not a child of this fleet")  # pragma: no cover

    @property
    def connections(self) -> list[Any]:
        """Every child's connections (``index``, ``is_open``, ``frames``), numbered across the
        fleet."""
        if self._single is not None:
            return self._single.connections
        views: list[ConnectionView] = []
        for child in self._children:
            for view in child.current.connections:
                views.append(dataclasses.replace(view, index=len(views), shard=child.shard))
        return views

    @property
    def writer_pending(self) -> int:
        """Batches waiting for a writer thread, every process summed."""
        if self._single is not None:
            return self._single.writer_pending
        return sum(c.current.writer_pending for c in self._children)

    @property
    def writer_busy_retries(self) -> int:
        """Writes retried on a locked database, every process summed (current incarnations)."""
        if self._single is not None:
            return self._single.writer_busy_retries
        return sum(c.current.writer_busy_retries for c in self._children)

    @property
    def shards(self) -> list[Shard]:
        """The shards that have a process: those holding at least one stream (known once `run`
        started)."""
        return [c.shard for c in self._children]

    @property
    def flushed(self) -> bool:
        """True when every child's last snapshot had nothing waiting for the disk."""
        if self._single is not None:
            return self._single.flushed
        return all(c.current.flushed or c.done for c in self._children)

    @property
    def pids(self) -> list[int]:
        """This process and every live child."""
        return [os.getpid()] + [c.process.pid for c in self._children
                                if c.process is not None and c.process.pid is not None
                                and c.process.is_alive()]

    @property
    def peak_rss_kb(self) -> dict[str, int]:
        """Peak resident memory by process: ``"supervisor"`` and ``"shard i/N"`` (the largest
        of its incarnations)."""
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peaks = {"supervisor": own}
        for child in self._children:
            peaks[f"shard {child.shard}"] = max(child.peak_rss_kb, child.current.peak_rss_kb)
        return peaks

    @property
    def restarts(self) -> int:
        """Children restarted after dying, in all."""
        return sum(c.restarts for c in self._children)

    async def wait_until(self, done: Callable[[RecorderStats], bool], timeout: float) -> None:
        """Wait until ``done(stats)`` holds, re-checked at each snapshot from a child."""
        if self._single is not None:
            await self._single.wait_until(done, timeout)
            return
        async with asyncio.timeout(timeout):
            while not done(self.stats):
                await self._progress.wait()

    def stop(self) -> None:
        """Ask every child to flush everything and stop; `run` returns once all have (thread-
        safe)."""
        if self._single is not None:
            self._single.stop()
        elif self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        else:
            self._stop.set()

    # -- running ---------------------------------------------------------------------------------

    async def run(self, duration: float | None = None) -> RecorderStats:
        """Record until `stop` or ``duration`` (seconds, start-up included); the summed stats.

        Raises what `Recorder.run` raises: the first child failing with a `StreamerError`
        (`ConfigError`, `UnknownSymbolError`, `StorageError`, `ExchangeError`) stops the
        others, and its error is raised once all have stopped.
        """
        if self._single is not None:
            try:
                return await self._run_single(duration)
            finally:
                self.error = self._single.error
        self.config.validate()
        check_duration(duration)
        self._loop = loop = asyncio.get_running_loop()
        deadline = None if duration is None else loop.time() + duration
        self._started = time.monotonic()
        self._children = self._plan()
        # One open before any child: a bad --db or a recorder already there fails here, and a
        # new database is created and migrated once.
        await asyncio.to_thread(self._prepare_database)
        supervisors = [asyncio.create_task(self._supervise(c), name=f"shard-{c.shard}")
                       for c in self._children]
        watch = asyncio.create_task(self._stop_at(deadline))
        try:
            await asyncio.gather(*supervisors)
        finally:
            watch.cancel()
            for task in supervisors:
                task.cancel()
            await asyncio.gather(*supervisors, watch, return_exceptions=True)
            self._stop.set()
            for child in self._children:
                await self._reap(child)
        if self.error is not None:
            raise self.error
        return self.stats

    async def _run_single(self, duration: float | None) -> RecorderStats:
        assert self._single is not None
        waiter = asyncio.create_task(self._single.ready.wait())
        waiter.add_done_callback(lambda _: self.ready.set())
        try:
            return await self._single.run(duration)
        finally:
            waiter.cancel()

    def _plan(self) -> list[_Child]:
        """One child per shard that holds at least one stream (with ``all_symbols``, every
        shard: the streams are known only from exchangeInfo, and listings change)."""
        children = []
        for index in range(1, self.processes + 1):
            shard = Shard(index, self.processes)
            config = dataclasses.replace(self.config, shard=shard)
            if not config.all_symbols and not config.stream_names:
                log.info("shard %s holds none of the streams: no process for it", shard)
                continue
            children.append(_Child(shard, config))
        return children

    def _prepare_database(self) -> None:
        open_sink(self.config.database, shard=self._children[0].shard).close()

    async def _stop_at(self, deadline: float | None) -> None:
        assert self._loop is not None
        timeout = None if deadline is None else max(0.0, deadline - self._loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout)
        self._stop.set()
        for child in self._children:
            self._tell_stop(child)

    def _tell_stop(self, child: _Child) -> None:
        if child.conn is not None and not child.conn.closed:
            with contextlib.suppress(OSError, ValueError):
                child.conn.send(_STOP)

    async def _supervise(self, child: _Child) -> None:
        """Run ``child``, restarting it after a back-off whenever it dies unasked."""
        delays: Iterator[float] = full_jitter(0.5, 30.0)
        while True:
            self._start(child)
            await child.ended.wait()
            await self._reap(child)
            lived = time.monotonic() - child.started
            if child.error is not None:
                self._fail(child.error)
                return
            if self._stop.is_set():
                if not child.done:
                    log.error("shard %s: its process died while stopping (exit code %s)",
                              child.shard, _exitcode(child))
                return
            if lived >= _HEALTHY_AFTER_S:
                delays = full_jitter(0.5, 30.0)
            delay = next(delays)
            log.warning("shard %s: its recorder process ended unasked (exit code %s) after "
                        "%.1f s; restarting in %.1f s", child.shard, _exitcode(child), lived,
                        delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return
            child.restarts += 1

    def _start(self, child: _Child) -> None:
        assert self._loop is not None
        ctx = multiprocessing.get_context("spawn")
        parent_end, child_end = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=_child_main, name=f"binance-streamer shard {child.shard}", daemon=False,
            args=(child.config, child_end, os.getpid(), logging.getLogger().getEffectiveLevel()))
        child.earlier = _merged(child.earlier, child.current)
        child.peak_rss_kb = max(child.peak_rss_kb, child.current.peak_rss_kb)
        child.current, child.done, child.ended = Snapshot(), False, asyncio.Event()
        child.process, child.conn, child.started = process, parent_end, time.monotonic()
        process.start()
        child_end.close()  # the child holds its own copy: EOF here means it is gone
        if self._stop.is_set():
            self._tell_stop(child)
        self._loop.add_reader(parent_end.fileno(), self._on_message, child)

    def _on_message(self, child: _Child) -> None:
        conn = child.conn
        assert conn is not None and self._loop is not None
        try:
            while conn.poll():
                self._handle(child, conn.recv())
        except (EOFError, OSError):
            self._loop.remove_reader(conn.fileno())
            conn.close()
            child.ended.set()

    def _handle(self, child: _Child, message: object) -> None:
        if isinstance(message, Snapshot):
            child.current = message
            if len(self._latencies) < 100_000:
                self._latencies.extend(message.new_latencies_ns)
            first = self._first_connection(child)
            self._lag.add_groups(message.lag_kinds, {
                first + index: hist for index, hist in message.lag_connections.items()})
            if message.silent_streams:
                self._final_silent.extend(message.silent_streams)
            if message.ready and all(c.current.ready for c in self._children):
                self.ready.set()
            self._progress.set()
            self._progress = asyncio.Event()
        elif isinstance(message, _LogParcel):
            logging.getLogger(message.name).log(message.level, "%s", message.message)
        elif isinstance(message, tuple) and message[0] == "done":
            child.done = True
            if message[1] is not None:
                child.error = message[1].rebuild()

    async def _reap(self, child: _Child) -> None:
        """Wait for ``child``'s process to end (it was asked to stop or its pipe is closed)."""
        process = child.process
        if process is None:
            return
        if process.is_alive() and not child.ended.is_set():
            self._tell_stop(child)
            await child.ended.wait()
        await asyncio.to_thread(process.join)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            log.error("stopping every shard: %s", exc)
            self.error = exc
        self._stop.set()


def _sink_factory(config: RecorderConfig) -> Callable[[], Sink]:
    """Opens ``config.database`` locked for ``config.shard`` (until `Recorder` does so)."""
    return functools.partial(open_sink, config.database, shard=config.shard)


def _exitcode(child: _Child) -> str:
    code = None if child.process is None else child.process.exitcode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"{code}, {signal.Signals(-code).name}"
    return str(code)


def _merged(a: Snapshot, b: Snapshot) -> Snapshot:
    """Counters of two incarnations summed (connections and flags are not kept)."""
    return Snapshot(
        messages=dict(Counter(a.messages) + Counter(b.messages)),
        stored=dict(Counter(a.stored) + Counter(b.stored)),
        quarantined=a.quarantined + b.quarantined, gaps=a.gaps + b.gaps,
        stale=a.stale + b.stale, gaps_filled=a.gaps_filled + b.gaps_filled,
        rows_backfilled=a.rows_backfilled + b.rows_backfilled, batches=a.batches + b.batches,
        paused=a.paused + b.paused, peak_rss_kb=max(a.peak_rss_kb, b.peak_rss_kb),
        cpu_s=a.cpu_s + b.cpu_s, commit_ms=_histogram_sum(a.commit_ms, b.commit_ms))


def _histogram_sum(a: LagHistogram, b: LagHistogram) -> LagHistogram:
    total = LagHistogram()
    total.merge(a)
    total.merge(b)
    return total


def _add(stats: RecorderStats, snap: Snapshot) -> None:
    stats.messages.update(snap.messages)
    stats.stored.update(snap.stored)
    stats.quarantined += snap.quarantined
    stats.gaps += snap.gaps
    stats.stale += snap.stale
    stats.gaps_filled += snap.gaps_filled
    stats.rows_backfilled += snap.rows_backfilled
    stats.batches += snap.batches
    stats.paused += snap.paused

