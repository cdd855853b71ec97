"""The replay timeline: recorded items published at their recorded offsets divided by ``speed``
(or as fast as subscribers drain them with ``speed=None``), with the derived periodic streams
computed on a 100 ms grid of the replay timeline. It yields to the event loop every
`turns.TURN_S` of work (`turns.Turns`).

One clock (`ReplayTimeline.now_ms`, REST's ``/api/v3/time``): the recording's start time plus
the offset the replay has reached. Before the timeline starts it reads the start, and the state
REST answers from is the state at the start: the recorded depth snapshots (the initial books)
and no trades (the recording holds none before its start).

``rebase_time`` moves every recorded time of a recording by one delta, a whole number of
`ReplayTimeline.grid_ms` (so recorded candles stay on their interval grid), so that it starts
at most one grid step before the wall-clock time the replay starts. The grid holds only kline
intervals up to one pass of the recording: a longer candle (``@kline_1d`` in a minutes-long
recording) is put back on its own grid instead, as the candle of its interval that holds the
shifted event time (`Shift`), so it never stretches the loop period or the rebase step.

``loop`` makes a continuing market: pass ``k`` publishes every item shifted (`shift`) by ``k``
times the pass period in time and by ``k`` times each symbol's id extents, so ids, update ids
and times go on from where the previous pass ended and REST history keeps following. The
period is the recording's time range rounded up to the grid (the bundled 92 s capture: 120 s);
the clock and the derived streams run on through the rest of it, paced like the recording.
A later pass waits while nobody is subscribed (a loop at full speed would otherwise spin,
growing REST history for no reader).
Later passes leave out the diffs the first pass's book dropped as stale; between two passes a
`depthUpdate` bridges each recorded diff stream from the book at the end of the pass to the
book at the start of the next (`_bridge`).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from binance_streamer.core.streams import KLINE_INTERVAL_MS
from binance_streamer.exchange.depth_merge import sorted_levels
from binance_streamer.exchange.market import Market, SymbolState
from binance_streamer.exchange.shift import Extents, Shift, Shifts, Space
from binance_streamer.exchange.sources import Recorded, ReplaySource
from binance_streamer.exchange.turns import GRID_MS, TURN_S, Turns, wall_ms

__all__ = ["ReplayTimeline", "grid_of", "register_sources", "run_replay"]

_BATCH = 512
_SECOND_MS = 1000
log = logging.getLogger(__name__)


def register_sources(market: Market, sources: Sequence[ReplaySource]) -> dict[str, int]:
    """Create state for every replayed symbol: its recorded streams, clock base and first book.

    Returns each symbol's home, whose clock it uses: the index of the first source naming it
    that has a clock (a file of REST snapshots alone has none), else of the first naming it.
    """
    named: dict[str, int] = {}
    clocked: dict[str, int] = {}
    for index, src in enumerate(sources):
        for item in src.items:
            symbol = _symbol_of(item) if item.snapshot_symbol or _names_symbol(item) else ""
            if not symbol:
                continue
            state = market.symbol(symbol)
            named.setdefault(symbol, index)
            if src.base_ms:
                clocked.setdefault(symbol, index)
            if item.snapshot_symbol:
                if not state.book.last_update_id:
                    market.snapshot(symbol, item.payload)
                continue
            market.mark_recorded(state, item.stream)
            if not state.base_ms:
                state.base_ms = src.base_ms
                state.tape.set_phase(src.base_ms)  # the replay clock's seconds
    return {symbol: clocked.get(symbol, index) for symbol, index in named.items()}


def _names_symbol(item: Recorded) -> bool:
    """Whether the item belongs to one symbol: its payload names it (``s``), or it is a
    partial book (web-socket-streams.md "Partial Book Depth Streams": no symbol in the payload,
    only in the stream name)."""
    payload = item.payload
    if not isinstance(payload, dict):
        return False
    return isinstance(payload.get("s"), str) or ("lastUpdateId" in payload and "@" in item.stream)


class _Entry(NamedTuple):
    """One recorded item on the merged timeline."""

    offset_ms: float
    source: int
    item: Recorded


class _DiffStream(NamedTuple):
    """A recorded depth diff stream, as the bridge between two passes needs it."""

    stream: str
    symbol: str
    last_u: int  # ``u`` of its last diff
    last_time: int  # ``E`` of its last diff
    next_u: int | None  # ``U`` of the first diff a later pass publishes (None: no such diff)
    next_time: int  # ``E`` of that diff


def _symbol_of(item: Recorded) -> str:
    """The item's symbol: ``s``, the snapshot's symbol, or the stream's (upper case)."""
    payload = item.payload
    if item.snapshot_symbol:
        return item.snapshot_symbol
    if isinstance(payload, dict) and isinstance(payload.get("s"), str):
        return str(payload["s"])
    return item.stream.partition("@")[0].upper()


