"""History from before the recording started, fetched over REST into the recorded tables.

``aggTrade`` pages ``GET /api/v3/aggTrades`` by ``fromId`` from the first aggregate trade at
``since`` (found with ``startTime``; rest-api.md "Compressed/Aggregate trades list"); ``trade``
pages ``GET /api/v3/historicalTrades`` by ``fromId`` from that aggregate trade's first trade id
``f`` ("Old trade lookup"); ``kline_<i>`` pages ``GET /api/v3/klines`` by ``startTime``, 1000
candles at a time ("Kline/Candlestick data"). Rows are built as the backfill builds them (source
``rest``, no receive time) and stored page by page with the natural-key inserts, so a rerun, a
resumed run and a live recorder on the same database never store a row twice. Before fetching,
each range is compared with what the table holds (`HistoryStore.stored_runs`): only the missing
spans are fetched, so a run stopped anywhere (Ctrl-C, a ban, a crash) resumes where it stopped.

Pacing (rest-api.md "LIMITS"): requests stop at a share of the weight limit, read from
``X-MBX-USED-WEIGHT-1M``, until the next minute; a 429 waits its ``Retry-After`` and retries;
a 418 (the IP is banned) stops the run with `RateLimited` saying when to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import msgspec

from binance_streamer.core.backfill_queue import (
    AGG_TRADES_WEIGHT,
    HISTORICAL_TRADES_WEIGHT,
    KLINES_WEIGHT,
)
from binance_streamer.core.rest_payloads import RestAggTrade
from binance_streamer.core.streams import (
    KLINE_INTERVAL_MS,
    InvalidStreamName,
    StreamKind,
    StreamName,
    parse_stream,
)
from binance_streamer.core.tables import (
    AGG_TRADE,
    KLINE,
    TRADE,
    Row,
    agg_trade_rows,
    kline_rows,
    trade_rows,
)
from binance_streamer.errors import ConfigError, RateLimited, RestError
from binance_streamer.history_store import HistoryStore
from binance_streamer.io.rest import BINANCE_REST_URL, RestClient

__all__ = ["HistoryProgress", "HistoryStats", "Pacing", "fetch_history", "missing_spans",
           "parse_history_streams"]

log = logging.getLogger(__name__)
PAGE = 1000  # the largest ``limit`` of aggTrades, historicalTrades and klines
EXCHANGE_INFO_WEIGHT = 20  # rest-api.md "Exchange information"
_KINDS = (StreamKind.AGG_TRADE, StreamKind.TRADE, StreamKind.KLINE)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Pacing:
    """How hard history may use the REST weight: up to ``share`` of ``weight_limit`` per
    window of ``window_s`` seconds (Binance: 6000 per minute, rest-api.md "IP Limits")."""

    weight_limit: int = 6000
    share: float = 0.8
    window_s: float = 60.0


@dataclass
class HistoryProgress:
    """Where one stream's history stands: its items up to time ``reached`` (``since`` <=
    ``reached`` <= ``until``) are fetched and ``stored`` rows were new; ``done`` at the end."""

    stream: str
    since: int
    until: int
    reached: int
    stored: int = 0
    fetched: int = 0
    done: bool = False


@dataclass
class HistoryStats:
    """What a history run did: rows fetched and newly stored per stream, requests sent, waits
    for the next weight window, and 429 answers waited out."""

    fetched: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    weight_waits: int = 0
    rate_limited: int = 0

    @property
    def total_stored(self) -> int:
        """Rows newly stored, over every stream."""
        return sum(self.stored.values())

    def __repr__(self) -> str:
        return (f"<HistoryStats stored={self.total_stored} requests={self.requests} "
                f"weight_waits={self.weight_waits} rate_limited={self.rate_limited}>")


def parse_history_streams(symbols: Sequence[str], streams: Sequence[str]) -> list[StreamName]:
    """Every ``symbol@stream`` pair, checked: `ConfigError` for a malformed symbol or a stream
    REST cannot fetch history of (only ``aggTrade``, ``trade`` and ``kline_<interval>``)."""
    if not symbols or not streams:
        raise ConfigError("give at least one symbol and one stream")
    names = []
    for symbol in symbols:
        for stream in streams:
            try:
                name = parse_stream(f"{symbol.lower()}@{stream}")
            except InvalidStreamName as exc:
                raise ConfigError(str(exc)) from exc
            if name.kind not in _KINDS or "@" in stream:  # a kline time zone: REST differs
                raise ConfigError(f"no REST history for {stream!r}: use aggTrade, trade or "
                                  "kline_<interval> (e.g. kline_1m)")
            names.append(name)
    return names


def missing_spans(runs: list[tuple[int, int]], lo: int, step: int
                  ) -> list[tuple[int, int | None]]:
    """The keys from ``lo`` on not covered by the stored ``runs`` (ascending ``(first, last)``
    pairs of keys ``step`` apart): closed spans between runs, then an open one (None) after."""
    spans: list[tuple[int, int | None]] = []
    cursor = lo
    for first, last in runs:
        if first > cursor:
            spans.append((cursor, first - step))
        cursor = max(cursor, last + step)
    spans.append((cursor, None))
    return spans


class _Pacer:
    """Sends requests within the weight budget; waits out 429s, turns a 418 into a stop."""

    def __init__(self, rest: RestClient, pacing: Pacing, stats: HistoryStats,
                 wall: Callable[[], float] = time.time) -> None:
        self.rest, self.pacing, self._stats, self._wall = rest, pacing, stats, wall
        self._read_at = 0.0  # wall time of the last answer's X-MBX-USED-WEIGHT-1M

    def _window(self, at: float) -> int:
        return int(at // self.pacing.window_s)

    async def call(self, weight: int, request: Callable[[], Awaitable[_T]]) -> _T:
        """``request()`` once it fits the budget, retried after each 429's Retry-After."""
        while True:
            await self._fit(weight)
            self._stats.requests += 1
            try:
                answer = await request()
            except RateLimited as exc:
                self._read_at = self._wall()
                if exc.status == 418:
                    raise _banned(exc, self._wall()) from exc
                self._stats.rate_limited += 1
                log.warning("REST answered 429 (%s); waiting %gs", exc.msg, exc.retry_after)
                await asyncio.sleep(exc.retry_after)
                continue
            except RestError:
                self._read_at = self._wall()
                raise
            self._read_at = self._wall()
            return answer

    async def _fit(self, weight: int) -> None:
        """Wait for the next weight window when ``weight`` more would pass the budget."""
        now, p = self._wall(), self.pacing
        used = self.rest.used_weight if self._window(now) == self._window(self._read_at) else 0
        if used + weight <= p.share * p.weight_limit:
            return
        wait = (self._window(now) + 1) * p.window_s - now + p.window_s / 120
        self._stats.weight_waits += 1
        log.info("REST weight %d of %d used: waiting %.1fs for the next window", used,
                 p.weight_limit, wait)
        await asyncio.sleep(wait)


