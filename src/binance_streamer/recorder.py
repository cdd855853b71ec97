"""The recorder: plan -> connections -> decode -> sequence -> batch -> writer -> database.

Every task has an owner (one ``asyncio.TaskGroup``); the writer runs in its own thread; reads pause
while more than ``max_pending_batches`` batches wait for the disk (back-pressure, `Batcher`), so
memory stays bounded and nothing is dropped.

REST is needed only to check symbols, to fill gaps and for depth snapshots: when it does not
answer at start (a firewall, a WebSocket-only endpoint), the recorder records anyway, warns once,
and checks the symbols as soon as REST answers; gaps are retried meanwhile, each on its own
back-off.
``duration`` bounds the whole run, start-up included.

With ``all_symbols`` (``record --all``) the symbols are exchangeInfo's TRADING spot symbols
(``quote``, ``exclude``), read again every ``listings_every_s``: a new symbol's streams are
SUBSCRIBEd on the live connections (or on a new one when those are full) and a halted or
delisted symbol's UNSUBSCRIBEd, without a reconnect; each change is a ``listing_change`` row.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from binance_streamer.batcher import Batcher
from binance_streamer.core.activity import ActivityMeter
from binance_streamer.core.backoff import full_jitter
from binance_streamer.core.bridging import Bridged, BridgeOutcome, DepthBridge
from binance_streamer.core.decoding import ControlReply, Decoded, FrameDecoder, Reject, Shutdown
from binance_streamer.core.events import DiffDepth
from binance_streamer.core.lag import LagHistogram, LagTracker
from binance_streamer.core.listings import (
    ListedSymbol,
    ListingChange,
    Selection,
    diff_listings,
    place_streams,
    quotes,
)
from binance_streamer.core.planning import AttemptLimiter, combined_url, plan_connections
from binance_streamer.core.rest_budget import RestBudget
from binance_streamer.core.sequencing import (
    SEQUENCED_KINDS,
    GapDetected,
    NeedSnapshot,
    Sequencer,
    SilenceEnded,
)
from binance_streamer.core.sharding import Shard
from binance_streamer.core.streams import InvalidStreamName, StreamKind, parse_stream, streams_for
from binance_streamer.errors import (
    ConfigError,
    ExchangeError,
    StorageError,
    StreamerError,
    UnknownSymbolError,
    Unreachable,
)
from binance_streamer.io.backfill import Backfiller
from binance_streamer.io.rest import BINANCE_REST_URL, RestClient
from binance_streamer.io.websocket import ConnectionSettings, StreamConnection
from binance_streamer.storage.base import Batch, Sink, WriteResult
from binance_streamer.storage.open import open_sink
from binance_streamer.storage.writer import Writer

__all__ = ["BINANCE_WS_URL", "Recorder", "RecorderConfig", "RecorderStats"]

log = logging.getLogger(__name__)
BINANCE_WS_URL = "wss://stream.binance.com:9443"

# Kinds whose events carry Binance's event time ``E`` (web-socket-streams.md): their lag, receive
# time minus event time, is measured per kind and per connection. Book tickers carry none.
_TIMED_KINDS = frozenset({
    StreamKind.TRADE, StreamKind.BLOCK_TRADE, StreamKind.AGG_TRADE, StreamKind.KLINE,
    StreamKind.MINI_TICKER, StreamKind.TICKER, StreamKind.WINDOW_TICKER, StreamKind.AVG_PRICE,
    StreamKind.DIFF_DEPTH,
})
_SYMBOL = re.compile(r"[A-Z0-9_]{2,30}")  # rest-api.md "Terminology": symbols are upper case


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
    backfill: bool = True
    backfill_drain_s: float = 5.0  # on stop, how long queued gaps may still be filled
    # A fresh REST snapshot of each diff-depth stream this often (seconds; 0: only at start and
    # after chain breaks), so a book rebuilt from the recording replays at most this much.
    snapshot_every_s: float = 3600.0
    revalidate_cap_s: float = 60.0  # while REST is down, retry it at most this far apart
    connection: ConnectionSettings = field(default_factory=ConnectionSettings)
    shard: Shard | None = None  # record only this shard's share of the streams
    # Record every TRADING spot symbol exchangeInfo lists (``symbols`` is then filled from it),
    # only those quoted in ``quote`` when given, never those of ``exclude``; exchangeInfo is read
    # again every ``listings_every_s`` seconds and the streams follow its changes.
    all_symbols: bool = False
    quote: str | None = None
    exclude: list[str] = field(default_factory=list)
    listings_every_s: float = 300.0

    @property
    def stream_names(self) -> list[str]:
        """Every stream recorded: each symbol x each stream type, market-wide ones once, only
        those of ``shard`` when one is set."""
        names = streams_for(self.symbols, self.streams)
        return names if self.shard is None else self.shard.select(names)

    def validate(self) -> None:
        """Raise `ConfigError` naming the first option that cannot work."""
        if not self.streams:
            raise ConfigError("no stream types given: name at least one, e.g. --streams ticker")
        self._validate_listing_options()
        for symbol in self.symbols:
            if not _SYMBOL.fullmatch(symbol.upper()):
                hint = (" (give several symbols as separate arguments)" if " " in symbol.strip()
                        else "")
                raise ConfigError(f"invalid symbol {symbol!r}: a symbol is letters and digits, "
                                  f"e.g. BTCUSDT{hint}")
        if self.all_symbols:
            pass  # the symbols come from exchangeInfo at start
        elif self.shard is not None and streams_for(self.symbols, self.streams) \
                and not self.stream_names:
            raise ConfigError(f"shard {self.shard} holds none of the "
                              f"{len(streams_for(self.symbols, self.streams))} streams: use fewer "
                              "shards or more streams")
        elif not self.stream_names:
            raise ConfigError("no streams to record: give at least one symbol, or a market-wide "
                              "stream such as '!miniTicker@arr'")
        _check_url(self.ws_url, ("ws", "wss"), "WebSocket URL (--ws-url)")
        _check_url(self.rest_url, ("http", "https"), "REST URL (--rest-url)")
        if not 1 <= self.max_streams_per_connection <= 1024:
            raise ConfigError("streams per connection must be between 1 and 1024 (Binance's cap)")
        for name in ("batch_rows", "max_pending_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if not (math.isfinite(self.batch_age_s) and self.batch_age_s > 0):
            raise ConfigError("batch_age_s must be a positive number of seconds")
        if not (math.isfinite(self.snapshot_every_s) and self.snapshot_every_s >= 0):
            raise ConfigError("the snapshot interval (--snapshot-every) must be 0 (off) or a "
                              "positive number of seconds")


    def _validate_listing_options(self) -> None:
        if not self.all_symbols:
            if self.quote is not None or self.exclude:
                raise ConfigError("--quote and --exclude select among all symbols: add --all")
            return
        if self.quote is not None and not re.fullmatch(r"[A-Z0-9]{2,20}", self.quote.upper()):
            raise ConfigError(f"invalid quote asset {self.quote!r}: letters and digits, e.g. USDT")
        for symbol in self.exclude:
            if not _SYMBOL.fullmatch(symbol.upper()):
                raise ConfigError(f"invalid symbol {symbol!r} to exclude: letters and digits, "
                                  "e.g. BTCUSDT")
        if not (math.isfinite(self.listings_every_s) and self.listings_every_s > 0):
            raise ConfigError("the listings interval (--listings-every) must be a positive "
                              "number of seconds")

    @property
    def selection(self) -> Selection:
        """Which symbols ``all_symbols`` records (`Selection`)."""
        return Selection(self.quote.upper() if self.quote else None,
                         frozenset(s.upper() for s in self.exclude))


def _check_url(url: str, schemes: tuple[str, ...], what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"invalid {what} {url!r}: expected {schemes[0]}:// or {schemes[1]}:// "
                          "followed by a host, e.g. "
                          + (BINANCE_WS_URL if schemes[0] == "ws" else BINANCE_REST_URL))


def check_duration(duration: float | None) -> None:
    """Raise `ConfigError` unless ``duration`` is None or a positive, finite number of seconds."""
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ConfigError(f"duration must be a positive number of seconds, not {duration!r}")


@dataclass(repr=False)
class RecorderStats:
    """Counters a status line or a summary prints."""

    started: float = field(default_factory=time.monotonic)
    messages: Counter[str] = field(default_factory=Counter)  # by stream kind
    stored: Counter[str] = field(default_factory=Counter)  # new rows by table
    quarantined: int = 0
    gaps: int = 0  # holes in id-sequenced streams this run handles, earlier runs' unfilled too
    stale: int = 0  # silences of streams without sequence numbers
    gaps_filled: int = 0  # counted once the fill is committed
    rows_backfilled: int = 0
    batches: int = 0
    paused: int = 0
    commit_latency_ns: list[int] = field(default_factory=list)  # the first 100,000 batches
    # Receive time of a batch's first message to its commit, in ms, every batch of the run.
    commit_ms: LagHistogram = field(default_factory=LagHistogram)
    # Receive time minus event time, per stream kind and per connection (`LagTracker`).
    lag: LagTracker = field(default_factory=LagTracker)
    silent_streams: list[str] = field(default_factory=list)  # asked for, never heard from
    listing_checks: int = 0  # exchangeInfo re-read (record --all), the first read excluded
    listing_changes: int = 0  # symbols listed, delisted or changing status since the start
    subscribe_errors: int = 0  # SUBSCRIBE/UNSUBSCRIBE answered with an error
    rest_unchecked: bool = False  # REST never answered: symbols unchecked, gaps kept for later

    @property
    def total_messages(self) -> int:
        """Market messages decoded, all kinds."""
        return sum(self.messages.values())

    @property
    def gaps_open(self) -> int:
        """Gaps handled this run and not (yet) filled: the next run fills them."""
        return max(0, self.gaps - self.gaps_filled)

    @property
    def total_stored(self) -> int:
        """Market rows written (new or, for klines, updated), bookkeeping tables excluded."""
        skip = ("raw_frame", "quarantine", "gaps", "listing_change")
        return sum(v for k, v in self.stored.items() if k not in skip)

    def __repr__(self) -> str:
        return (f"<RecorderStats messages={self.total_messages} stored={self.total_stored} "
                f"gaps={self.gaps} filled={self.gaps_filled} stale={self.stale} "
                f"quarantined={self.quarantined}>")


class Recorder:
    """Records ``config.stream_names`` into ``sink`` until `stop` or the duration ends."""

    def __init__(
        self, config: RecorderConfig, sink_factory: Callable[[], Sink] | None = None
    ) -> None:
        self.config = config
        self._sink_factory = sink_factory or functools.partial(
            open_sink, config.database, shard=config.shard)
        self.stats = RecorderStats()
        self.stats.lag = LagTracker(kind_of=lambda name: self.decoder.route(name).stream.kind,
                                    connection_of=lambda name: self._home.get(name, -1))
        self._observe_lag = self.stats.lag.observe
        self.connections: list[StreamConnection] = []
        self.decoder = FrameDecoder()
        self._time_scale = 1000 if config.microseconds else 1  # exchange time units per ms
        self.sequencer = Sequencer(time_scale=self._time_scale)
        self.error: BaseException | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._batcher: Batcher | None = None
        self._writer: Writer | None = None
        self.backfiller: Backfiller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._progress = asyncio.Event()
        self._seen_count: dict[str, int] = {}
        self._activity = ActivityMeter()  # messages per 1 s round per stream, half-life 30 s
        self._heard: set[str] = set()  # streams that sent at least one message this run
        self._bridges: dict[str, DepthBridge] = {}  # per diff-depth stream
        self._unwatched: dict[int, list[str]] = {}  # connection -> streams, until it first opens
        self._paused_since: float | None = None  # reading paused by back-pressure since then
        self._paused_s = 0.0  # paused time not yet excused to the silence watchdogs
        self._limiter = AttemptLimiter()
        self._tasks: asyncio.TaskGroup | None = None
        self._home: dict[str, int] = {}  # every stream recorded now -> its connection's index
        self._retired: set[str] = set()  # streams removed: late frames are stored, not sequenced
        self._listing: list[ListedSymbol] = []  # exchangeInfo's symbols as last read

    def __repr__(self) -> str:
        return (f"<Recorder streams={len(self.config.stream_names)} "
                f"connections={sum(c.is_open for c in self.connections)}/{len(self.connections)} "
                f"messages={self.stats.total_messages} stored={self.stats.total_stored}>")

    @property
    def streams(self) -> list[str]:
        """The streams recorded now (with ``all_symbols`` they follow the listings)."""
        return list(self._home)

    def rest_budget(self) -> RestBudget | None:
        """The backfill's REST budget and queue now (None before recording starts)."""
        return None if self.backfiller is None else self.backfiller.budget()

    @property
    def writer_pending(self) -> int:
        """Batches handed to the writer thread and not yet committed (its queue depth)."""
        return 0 if self._writer is None else self._writer.pending

    @property
    def writer_busy_retries(self) -> int:
        """Writes retried because the database was locked by another writer."""
        return 0 if self._writer is None else self._writer.busy_retries

    @property
    def flushed(self) -> bool:
        """True when every message received so far is committed (nothing waits for the disk)."""
        return (self._batcher is not None and self._batcher.empty and self._writer is not None
                and not self._writer.pending)

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

        ``duration`` (seconds) bounds the whole run, start-up included. Raises `ConfigError`
        (bad options, `UnknownSymbolError`) before writing anything, `StorageError` if the
        database cannot be written (after keeping everything already stored), and
        `ExchangeError` when the exchange refuses the connection for good.
        """
        self.config.validate()
        check_duration(duration)
        self._loop = loop = asyncio.get_running_loop()
        deadline = None if duration is None else loop.time() + duration
        sink = await asyncio.to_thread(self._sink_factory)  # a bad --db fails before the network
        async with RestClient(self.config.rest_url, microseconds=self.config.microseconds) as rest:
            try:
                await asyncio.to_thread(_check_time_unit, sink, self.config.microseconds)
                if self.config.all_symbols:
                    await self._select_all(rest, deadline)
                checked = await self._validate(rest, deadline)
            except BaseException:
                await asyncio.to_thread(sink.close)
                raise
            self._writer = Writer(sink, loop, self._on_written, self._on_fatal)
            self._writer.start()
            self._batcher = Batcher(
                self._writer, loop, batch_rows=self.config.batch_rows,
                batch_age_s=self.config.batch_age_s,
                max_pending=self.config.max_pending_batches,
                pause=self._pause_reading, resume=self._resume_reading)
            self.backfiller = Backfiller(rest, self._batcher.add, self._on_filled,
                                         snapshot_taken=self._on_snapshot,
                                         snapshot_every=self.config.snapshot_every_s,
                                         activity=self._activity.rate)
            await self._resume_from(sink)
            try:
                await self._record(self.config.stream_names, deadline, rest, checked)
            finally:
                await self._shutdown()
        if self.error is not None:
            raise self.error
        self.stats.silent_streams = [n for n in self._home if n not in self._heard]
        return self.stats

    async def _select_all(self, rest: RestClient, deadline: float | None) -> None:
        """Fill ``config.symbols`` from exchangeInfo (``--all``); `ConfigError` when the
        selection is empty (an unknown quote asset, everything excluded)."""
        assert self._loop is not None
        timeout = None if deadline is None else max(0.0, deadline - self._loop.time())
        try:
            listing = await asyncio.wait_for(rest.listing(), timeout)
        except TimeoutError:
            raise Unreachable(rest.base_url, "exchangeInfo did not answer before the deadline; "
                              "--all needs it to know the symbols") from None
        selection = self.config.selection
        symbols = selection.symbols(listing)
        if not symbols:
            known = quotes(listing)
            if selection.quote is not None and selection.quote not in known:
                raise ConfigError(f"no TRADING symbol is quoted in {selection.quote!r}; quote "
                                  f"assets listed: {', '.join(known) or 'none'}")
            raise ConfigError("--all selects no TRADING symbol (all excluded?)")
        self._listing = listing
        self.config.symbols = symbols
        if self.config.shard is not None and not self.config.stream_names:
            log.warning("shard %s holds none of the %d streams yet: it records the symbols "
                        "listed later that fall to it", self.config.shard,
                        len(streams_for(symbols, self.config.streams)))
        log.info("--all: %d TRADING symbol(s) selected, %d stream(s)", len(symbols),
                 len(self.config.stream_names))

    async def _validate(self, rest: RestClient, deadline: float | None) -> bool:
        """Check the symbols over REST once; False (after one warning) when REST does not
        answer, so recording starts anyway and `_validate_later` checks when it does."""
        if not (self.config.validate_symbols and self.config.symbols) or self.config.all_symbols:
            return True
        assert self._loop is not None
        timeout = None if deadline is None else max(0.0, deadline - self._loop.time())
        try:
            await asyncio.wait_for(rest.validate_symbols(self.config.symbols), timeout)
        except (ExchangeError, TimeoutError) as exc:
            reason = exc if isinstance(exc, ExchangeError) else "no answer before the deadline"
            log.warning("REST did not answer (%s): recording anyway with the symbols unchecked; "
                        "gaps are kept and filled once REST answers", reason)
            self.stats.rest_unchecked = True
            return False
        return True

    async def _validate_later(self, rest: RestClient) -> None:
        """Retry the symbol check until REST answers (gaps meanwhile are retried by the
        backfiller on their own back-off)."""
        delays = full_jitter(1.0, self.config.revalidate_cap_s)
        while True:
            await asyncio.sleep(next(delays))
            try:
                await rest.validate_symbols(self.config.symbols)
            except UnknownSymbolError as exc:
                self._fail(exc)
                return
            except ExchangeError as exc:
                log.info("REST still unavailable: %s", exc)
                continue
            log.warning("REST answers again: symbols checked")
            self.stats.rest_unchecked = False
            return

    async def _record(self, names: list[str], deadline: float | None, rest: RestClient,
                      checked: bool) -> None:
        plans = plan_connections(names, self.config.max_streams_per_connection)
        self.connections = [self._new_connection(p.index, p.streams) for p in plans]
        self._home = {name: p.index for p in plans for name in p.streams}
        self._unwatched = {p.index: list(p.streams) for p in plans}
        for name in names:
            self.sequencer.add(name)  # silence clocks start when their connection first opens
        assert self.backfiller is not None and self._loop is not None
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            for conn in self.connections:
                tasks.create_task(self._connection(conn), name=f"connection-{conn.index}")
            backfill = tasks.create_task(self.backfiller.run(), name="backfill")
            watchdog = tasks.create_task(self._watch_staleness(), name="staleness")
            later = None if checked else tasks.create_task(self._validate_later(rest),
                                                           name="validate-later")
            listings = (tasks.create_task(self._watch_listings(rest), name="listings")
                        if self.config.all_symbols else None)
            self.ready.set()
            timeout = None if deadline is None else max(0.0, deadline - self._loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout)
            for task in (listings, watchdog, later):
                if task is not None:
                    task.cancel()
            for conn in self.connections:
                conn.stop()
            stopped_ms = time.time_ns() // 1_000_000
            self._seen_until(stopped_ms)
            self._end_silences(self.sequencer.ended(stopped_ms))
            if self.error is None:
                await self.backfiller.drain(timeout=self.config.backfill_drain_s)
            backfill.cancel()

    def _new_connection(self, index: int, streams: tuple[str, ...] | list[str]
                        ) -> StreamConnection:
        """Connection ``index`` for ``streams``; a reconnect opens the URL of its streams then."""
        time_unit = "MICROSECOND" if self.config.microseconds else None
        url_for = functools.partial(combined_url, self.config.ws_url, time_unit=time_unit)
        return StreamConnection(index, url_for(streams), self._on_frame, self._limiter,
                                self.config.connection, self._on_event, streams=streams,
                                url_for=url_for)

    async def _connection(self, conn: StreamConnection) -> None:
        """Run one connection; a refusal that retrying cannot fix stops the recording."""
        try:
            await conn.run()
        except StreamerError as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Stop the recording because of ``exc`` (the first such error is the one raised)."""
        if self.error is None:
            log.error("stopping: %s", exc)
            self.error = exc
        self._progress.set()
        self._stop.set()

    async def _shutdown(self) -> None:
        if self._batcher is not None:
            self._batcher.flush()
        if self._writer is not None:
            await self._writer.close()

    async def _resume_from(self, sink: Sink) -> None:
        """Seed sequencing with the last stored ids, so the first live id reveals the hole since
        the last run, and queue the gaps an earlier run left unfilled."""
        names = self.config.stream_names
        for stream, (last, complete) in (await asyncio.to_thread(sink.last_ids, names)).items():
            self.sequencer.resume(stream, last, complete)
        if not self.config.backfill:
            return
        for stream, first, last, cause in await asyncio.to_thread(sink.unfilled_gaps, names):
            log.info("gap %s %d..%d from an earlier run: filling it", stream, first, last)
            self.stats.gaps += 1
            self._request(GapDetected(stream, first, last, cause))

    def _request(self, request: GapDetected | NeedSnapshot) -> None:
        """Hand a backfill to the backfiller (it retries while REST does not answer)."""
        if self.backfiller is not None:
            self.backfiller.request(request)

    # -- hot path --------------------------------------------------------------------------

    def _on_frame(self, connection: int, received_ns: int, payload: bytes) -> None:
        out = self.decoder.decode(payload)
        batcher = self._batcher
        assert batcher is not None
        batch = batcher.batch
        if type(out) is Decoded:
            route = out.route
            batch.add(route.table.name, route.rows(out.event, received_ns, "ws"))
            stream = route.stream
            kind = stream.kind
            self.stats.messages[kind] += 1
            if kind in _TIMED_KINDS:
                self._observe_lag(stream.name, received_ns // 1_000_000
                                  - out.event.event_time // self._time_scale)
            # Read and reset by the silence watchdog each second.
            self._seen_count[stream.name] = self._seen_count.get(stream.name, 0) + 1
            if stream.kind in SEQUENCED_KINDS and (not self._retired
                                                   or stream.name not in self._retired):
                event = out.event
                for action in self.sequencer.observe(stream.name, event):
                    if type(action) is GapDetected:
                        self._gap(action, received_ns)
                    else:
                        self._request(action)  # NeedSnapshot: a diff-depth stream's first
                if type(event) is DiffDepth:
                    self._bridge_diff(stream.name, event)
        elif type(out) is Reject:
            self.stats.quarantined += 1
            batch.quarantine.append(
                (received_ns, out.stream, out.reason, out.raw.decode("utf-8", "replace")))
        elif type(out) is Shutdown:
            log.info("serverShutdown on connection #%d: rolling over", connection)
            self.connections[connection].request_rollover()
        elif type(out) is ControlReply:
            self._control_reply(connection, out, received_ns)
        if self.config.raw:
            batch.raw_frames.append((received_ns, connection, payload.decode("utf-8", "replace")))
        if not batch.first_received_ns:
            batcher.started(received_ns)
        if batch.market_rows >= batcher.batch_rows:
            batcher.flush()

    def _gap(self, gap: GapDetected, detected_ns: int) -> None:
        self.stats.gaps += 1
        log.warning("gap on %s: %d..%d missing (%s)", gap.stream, gap.first_missing,
                    gap.last_missing, gap.cause)
        assert self._batcher is not None
        self._batcher.batch.gaps.append(
            (gap.stream, gap.first_missing, gap.last_missing, gap.cause, detected_ns))
        if self.config.backfill:
            self._request(gap)

    # -- callbacks from the writer, the backfiller and the connections -----------------------

    def _on_written(self, batch: Batch, result: WriteResult) -> None:
        stats = self.stats
        stats.stored.update(result.stored)
        stats.batches += 1
        for _, rows, *_ in batch.gap_fills:  # a fill counts once it is committed
            stats.gaps_filled += 1
            stats.rows_backfilled += rows
        self._notify_progress()
        if batch.first_received_ns:
            latency = time.time_ns() - batch.first_received_ns
            if len(stats.commit_latency_ns) < 100_000:
                stats.commit_latency_ns.append(latency)
            stats.commit_ms.add(latency // 1_000_000)
        assert self._batcher is not None
        self._batcher.written()

    def _pause_reading(self) -> None:
        self.stats.paused += 1
        self._paused_since = time.monotonic()
        for conn in self.connections:
            conn.pause_reading()

    def _resume_reading(self) -> None:
        self._take_paused_ms()
        self._paused_since = None
        for conn in self.connections:
            conn.resume_reading()

    def _take_paused_ms(self) -> int:
        """Milliseconds we did not read since the last call (back-pressure): not a silence."""
        now = time.monotonic()
        if self._paused_since is not None:
            self._paused_s += now - self._paused_since
            self._paused_since = now
        paused, self._paused_s = self._paused_s, 0.0
        return round(paused * 1000)

    def _on_fatal(self, exc: StorageError) -> None:
        self._fail(exc)

    def _bridge(self, stream: str) -> DepthBridge:
        bridge = self._bridges.get(stream)
        if bridge is None:
            bridge = self._bridges[stream] = DepthBridge(stream)
        return bridge

    def _bridge_diff(self, stream: str, event: DiffDepth) -> None:
        for outcome in self._bridge(stream).diff(event.first_update_id, event.final_update_id):
            self._bridged(outcome)

    def _on_snapshot(self, stream: str, last_update_id: int, gap: GapDetected | None) -> None:
        """A depth snapshot was stored: it counts once a stored diff bridges it."""
        outcome = self._bridge(stream).snapshot(last_update_id, gap)
        if outcome is not None:
            self._bridged(outcome)

    def _bridged(self, outcome: BridgeOutcome) -> None:
        """A depth gap is filled only when a stored snapshot is bridged by a stored diff
        (web-socket-streams.md, "How to manage a local order book correctly"); a snapshot
        older than the diffs at hand is fetched again."""
        if type(outcome) is Bridged:
            log.info("%s: snapshot %d bridged by diff %d..%d", outcome.stream,
                     outcome.last_update_id, outcome.first, outcome.final)
            if outcome.gap is not None:
                self._on_filled(outcome.gap, 1)
            return
        log.info("%s: snapshot %d is older than the diffs received; fetching another",
                 outcome.stream, outcome.last_update_id)
        self._request(outcome.gap or NeedSnapshot(outcome.stream, "snapshot too old"))

    def _on_filled(self, gap: GapDetected, rows: int) -> None:
        assert self._batcher is not None
        self._batcher.batch.gap_fills.append(
            (time.time_ns(), rows, gap.stream, gap.first_missing, gap.last_missing))
        self._batcher.flush()

    def _on_event(self, conn: StreamConnection, event: str) -> None:
        log.info("connection #%d %s", conn.index, event)
        if event == "connected" and (streams := self._unwatched.pop(conn.index, None)):
            # A stream cannot be silent before it was ever subscribed; after that, time spent
            # reconnecting counts (tickers have no ids to reveal what was missed).
            now_ms = time.time_ns() // 1_000_000
            for stream in streams:
                self.sequencer.add(stream, now_ms)

    def _count_seen(self) -> dict[str, int]:
        """Take the per-stream message counts gathered since the last call."""
        counts, self._seen_count = self._seen_count, {}
        self._activity.observe(counts)
        self._heard.update(counts)
        return counts

    def _seen_until(self, now_ms: int) -> None:
        """Feed the counts gathered since the last round to the sequencer; store silences ended."""
        ends = [end for stream, count in self._count_seen().items()
                if stream not in self._retired
                and (end := self.sequencer.seen(stream, now_ms, count)) is not None]
        self._end_silences(ends)

    def _end_silences(self, ends: list[SilenceEnded]) -> None:
        if ends:
            assert self._batcher is not None
            self._batcher.batch.silence_ends.extend(
                (end.last_missing, end.stream, end.first_missing) for end in ends)
            self._batcher.flush()

    async def _watch_staleness(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            # Messages counted since the last round are taken as seen now: 1 s resolution.
            now_ms = time.time_ns() // 1_000_000
            self._seen_until(now_ms)
            self.sequencer.excuse(self._take_paused_ms())
            stale = self.sequencer.stale(now_ms)
            for gap in stale:
                log.warning("stream %s silent since %d ms", gap.stream, gap.first_missing)
                self.stats.stale += 1
                assert self._batcher is not None
                self._batcher.batch.gaps.append((gap.stream, gap.first_missing, gap.last_missing,
                                                 gap.cause, time.time_ns()))
            if stale:  # one batch for all of them: many at once must not trip back-pressure
                assert self._batcher is not None
                self._batcher.flush()

    # -- listings (record --all) -----------------------------------------------------------

    async def _watch_listings(self, rest: RestClient) -> None:
        """Read exchangeInfo every ``listings_every_s`` and follow its changes."""
        while True:
            await asyncio.sleep(self.config.listings_every_s)
            try:
                listing = await rest.listing()
            except ExchangeError as exc:
                log.warning("exchangeInfo not read (%s): listings are checked again in %gs",
                            exc, self.config.listings_every_s)
                continue
            self.apply_listing(listing)

    def apply_listing(self, listing: list[ListedSymbol]) -> None:
        """Follow ``listing`` (exchangeInfo's symbols now): subscribe the streams of symbols
        newly TRADING, unsubscribe those of symbols no longer TRADING, record the changes."""
        changes = diff_listings(self._listing, listing, self.config.selection)
        self._listing = listing
        self.config.symbols = self.config.selection.symbols(listing)
        wanted = self.config.stream_names
        wanted_set = set(wanted)
        removed = [name for name in self._home if name not in wanted_set]
        added = [name for name in wanted if name not in self._home]
        now_ns = time.time_ns()
        self._remove_streams(removed, now_ns)
        self._add_streams(added)
        self._record_changes(changes, added, removed, now_ns)
        self.stats.listing_checks += 1
        self._notify_progress()

    def _remove_streams(self, removed: list[str], now_ns: int) -> None:
        """Unsubscribe ``removed`` on their connections and forget their sequencing: they are
        not silent from now on, and a later return starts afresh."""
        if not removed:
            return
        by_connection: dict[int, list[str]] = {}
        for name in removed:
            by_connection.setdefault(self._home.pop(name), []).append(name)
        for index, names in by_connection.items():
            self.connections[index].remove_streams(names)
            if (unopened := self._unwatched.get(index)) is not None:
                self._unwatched[index] = [n for n in unopened if n not in names]
        self._seen_until(now_ns // 1_000_000)  # what they sent so far still ends silences
        self._retire(removed, now_ns)

    def _add_streams(self, added: list[str]) -> None:
        """Subscribe ``added`` on the connections with room, or on new ones; their sequencing
        starts afresh (a diff-depth stream asks for its snapshot with its first diff)."""
        if not added:
            return
        loads = {conn.index: len(conn.wanted) for conn in self.connections}
        now_ms = time.time_ns() // 1_000_000
        for name in added:
            self._retired.discard(name)
            self._seen_count.pop(name, None)
            self.sequencer.drop(name, now_ms)
        for index, names in place_streams(loads, added,
                                          self.config.max_streams_per_connection).items():
            for name in names:
                self._home[name] = index
            if index < len(self.connections):
                conn = self.connections[index]
                for name in names:
                    self.sequencer.add(name, now_ms if conn.is_open else None)
                if not conn.is_open:
                    self._unwatched.setdefault(index, []).extend(names)
                conn.add_streams(names)
                continue
            for name in names:
                self.sequencer.add(name)  # watched once the new connection opens
            conn = self._new_connection(index, names)
            self.connections.append(conn)
            self._unwatched[index] = list(names)
            log.info("connection #%d opened for %d new stream(s): the others are full",
                     index, len(names))
            assert self._tasks is not None
            self._tasks.create_task(self._connection(conn), name=f"connection-{index}")

    def _record_changes(self, changes: list[ListingChange], added: list[str],
                        removed: list[str], now_ns: int) -> None:
        """Log each listing change and store it as a ``listing_change`` row."""
        assert self._batcher is not None
        rows = self._batcher.batch.listing_changes
        shard = self.config.shard
        for change in changes:
            mine = [n for n in streams_for([change.symbol], self.config.streams)
                    if _symbol_of(n) == change.symbol]
            if shard is not None and not shard.select(mine):
                continue  # another shard records this symbol
            plus = [n for n in added if _symbol_of(n) == change.symbol]
            minus = [n for n in removed if _symbol_of(n) == change.symbol]
            log.warning("listing: %s %s (%s -> %s): %d stream(s) subscribed, %d unsubscribed",
                        change.symbol, change.change, change.old_status or "not listed",
                        change.new_status or "not listed", len(plus), len(minus))
            self.stats.listing_changes += 1
            rows.append((now_ns, change.symbol, change.change, change.old_status,
                         change.new_status, " ".join(plus), " ".join(minus), ""))
        if rows:
            self._batcher.flush()

    def _control_reply(self, connection: int, reply: ControlReply, received_ns: int) -> None:
        """A reply to our SUBSCRIBE/UNSUBSCRIBE: an error is logged, stored, and the streams a
        SUBSCRIBE could not add are no longer recorded (the next listings check tries again)."""
        conns = self.connections
        conn = conns[connection] if 0 <= connection < len(conns) else None
        failed = reply.error is not None
        sent = None if conn is None else conn.control_reply(reply.id, failed)
        if not failed:
            return
        self.stats.subscribe_errors += 1
        if sent is None:
            log.error("connection #%d: the server answered request %r with an error: %s",
                      connection, reply.id, reply.error)
            return
        log.error("connection #%d: %s of %d stream(s) refused by the server: %s",
                  connection, sent.method, len(sent.params), reply.error)
        names = list(sent.params)
        if sent.method == "SUBSCRIBE":
            gone = [n for n in names if self._home.get(n) == connection]
            for name in gone:
                del self._home[name]
            self._retire(gone, received_ns)
        assert self._batcher is not None
        by_symbol: dict[str, list[str]] = {}
        for name in names:
            by_symbol.setdefault(_symbol_of(name), []).append(name)
        for symbol, streams in by_symbol.items():
            self._batcher.batch.listing_changes.append(
                (received_ns, symbol, f"{sent.method.lower()}_error", None, None, "",
                 " ".join(streams), str(reply.error)))
        self._batcher.flush()

    def _retire(self, names: list[str], now_ns: int) -> None:
        """Forget the sequencing of streams no longer recorded."""
        now_ms = now_ns // 1_000_000
        ends = []
        for name in names:
            self._retired.add(name)
            self._seen_count.pop(name, None)
            self._bridges.pop(name, None)
            if self.backfiller is not None:
                self.backfiller.forget(name)
            if (end := self.sequencer.drop(name, now_ms)) is not None:
                ends.append(end)
        self._end_silences(ends)

    def _notify_progress(self) -> None:
        """Wake `wait_until`."""
        self._progress.set()
        self._progress = asyncio.Event()


def _symbol_of(stream: str) -> str:
    """The upper-case symbol of ``stream``; "" for a market-wide stream."""
    try:
        return parse_stream(stream).symbol.upper()
    except InvalidStreamName:
        return stream.partition("@")[0].upper()


def _check_time_unit(sink: Sink, microseconds: bool) -> None:
    """A database keeps one time unit: refuse to mix µs rows into a ms database or back."""
    unit = "microsecond" if microseconds else "millisecond"
    stored = sink.meta("time_unit", unit)
    if stored != unit:
        raise ConfigError(f"this database holds exchange times in {stored}s; "
                          f"record with{'out' if stored == 'millisecond' else ''} --microseconds")