def _merged(sources: Sequence[ReplaySource]) -> list[_Entry]:
    each = [[_Entry(i.offset_ms, n, i) for i in s.items] for n, s in enumerate(sources)]
    return each[0] if len(each) == 1 else list(heapq.merge(*each, key=lambda e: e.offset_ms))


def grid_of(streams: Sequence[str], span_ms: int | None = None) -> int:
    """The time grid a shift must keep: the least common multiple of 1 s (the derived streams'
    second grid) and the recorded kline intervals (web-socket-streams.md "Kline/Candlestick
    Streams"; 1M candles have no fixed length and are left out), leaving out intervals longer
    than ``span_ms`` (a pass of the replay): `Shift` puts those candles back on their own grid."""
    grid = _SECOND_MS
    for stream in streams:
        interval = KLINE_INTERVAL_MS.get(stream.partition("@kline_")[2].partition("@")[0]) or 1
        if span_ms is None or interval <= span_ms:
            grid = math.lcm(grid, interval)
    return grid


class ReplayTimeline:
    """Recorded sources published on one timeline, with its clock (`now_ms`).

    ``speed`` is the pace factor (None: as fast as subscribers drain); ``loop`` continues the
    market forever (see the module docstring); ``rebase_time`` moves the recording to the
    wall-clock time the replay starts (``wall_ms``). Registers the sources with ``market`` and
    hands it the recorded diffs and each pass's update-id step (`Market.expect_depth`).
    """

    def __init__(self, market: Market, sources: Sequence[ReplaySource], speed: float | None,
                 *, loop: bool = False, rebase_time: bool = False,
                 wall_ms: Callable[[], int] = wall_ms) -> None:
        self.market, self.sources, self.speed, self.loop = market, sources, speed, loop
        self.rebase_time, self._wall_ms = rebase_time, wall_ms
        self._home = register_sources(market, sources)
        self._start_books = {s: market.symbols[s].book.copy() for s in self._home}
        self._entries = _merged(sources)
        self._later = [e for e in self._entries if not self._stale(e)] if loop \
            else self._entries  # what passes after the first publish
        extents = self._extents() if loop or rebase_time else Extents()
        duration = int(self._entries[-1].offset_ms) if self._entries else 0
        span = max(extents.time_span_ms, duration) + GRID_MS  # one pass, before rounding
        self.grid_ms = grid_of(sorted({e.item.stream for e in self._entries}), span)
        self.period_ms = 0  # the time between two passes' starts (with ``loop``)
        self.passes = 0  # passes started
        self.idle = asyncio.Event()  # set while a loop waits for a subscriber between passes
        self._steps: dict[str, Shift] = {}  # what one pass adds to each symbol's ids
        self._diffs: list[_DiffStream] = []
        if loop:
            self.period_ms = -(-span // self.grid_ms) * self.grid_ms
            self._steps = {s: _steps(extents, s) for s in self._home}
            self._diffs = self._diff_streams()
        market.expect_depth(((e.item.stream, e.item.payload) for e in self._entries),
                            {s: step.update_ids for s, step in self._steps.items()})
        self._deltas = [0] * len(sources)
        self._offset = 0.0  # the replay's progress
        self._ended: float | None = None  # monotonic time of the end (no loop)
        if rebase_time:
            self._rebase(wall_ms())

    # -- the clock ----------------------------------------------------------------------------

    @property
    def base_ms(self) -> int:
        """The (shifted) time at offset 0 of the first recording with items and a clock; 0
        without one."""
        for src, delta in zip(self.sources, self._deltas, strict=True):
            if src.items and src.base_ms:
                return src.base_ms + delta
        return 0

    def now_ms(self) -> int:
        """The replay's current time: `base_ms` plus the offset reached (the start before it
        starts; after the end it runs on at the replay's speed); the wall clock when there is
        nothing to replay."""
        base = self.base_ms
        if not base:
            return self._wall_ms()
        if self._ended is not None:
            since = (time.monotonic() - self._ended) * 1000 * (self.speed or 1.0)
            return base + int(self._offset + since)
        return base + int(self._offset)

    def _rebase(self, now_ms: int) -> None:
        """Shift each recording (and its symbols' clocks) to start at most one grid step
        before ``now_ms``."""
        for n, src in enumerate(self.sources):
            if src.base_ms:  # a file without a clock (REST snapshots alone) holds no times
                self._deltas[n] = (now_ms - src.base_ms) // self.grid_ms * self.grid_ms
        for symbol, n in self._home.items():
            state = self.market.symbols[symbol]
            if state.base_ms:
                state.base_ms = self.sources[n].base_ms + self._deltas[n]

    # -- passes -------------------------------------------------------------------------------

    def _extents(self) -> Extents:
        """The recorded extents of what later passes publish. One pass lasts the widest time
        range of any one field of one stream (or the duration, if longer), plus a grid step,
        rounded up to `grid_ms`; the grid leaves out candles longer than that."""
        extents = Extents()
        for e in self._later:
            extents.add(e.item.stream, _symbol_of(e.item), e.item.payload)
        return extents

    def _stale(self, entry: _Entry) -> bool:
        """A diff the first pass's book dropped (``u`` at or below the initial snapshot's
        ``lastUpdateId``): later passes start from the bridge instead."""
        payload = entry.item.payload
        if not isinstance(payload, dict) or payload.get("e") != "depthUpdate":
            return False
        book = self._start_books.get(payload["s"])
        return book is not None and int(payload["u"]) <= book.last_update_id

    def _diff_streams(self) -> list[_DiffStream]:
        last: dict[str, _Entry] = {}
        first: dict[str, _Entry] = {}
        for e in self._later:
            if isinstance(e.item.payload, dict) and e.item.payload.get("e") == "depthUpdate":
                first.setdefault(e.item.stream, e)
        for e in self._entries:
            if isinstance(e.item.payload, dict) and e.item.payload.get("e") == "depthUpdate":
                last[e.item.stream] = e
        out = []
        for stream, e in last.items():
            nxt = first.get(stream)
            out.append(_DiffStream(stream, e.item.payload["s"], e.item.payload["u"],
                                   e.item.payload["E"],
                                   nxt.item.payload["U"] if nxt else None,
                                   nxt.item.payload["E"] if nxt else 0))
        return out

    def shifts(self, k: int) -> list[Shifts]:
        """Per source, the shifts of pass ``k`` (0: the recording as it is, rebased): each
        symbol's ids move by ``k`` of its steps in every source naming it, its times by that
        source's delta plus ``k`` periods; other symbols get the times-only default."""
        out = []
        for delta in self._deltas:
            time_ms = delta + k * self.period_ms
            symbols = {s: Shift(time_ms, k * st.agg_ids, k * st.trade_ids, k * st.update_ids,
                                k * st.block_ids)
                       for s, st in self._steps.items() if k}
            out.append(Shifts(Shift(time_ms), symbols))  # empty: nothing moves
        return out

    async def run(self) -> None:
        """Publish every recorded item once (or forever with ``loop``); returns at the end.

        At the end (without ``loop``) the log says so in one line and `Market.end_replay` makes
        later subscriptions that can get no data closed with 1000 "Replay ended".
        """
        if not self._entries:
            return
        if self.rebase_time:
            self._rebase(self._wall_ms())
        pacer = _Pacer(self.speed)
        k = 0
        while True:
            self.passes += 1
            await self._pass(k, pacer)
            if not self.loop:
                break
            k += 1
            await self._subscribed(pacer)
            await self.market.hub.drained()
            await asyncio.sleep(0)  # a short recording at max speed must not starve the loop
        self._ended = time.monotonic()
        log.warning("replay ended: all %d recorded events (%.1f s) were published; new "
                    "subscriptions are closed with 1000 'Replay ended' (--loop replays forever)",
                    len(self._entries), self._entries[-1].offset_ms / 1000)
        self.market.end_replay()

    async def _subscribed(self, pacer: _Pacer) -> None:
        """Return once somebody is subscribed; `idle` is set while waiting, and the replay
        (its clock and pace) stands still."""
        hub = self.market.hub
        if not hub.total:
            self.idle.set()
            since = time.monotonic()
            await hub.wait_subscribed(1)
            pacer.start += time.monotonic() - since
            self.idle.clear()

    async def _pass(self, k: int, pacer: _Pacer) -> None:
        origin = k * self.period_ms
        shifts = self.shifts(k)
        if k:
            await self._advance(origin, pacer)
            self._bridge(k)
        moved = any(shift.default or shift.symbols for shift in shifts)
        for n, entry in enumerate(self._entries if k == 0 else self._later):
            offset = origin + entry.offset_ms
            if offset < pacer.next_grid and self.speed is None:
                self._offset = offset  # the fast path of `_advance`
            else:
                await self._advance(offset, pacer)
            item = entry.item
            payload = shifts[entry.source].apply(item.payload, _symbol_of(item)) if moved \
                else item.payload
            if item.snapshot_symbol:
                self.market.snapshot(item.snapshot_symbol, payload)
            else:
                self.market.publish(item.stream, payload)
            if self.speed is None and n % _BATCH == _BATCH - 1:
                await self.market.hub.drained()
                await pacer.turns.pause()

    async def _advance(self, offset_ms: float, pacer: _Pacer) -> None:
        """Run the 100 ms grid of derived streams up to ``offset_ms`` and wait for it."""
        while pacer.next_grid <= offset_ms:
            step = pacer.next_grid
            await pacer.pace(step)
            self._offset = step
            self.market.periodic(_replay_clock(step), step, synthetic=False)
            pacer.next_grid += GRID_MS
        await pacer.pace(offset_ms)
        self._offset = max(self._offset, offset_ms)

    def _bridge(self, k: int) -> None:
        """Before pass ``k``: on each recorded diff stream a `depthUpdate` taking the book from
        its state at the end of pass ``k-1`` to the start book of pass ``k``: ``U`` follows the
        stream's last ``u``, and ``u`` is one below the ``U`` of the pass's first diff, so the
        stream's ``U``/``u`` chain stays contiguous (web-socket-streams.md "How to manage a
        local order book correctly")."""
        for ds in self._diffs:
            state, start = self.market.symbols[ds.symbol], self._start_books[ds.symbol]
            step = self._steps[ds.symbol].update_ids
            time_ms = self._deltas[self._home[ds.symbol]] + k * self.period_ms
            first = ds.last_u + (k - 1) * step + 1
            if ds.next_u is not None:
                last, event_ms = ds.next_u + k * step - 1, ds.next_time + time_ms - 1
            else:
                last = first + step - 1
                event_ms = ds.last_time + time_ms - self.period_ms + 1
            self.market.publish(ds.stream, {
                "e": "depthUpdate", "E": event_ms, "s": ds.symbol, "U": first, "u": last,
                "b": _changes(state.book.bids, start.bids, descending=True),
                "a": _changes(state.book.asks, start.asks, descending=False)})


def _steps(extents: Extents, symbol: str) -> Shift:
    """What one pass adds to a symbol's ids: each sequence's extent, so pass ``k+1`` starts
    right after pass ``k`` ends; update ids one more, which the bridge diff takes."""
    def extent(space: Space) -> int:
        found = extents.id_range(symbol, space)
        return found[1] - found[0] + 1 if found else 0
    updates = extent(Space.UPDATE_ID)
    return Shift(0, extent(Space.AGG_ID), extent(Space.TRADE_ID), updates + 1 if updates else 0,
                 extent(Space.BLOCK_ID))


def _changes(end: dict[str, str], start: dict[str, str], descending: bool) -> list[list[str]]:
    """The levels taking side ``end`` to side ``start``: quantity 0 for levels only in ``end``,
    ``start``'s quantity where it differs; best price first, as Binance lists them."""
    zero = "0.00000000"
    levels = {p: zero for p in end if p not in start}
    levels.update({p: q for p, q in start.items() if end.get(p) != q})
    return sorted_levels(levels, descending=descending)


class _Pacer:
    """Paces a replay from its start: offsets in ms divided by ``speed`` (None: no waiting)."""

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self.start = time.monotonic()
        self.next_grid = GRID_MS
        self.turns = Turns()

    async def pace(self, offset_ms: float) -> None:
        """Wait for ``offset_ms`` of the replay; behind schedule, still yield once per turn."""
        if self.speed is None:
            return
        delay = self.start + offset_ms / 1000 / self.speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
            self.turns.until = time.monotonic() + TURN_S
        elif self.turns.over():
            await self.turns.pause()


def _replay_clock(offset_ms: int) -> Callable[[SymbolState], int]:
    """Event times on the replay timeline: each symbol's (shifted) clock plus the offset."""
    def clock(state: SymbolState) -> int:
        return state.base_ms + offset_ms
    return clock


async def run_replay(market: Market, sources: Sequence[ReplaySource], speed: float | None,
                     loop: bool, rebase_time: bool = False) -> None:
    """Register ``sources`` and publish them (`ReplayTimeline.run`)."""
    await ReplayTimeline(market, sources, speed, loop=loop, rebase_time=rebase_time).run()