def _banned(exc: RateLimited, now: float) -> RateLimited:
    """The stop for a 418: when the ban ends, and that a rerun resumes."""
    until = datetime.fromtimestamp(now + exc.retry_after, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return RateLimited(418, exc.retry_after, (
        f"the exchange banned this IP for sending too much request weight; retry after "
        f"{until} UTC (in {exc.retry_after:g}s): the rerun resumes where this run stopped"),
        exc.url)


@dataclass
class _Run:
    """One run's shared pieces."""

    rest: RestClient
    store: HistoryStore
    pacer: _Pacer
    stats: HistoryStats
    scale: int  # 1000 when the database stores microseconds, else 1
    progress: Callable[[HistoryProgress], None] | None

    def store_page(self, state: HistoryProgress, table: str, rows: list[Row],
                   reached: int) -> None:
        new = self.store.write(table, rows)
        state.fetched += len(rows)
        state.stored += new
        state.reached = max(state.reached, min(reached, state.until))
        self.stats.fetched[state.stream] = state.fetched
        self.stats.stored[state.stream] = state.stored
        if self.progress is not None:
            self.progress(state)


async def fetch_history(
    database: str | Path, symbols: Sequence[str], streams: Sequence[str], since: int,
    until: int | None = None, *, rest_url: str = BINANCE_REST_URL,
    progress: Callable[[HistoryProgress], None] | None = None, pacing: Pacing | None = None,
) -> HistoryStats:
    """Fetch ``streams`` (``aggTrade``, ``trade``, ``kline_<i>``) of ``symbols`` from ``since``
    to ``until`` (epoch ms; None: now) over REST into ``database``, skipping what it holds.

    ``progress`` is called after every page. Raises `ConfigError` for bad streams, symbols the
    exchange does not list or ``since`` not before ``until``; `RateLimited` (status 418) when
    the exchange bans the IP; `ExchangeError`/`StorageError` for other failures. Everything
    stored before a failure or a cancellation stays stored.
    """
    names = parse_history_streams(symbols, streams)
    until = int(time.time() * 1000) if until is None else until
    if since >= until:
        raise ConfigError(f"--since ({since}) must be before --until ({until})")
    stats = HistoryStats()
    async with contextlib.AsyncExitStack() as stack:
        rest = await stack.enter_async_context(RestClient(rest_url))
        pacer = _Pacer(rest, pacing or Pacing(), stats)
        await pacer.call(EXCHANGE_INFO_WEIGHT, partial(  # before the database is created
            rest.validate_symbols, sorted({s.upper() for s in symbols})))
        store = HistoryStore(database)
        stack.callback(store.close)
        scale = 1000 if store.time_unit() == "microsecond" else 1
        if scale == 1000:  # rest-api.md "General API Information": X-MBX-TIME-UNIT
            rest = pacer.rest = await stack.enter_async_context(
                RestClient(rest_url, microseconds=True))
        run = _Run(rest, store, pacer, stats, scale, progress)
        for name in names:
            state = HistoryProgress(name.name, since * scale, until * scale, since * scale)
            await _fetch_stream(run, name, state)
            state.done, state.reached = True, state.until
            if progress is not None:
                progress(state)
    return stats


# A candle counts as closed (final, never updated again) only once it closed this long before
# the request by the local clock: a clock running ahead of Binance's, or a candle closing while
# the request is answered, must not store an open candle as closed (the live recorder's closing
# update could then never replace it).
CLOSED_MARGIN_MS = 60_000


async def _fetch_stream(run: _Run, name: StreamName, state: HistoryProgress) -> None:
    run.stats.fetched.setdefault(name.name, 0)
    run.stats.stored.setdefault(name.name, 0)
    if name.kind is StreamKind.KLINE:
        await _fetch_klines(run, name, state)
        return
    first = await _agg_trade_at(run, name.symbol.upper(), state.since)
    if first is None or first.trade_time > state.until:
        return  # nothing traded in the range
    start = first.agg_id if name.kind is StreamKind.AGG_TRADE else first.first_trade_id
    table = AGG_TRADE.name if name.kind is StreamKind.AGG_TRADE else TRADE.name
    below = run.store.highest_below(table, name.symbol.upper(), start)
    if below is not None and below < start - 1:  # a recording stopped before ``since``
        run.store.note_gap(name.name, below + 1, start - 1, time.time_ns())
    runs = run.store.stored_runs(table, name.symbol.upper(), "", start, state.until, 1)
    for lo, hi in missing_spans(runs, start, 1):
        if not await _fetch_ids(run, name, state, lo, hi):
            break


async def _agg_trade_at(run: _Run, symbol: str, since: int) -> RestAggTrade | None:
    """The first aggregate trade at or after ``since`` (rest-api.md "Compressed/Aggregate
    trades list": ``startTime`` is inclusive; ``fromId`` and ``startTime`` are not mixed)."""
    body = await run.pacer.call(AGG_TRADES_WEIGHT, lambda: run.rest.get(
        "aggTrades", symbol=symbol, startTime=since, limit=1))
    items = msgspec.convert(body, list[RestAggTrade])
    return items[0] if items else None


async def _fetch_ids(run: _Run, name: StreamName, state: HistoryProgress, lo: int,
                     hi: int | None) -> bool:
    """Fetch ids ``lo``..``hi`` (None: up to the range's end); False once past ``until`` or
    caught up with the exchange: no later span needs fetching."""
    symbol, cursor = name.symbol.upper(), lo
    while hi is None or cursor <= hi:
        limit = PAGE if hi is None else min(PAGE, hi - cursor + 1)
        page: list[tuple[int, int]]  # (id, time) of each item
        if name.kind is StreamKind.AGG_TRADE:
            aggs = await run.pacer.call(AGG_TRADES_WEIGHT,
                                        partial(run.rest.agg_trades, symbol, cursor, limit))
            kept = [a for a in aggs if a.trade_time <= state.until]
            page = [(a.agg_id, a.trade_time) for a in aggs]
            run.store_page(state, AGG_TRADE.name, agg_trade_rows(symbol, kept),
                           kept[-1].trade_time if kept else state.reached)
        else:
            trades = await run.pacer.call(
                HISTORICAL_TRADES_WEIGHT, partial(run.rest.historical_trades, symbol, cursor,
                                                  limit))
            kept_t = [t for t in trades if t.trade_time <= state.until]
            page = [(t.trade_id, t.trade_time) for t in trades]
            run.store_page(state, TRADE.name, trade_rows(symbol, kept_t),
                           kept_t[-1].trade_time if kept_t else state.reached)
        if not page:  # nothing there: the end, or a hole in the ids; later spans may have some
            return hi is not None
        if page[-1][1] > state.until or (hi is None and len(page) < limit):
            return False  # past the range, or nothing newer yet
        cursor = page[-1][0] + 1
    return True


async def _fetch_klines(run: _Run, name: StreamName, state: HistoryProgress) -> None:
    """Fetch the candles opening from ``since`` to ``until`` that are not stored closed."""
    symbol, interval = name.symbol.upper(), name.interval
    step = KLINE_INTERVAL_MS[interval] * run.scale
    runs = run.store.stored_runs(KLINE.name, symbol, interval, state.since, state.until, step)
    for lo, hi in missing_spans(runs, state.since, step):
        end, cursor = state.until if hi is None else hi, lo
        while cursor <= end:
            asked = time.time_ns() // 1_000_000 - CLOSED_MARGIN_MS
            items = await run.pacer.call(KLINES_WEIGHT, partial(
                run.rest.klines, symbol, interval, cursor, end, PAGE))
            kept = [k for k in items if cursor <= k.open_time <= end]
            now = asked * run.scale
            run.store_page(state, KLINE.name, kline_rows(symbol, interval, kept, now),
                           kept[-1].close_time if kept else state.reached)
            if not kept or len(items) < PAGE:
                break
            cursor = kept[-1].open_time + 1
