"""Per-stream gap detection: each observation returns exactly what the recorder must act on.

Actions (msgspec Structs, so they compare by value and work with ``match``)::

    GapDetected     messages were missed: record the gap, backfill it over REST
    NeedSnapshot    a diff-depth stream needs a REST depth snapshot: fetch one
    SilenceEnded    a silence `Sequencer.stale` reported is over: store where it really ended

An observation that needs nothing (the common case) returns an empty tuple, which costs no
allocation. Messages are stored whatever the sequencing says: a re-delivered one (an overlap after
a reconnect or a rollover) is a duplicate of a stored row, which the table's natural key resolves.

Trackers, one per stream, by what the stream carries (web-socket-streams.md, "Detailed Stream
information"):

    IdSequence      aggTrade ``a`` ("Aggregate trade ID") and trade ``t`` ("Trade ID"): ids
                    contiguous per symbol
    KlineGrid       kline ``k.t`` ("Kline start time") on the interval's grid, and ``k.x``
    DepthChain      diff depth ``U``/``u``, chained as "How to manage a local order book
                    correctly" describes
    Staleness       a silence watchdog, for streams without sequence numbers (and klines, trades)

`Sequencer` holds one tracker per stream name and decides, from the type of a decoded event, which
id or time sequences it (`Sequencer.observe`). Time is passed in as Binance-style integer ms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

import msgspec

from binance_streamer.core.events import AggTrade, DiffDepth, KlineEvent, Trade
from binance_streamer.core.streams import (
    KLINE_INTERVAL_MS,
    InvalidStreamName,
    StreamKind,
    StreamName,
    parse_stream,
)

__all__ = [
    "CAUSE_DEPTH",
    "CAUSE_ID",
    "CAUSE_KLINE",
    "CAUSE_RESUME",
    "CAUSE_SILENT",
    "CAUSE_STALE",
    "DEFAULT_CADENCE_MS",
    "SEQUENCED_KINDS",
    "Action",
    "DepthChain",
    "GapDetected",
    "IdSequence",
    "KlineGrid",
    "NeedSnapshot",
    "RateWatch",
    "Sequencer",
    "SilenceEnded",
    "Staleness",
    "bridge_index",
]

CAUSE_ID = "id gap"
CAUSE_RESUME = "gap since restart"
CAUSE_KLINE = "kline open time gap"
CAUSE_DEPTH = "depth chain broken"
CAUSE_STALE = "stale"
CAUSE_SILENT = "stale: no data since subscribe"

# The kinds `Sequencer.observe` sequences; events of every other kind give no action.
SEQUENCED_KINDS: frozenset[StreamKind] = frozenset(
    {StreamKind.AGG_TRADE, StreamKind.TRADE, StreamKind.KLINE, StreamKind.DIFF_DEPTH})


class GapDetected(msgspec.Struct, frozen=True):
    """Messages of ``stream`` were missed.

    ``first_missing`` .. ``last_missing`` is inclusive: ids for trades, aggTrades and diff depth
    (``u`` values), open times (ms) for klines, and the silent span (ms) for staleness.
    """

    stream: str
    first_missing: int
    last_missing: int
    cause: str


class NeedSnapshot(msgspec.Struct, frozen=True):
    """The local order book of ``stream`` needs a fresh REST depth snapshot."""

    stream: str
    reason: str


class SilenceEnded(msgspec.Struct, frozen=True):
    """The silence of ``stream`` reported from ``first_missing`` is over.

    ``first_missing`` is that of the `GapDetected` that reported the silence (it identifies the
    gap row); ``last_missing`` (ms, inclusive) is where the silence really ended, never before
    the ``last_missing`` reported at detection.
    """

    stream: str
    first_missing: int
    last_missing: int


Action: TypeAlias = GapDetected | NeedSnapshot

_NOTHING: tuple[Action, ...] = ()


class IdSequence:
    """Contiguous ids of one aggTrade (``a``) or trade (``t``) stream.

    The first id sets the baseline; after that each id is the previous one plus one. A jump
    reports the missing ids; an id at or below the newest (an overlap) needs nothing.
    """

    __slots__ = ("_last", "_resumed", "gaps", "stream")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self._last: int | None = None
        self._resumed = False
        self.gaps = 0

    @property
    def last(self) -> int | None:
        """The newest id seen (or resumed from), ``None`` before any."""
        return self._last

    def resume_from(self, last_stored_id: int) -> None:
        """Take ``last_stored_id`` (from storage, after a restart) as the newest id seen.

        The first live id then reveals the hole since the restart (cause `CAUSE_RESUME`). Ids
        already observed are kept if newer.
        """
        if self._last is None or last_stored_id > self._last:
            self._last = last_stored_id
            self._resumed = True

    def observe(self, id: int) -> tuple[Action, ...]:
        """The gap before ``id``, the next id of the stream, if any."""
        last = self._last
        if last is None or id == last + 1:
            self._last = id
            self._resumed = False
            return _NOTHING
        if id <= last:
            return _NOTHING
        cause = CAUSE_RESUME if self._resumed else CAUSE_ID
        self._last = id
        self._resumed = False
        self.gaps += 1
        return (GapDetected(self.stream, last + 1, id - 1, cause),)

    def __repr__(self) -> str:
        return f"<IdSequence {self.stream} last={self._last} gaps={self.gaps}>"


class KlineGrid:
    """Open times of one kline stream, expected on a grid of ``interval_ms``.

    Updates of the current kline repeat its open time (the latest update wins in storage); an
    older open time needs nothing; skipping grid points reports the missing open times. A kline
    whose closing update (``k.x``) never came, because the connection dropped mid-candle, is
    reported missing too, so its final values are fetched. ``interval_ms`` 0 (the calendar month
    ``1M``) disables the grid check.
    """

    __slots__ = ("_closed", "_last", "_resumed", "gaps", "interval_ms", "stream")

    def __init__(self, stream: str, interval_ms: int) -> None:
        self.stream = stream
        self.interval_ms = max(interval_ms, 0)
        self._last: int | None = None
        self._closed = True  # whether the kline at _last was seen closed
        self._resumed = False
        self.gaps = 0

    @property
    def last(self) -> int | None:
        """The newest open time seen (or resumed from), ``None`` before any."""
        return self._last

    def resume_from(self, last_open_time: int, closed: bool = True) -> None:
        """Take ``last_open_time`` (from storage, after a restart) as the newest open time seen,
        ``closed`` or not: an unclosed stored candle is reported missing (its final values are
        fetched) as soon as a later candle shows up."""
        if self._last is None or last_open_time > self._last:
            self._last = last_open_time
            self._closed = closed
            self._resumed = True

    def observe(self, open_time: int, closed: bool = True) -> tuple[Action, ...]:
        """The open times missed before this kline update (``k.t``, closed flag ``k.x``), if any."""
        last, step = self._last, self.interval_ms
        if last is None or open_time == last:
            self._last, self._closed = open_time, closed or (open_time == last and self._closed)
            return _NOTHING
        if open_time < last:
            return _NOTHING
        unfinished = not self._closed  # its final values must be fetched
        first_missing = last if unfinished else last + step
        if step == 0 or open_time <= last + step:
            # An off-grid time less than one interval ahead has no grid point to miss.
            last_missing = last if unfinished else None
        else:
            # The last grid point strictly before open_time (open_time itself when on the grid).
            last_missing = last + ((open_time - last - 1) // step) * step
        cause = CAUSE_RESUME if self._resumed else CAUSE_KLINE
        self._last, self._closed, self._resumed = open_time, closed, False
        if last_missing is None:
            return _NOTHING
        self.gaps += 1
        return (GapDetected(self.stream, first_missing, last_missing, cause),)

    def __repr__(self) -> str:
        return f"<KlineGrid {self.stream} every={self.interval_ms}ms last={self._last}>"


def bridge_index(last_update_id: int, buffered: Sequence[tuple[int, int]]) -> int | None:
    """Index of the first buffered ``(U, u)`` event to apply on a snapshot, or ``None``.

    web-socket-streams.md, "How to manage a local order book correctly", steps 4-6: events with
    ``u <= lastUpdateId`` are dropped; the first event applied must have
    ``U <= lastUpdateId + 1 <= u``; after it, each event's ``U`` is the previous ``u + 1``. An
    event that repeats updates already applied (``U <= previous u``, with a newer ``u``: a
    replacement connection's overlap) is applied like the first one, whose levels are absolute
    quantities (step 7), and one ending at or before the previous ``u`` is dropped as in step 4;
    only ``U > previous u + 1`` breaks the chain. ``None`` when:

    * the first event not dropped starts after ``lastUpdateId + 1`` (the snapshot is older than
      the buffer: fetch another);
    * the chain breaks after the first event applied (updates were missed: fetch another);
    * no event is newer than the snapshot yet (buffer more events, try the same snapshot again).
    """
    start: int | None = None
    for i, (first, final) in enumerate(buffered):
        if final <= last_update_id:
            continue
        if first > last_update_id + 1:
            return None
        start = i
        break
    if start is None:
        return None
    previous = buffered[start][1]
    for first, final in buffered[start + 1 :]:
        if final <= previous:
            continue
        if first > previous + 1:
            return None
        previous = final
    return start


class DepthChain:
    """The ``U``/``u`` chain of one diff depth stream.

    ``U`` is the first update id of an event, ``u`` the final one (web-socket-streams.md, "Diff.
    Depth Stream"). Each event's ``U`` should be the previous ``u + 1`` ("How to manage a local
    order book correctly", step 6); an event ending at or before the newest ``u`` (an overlap
    after a reconnect) needs nothing, and one starting at or before ``u + 1`` continues the
    chain. ``U > u + 1`` means updates were missed: `GapDetected` for the missing ``u`` range, and
    the chain goes on from the new event. Filling a diff-depth gap means fetching a snapshot, so
    no `NeedSnapshot` comes with it.

    With ``snapshot_on_start`` the first event asks for a snapshot (`NeedSnapshot`), because a
    book can only be rebuilt from one (step 3).
    """

    __slots__ = ("_last", "_resumed", "gaps", "snapshot_due", "snapshot_on_start", "stream")

    def __init__(self, stream: str, *, snapshot_on_start: bool = True) -> None:
        self.stream = stream
        self.snapshot_on_start = snapshot_on_start
        self._last: int | None = None
        self._resumed = False
        self.snapshot_due = False
        self.gaps = 0

    @property
    def last(self) -> int | None:
        """The newest final update id ``u`` seen, ``None`` before any."""
        return self._last

    def resume_from(self, last_final_update_id: int) -> None:
        """Take ``last_final_update_id`` (the newest ``u`` in storage, after a restart) as the
        chain's end: the first live event continues it (no snapshot is needed) or reveals the
        updates missed since (cause `CAUSE_RESUME`; filling it fetches a snapshot)."""
        if self._last is None or last_final_update_id > self._last:
            self._last = last_final_update_id
            self._resumed = True

    def observe(self, first_update_id: int, final_update_id: int) -> tuple[Action, ...]:
        """What the next event, by its first (``U``) and final (``u``) update ids, calls for."""
        last = self._last
        if last is None:
            self._last = final_update_id
            if not self.snapshot_on_start:
                return _NOTHING
            self.snapshot_due = True
            return (NeedSnapshot(self.stream, "initial snapshot"),)
        if final_update_id <= last:
            return _NOTHING
        self._last = final_update_id
        cause = CAUSE_RESUME if self._resumed else CAUSE_DEPTH
        self._resumed = False
        if first_update_id <= last + 1:
            return _NOTHING
        self.gaps += 1
        self.snapshot_due = True
        return (GapDetected(self.stream, last + 1, first_update_id - 1, cause),)

    def bridge_snapshot(
        self, last_update_id: int, buffered: Sequence[tuple[int, int]]
    ) -> int | None:
        """`bridge_index` of a snapshot over the buffered events; a bridge clears `snapshot_due`."""
        index = bridge_index(last_update_id, buffered)
        if index is not None:
            self.snapshot_due = False
        return index

    def __repr__(self) -> str:
        due = " snapshot-due" if self.snapshot_due else ""
        return f"<DepthChain {self.stream} last_u={self._last} gaps={self.gaps}{due}>"


class Staleness:
    """A silence watchdog for one stream.

    `check` reports a `GapDetected` once a silence exceeds ``max_silence_ms``, from just after
    the last message to the time of the check, once per silence. The silence stays open until
    the stream is `seen` again, which returns a `SilenceEnded` with its real end. A stream
    `watch`-ed but never seen is reported with cause `CAUSE_SILENT` (Binance does not refuse a
    subscription to an unknown or halted symbol: the stream just stays silent); one silent after
    data with `CAUSE_STALE`.
    """

    __slots__ = ("_ever", "_last", "_open", "max_silence_ms", "stream")

    def __init__(self, stream: str, max_silence_ms: int) -> None:
        self.stream = stream
        self.max_silence_ms = max_silence_ms
        self._last: int | None = None
        self._ever = False
        self._open: GapDetected | None = None  # the silence reported and not yet over

    def watch(self, now_ms: int) -> None:
        """Start (or restart, after a resubscribe) the silence clock at ``now_ms``.

        A silence already reported stays open: the stream is still silent.
        """
        if self._open is None:
            self._last = now_ms

    def seen(self, now_ms: int, count: int = 1) -> SilenceEnded | None:
        """Record ``count`` messages, the newest received at ``now_ms``; end an open silence.

        The silence ends just before ``now_ms`` (the recorder's one-second rounds make that exact
        to a second).
        """
        if self._last is None or now_ms > self._last:
            self._last = now_ms
        self._ever = True
        return self._end(now_ms - 1)

    def _end(self, last_missing: int) -> SilenceEnded | None:
        gap = self._open
        if gap is None:
            return None
        self._open = None
        return SilenceEnded(self.stream, gap.first_missing, max(gap.last_missing, last_missing))

    def check(self, now_ms: int) -> GapDetected | None:
        """The silence up to ``now_ms`` if it is too long and not yet reported, else ``None``."""
        last = self._last
        if last is None or self._open is not None or now_ms - last <= self.max_silence_ms:
            return None
        cause = CAUSE_STALE if self._ever else CAUSE_SILENT
        self._open = GapDetected(self.stream, last + 1, now_ms, cause)
        return self._open

    def ended(self, now_ms: int) -> SilenceEnded | None:
        """End the open silence, if any, at ``now_ms`` (a clean stop while it lasts)."""
        return self._end(now_ms)

    def excuse(self, ms: int) -> None:
        """Move the silence clock ``ms`` later: we did not read for that long (back-pressure,
        a locked database), so the stream's silence then was ours, not the exchange's."""
        if self._last is not None and self._open is None:
            self._last += ms

    def __repr__(self) -> str:
        return f"<Staleness {self.stream} max={self.max_silence_ms}ms last={self._last}>"


class RateWatch(Staleness):
    """A silence watchdog for trade streams, whose bound follows the stream's recent rate.

    Trades are pushed in real time, when they happen (web-socket-streams.md, "Trade Streams":
    "Update Speed: Real-time"), so no fixed cadence fits every symbol: a stream is stale once
    silent for ``factor`` mean gaps between its messages (a moving average over the reports `seen`
    receives), never less than ``floor_ms`` nor more than ``ceiling_ms``; until a rate is known,
    ``initial_ms`` (a symbol with no trade for that long after subscribing is reported: unknown,
    halted or very illiquid).
    """

    __slots__ = ("_rate", "ceiling_ms", "factor", "floor_ms")

    def __init__(self, stream: str, factor: float = 20.0, floor_ms: int = 10_000,
                 ceiling_ms: int = 3_600_000, initial_ms: int = 60_000) -> None:
        super().__init__(stream, initial_ms)
        self.factor, self.floor_ms, self.ceiling_ms = factor, floor_ms, ceiling_ms
        self._rate: float | None = None  # messages per ms, exponentially averaged

    def seen(self, now_ms: int, count: int = 1) -> SilenceEnded | None:
        """Record ``count`` messages, the newest received at ``now_ms``; end an open silence."""
        last = self._last
        if self._ever and last is not None and now_ms > last:
            rate = count / (now_ms - last)
            self._rate = rate if self._rate is None else 0.8 * self._rate + 0.2 * rate
            bound = self.factor / self._rate
            self.max_silence_ms = int(min(self.ceiling_ms, max(self.floor_ms, bound)))
        return super().seen(now_ms)


# Expected push cadence per kind: each stream's "Update Speed" in web-socket-streams.md, "Detailed
# Stream information". Streams pushed "Real-time" only when something happens get a long
# default: a quiet symbol is not a fault.
DEFAULT_CADENCE_MS: dict[StreamKind, int] = {
    StreamKind.TICKER: 1_000,
    StreamKind.MINI_TICKER: 1_000,
    StreamKind.WINDOW_TICKER: 1_000,
    StreamKind.AVG_PRICE: 1_000,
    StreamKind.ALL_MINI_TICKERS: 1_000,
    StreamKind.BOOK_TICKER: 10_000,
    StreamKind.REFERENCE_PRICE: 1_000,
    StreamKind.ALL_WINDOW_TICKERS: 1_000,
    # Block trades are rare: hours may pass between two, so only a long silence is reported.
    StreamKind.BLOCK_TRADE: 3_600_000,
}

_Tracker: TypeAlias = IdSequence | KlineGrid | DepthChain
_T = TypeVar("_T", IdSequence, KlineGrid, DepthChain)


def _fallback(stream: str, kind: type[_Tracker]) -> _Tracker:
    if kind is KlineGrid:
        return KlineGrid(stream, 0)
    if kind is DepthChain:
        return DepthChain(stream)
    return IdSequence(stream)


class Sequencer:
    """One tracker per stream name, built from the stream's kind.

    aggTrade and trade -> `IdSequence` (plus a `RateWatch`); kline -> `KlineGrid` (plus a
    watchdog, klines are pushed every 1-2 s); diff depth -> `DepthChain`; every other kind ->
    `Staleness` with silence bound ``cadence x tolerance`` (ticker kinds 1 s, bookTicker 10 s,
    partial depth by its speed), overridable per kind with ``max_silence_ms``. Streams are
    registered by `add` or on first use. Observing a stream with an event of another kind (a
    trade on a kline stream) is a programming error: `TypeError`.
    """

    def __init__(
        self,
        streams: Iterable[str] = (),
        *,
        tolerance: float = 5.0,
        max_silence_ms: Mapping[StreamKind, int] | None = None,
        snapshot_on_start: bool = True,
        time_scale: int = 1,
    ) -> None:
        self.tolerance = tolerance
        self.time_scale = time_scale  # 1000 when exchange times are in µs (timeUnit=MICROSECOND)
        self._silence = dict(max_silence_ms or {})
        self._snapshot_on_start = snapshot_on_start
        self._trackers: dict[str, _Tracker] = {}
        self._watchdogs: dict[str, Staleness] = {}
        for stream in streams:
            self.add(stream)

    def add(self, stream: str, now_ms: int | None = None) -> None:
        """Register ``stream`` (idempotent); with ``now_ms`` its silence clock starts then.

        Raises `InvalidStreamName` for a name `parse_stream` rejects.
        """
        if stream not in self._trackers and stream not in self._watchdogs:
            self._build(parse_stream(stream))
        if now_ms is not None and (dog := self._watchdogs.get(stream)) is not None:
            dog.watch(now_ms)

    def drop(self, stream: str, now_ms: int) -> SilenceEnded | None:
        """Forget ``stream`` (no longer recorded: unsubscribed); returns the end of a silence
        still open at ``now_ms``. A later `add` starts it afresh."""
        self._trackers.pop(stream, None)
        watchdog = self._watchdogs.pop(stream, None)
        return None if watchdog is None else watchdog.ended(now_ms)

    def _build(self, parsed: StreamName) -> None:
        name, kind = parsed.name, parsed.kind
        if kind in (StreamKind.AGG_TRADE, StreamKind.TRADE):
            self._trackers[name] = IdSequence(name)
            self._watchdogs[name] = RateWatch(name)
        elif kind is StreamKind.DIFF_DEPTH:
            self._trackers[name] = DepthChain(name, snapshot_on_start=self._snapshot_on_start)
        elif kind is StreamKind.KLINE:
            interval = KLINE_INTERVAL_MS[parsed.interval] * self.time_scale
            self._trackers[name] = KlineGrid(name, interval)
            # web-socket-streams.md, "Kline/Candlestick Streams": "Update Speed: 1000ms for 1s,
            # 2000ms for the other intervals".
            self._watch(name, kind, 1_000 if parsed.interval == "1s" else 2_000)
        elif kind is StreamKind.PARTIAL_DEPTH:
            self._watch(name, kind, parsed.speed_ms)
        else:
            self._watch(name, kind, DEFAULT_CADENCE_MS.get(kind, 1_000))

    def _watch(self, name: str, kind: StreamKind, cadence_ms: int) -> None:
        bound = self._silence.get(kind, round(cadence_ms * self.tolerance))
        self._watchdogs[name] = Staleness(name, bound)

    def _tracker(self, stream: str, kind: type[_T]) -> _T:
        tracker = self._trackers.get(stream)
        if tracker is None and stream not in self._watchdogs:
            try:
                self.add(stream)
            except InvalidStreamName:
                # A name we cannot parse still gets the tracker its data asks for.
                self._trackers[stream] = _fallback(stream, kind)
            tracker = self._trackers.get(stream)
        if not isinstance(tracker, kind):
            raise TypeError(f"{stream!r} is not tracked by a {kind.__name__}")
        return tracker

    def observe(self, stream: str, event: object) -> tuple[Action, ...]:
        """What a decoded event of ``stream`` calls for: gaps to record and backfill, snapshots.

        The event's type decides what sequences it: an `AggTrade` its ``agg_id``, a `Trade` its
        ``trade_id``, a `KlineEvent` its open time and closed flag, a `DiffDepth` its ``U``/``u``.
        Events of other kinds (`SEQUENCED_KINDS` lists those that are not) give an empty tuple.
        """
        observer = _OBSERVERS.get(type(event))
        if observer is None:
            return _NOTHING
        return observer(self, stream, event)

    def _observe_agg_trade(self, stream: str, event: AggTrade) -> tuple[Action, ...]:
        return self._tracker(stream, IdSequence).observe(event.agg_id)

    def _observe_trade(self, stream: str, event: Trade) -> tuple[Action, ...]:
        return self._tracker(stream, IdSequence).observe(event.trade_id)

    def _observe_kline(self, stream: str, event: KlineEvent) -> tuple[Action, ...]:
        kline = event.kline
        return self._tracker(stream, KlineGrid).observe(kline.open_time, kline.is_closed)

    def _observe_depth(self, stream: str, event: DiffDepth) -> tuple[Action, ...]:
        return self._tracker(stream, DepthChain).observe(
            event.first_update_id, event.final_update_id)

    def observe_id(self, stream: str, id: int) -> tuple[Action, ...]:
        """`IdSequence.observe` for an aggTrade or trade stream (prefer `observe`)."""
        return self._tracker(stream, IdSequence).observe(id)

    def observe_kline(self, stream: str, open_time: int, closed: bool = True
                      ) -> tuple[Action, ...]:
        """`KlineGrid.observe` for a kline stream (prefer `observe`)."""
        return self._tracker(stream, KlineGrid).observe(open_time, closed)

    def observe_depth(
        self, stream: str, first_update_id: int, final_update_id: int
    ) -> tuple[Action, ...]:
        """`DepthChain.observe` for a diff depth stream, ``U`` and ``u`` (prefer `observe`)."""
        return self._tracker(stream, DepthChain).observe(first_update_id, final_update_id)

    def bridge_snapshot(
        self, stream: str, last_update_id: int, buffered: Sequence[tuple[int, int]]
    ) -> int | None:
        """`DepthChain.bridge_snapshot` for a diff depth stream."""
        return self._tracker(stream, DepthChain).bridge_snapshot(last_update_id, buffered)

    def seen(self, stream: str, now_ms: int, count: int = 1) -> SilenceEnded | None:
        """Record that ``stream`` delivered ``count`` messages, the newest at ``now_ms``.

        Feeds the stream's watchdog, if it has one; returns a `SilenceEnded` when this ends a
        silence `stale` reported (store it as the gap's real end).
        """
        dog = self._watchdogs.get(stream)
        if dog is None and stream not in self._trackers:
            self.add(stream)
            dog = self._watchdogs.get(stream)
        if dog is None:
            return None
        return dog.seen(now_ms, count)

    def stale(self, now_ms: int) -> list[GapDetected]:
        """Every watched stream silent for too long, each reported once per silence.

        Each report spans the silence so far (``last_missing`` is ``now_ms``); `seen` later
        returns its real end, and `ended` ends those still open at a stop.
        """
        return [gap for dog in self._watchdogs.values() if (gap := dog.check(now_ms)) is not None]

    def ended(self, now_ms: int) -> list[SilenceEnded]:
        """End every silence still open at ``now_ms`` (a clean stop), each once."""
        return [end for dog in self._watchdogs.values() if (end := dog.ended(now_ms)) is not None]

    def resume(self, stream: str, last_id: int, complete: bool = True) -> bool:
        """Resume a sequenced stream from its last stored id (open time for klines, whose
        candle may be unfinished: ``complete`` False; final update id for diff depth).

        Returns ``False`` (and does nothing) for kinds that carry no sequence.
        """
        self.add(stream)
        tracker = self._trackers.get(stream)
        if isinstance(tracker, KlineGrid):
            tracker.resume_from(last_id, complete)
        elif isinstance(tracker, IdSequence | DepthChain):
            tracker.resume_from(last_id)
        else:
            return False
        return True

    def excuse(self, ms: int) -> None:
        """Time we did not read (``ms``) is not the exchange's silence: move every watchdog's
        clock that much later (`Staleness.excuse`)."""
        if ms > 0:
            for dog in self._watchdogs.values():
                dog.excuse(ms)

    def tracker(self, stream: str) -> IdSequence | KlineGrid | DepthChain | Staleness | None:
        """The tracker of ``stream`` (its watchdog for unsequenced kinds), ``None`` if unknown."""
        return self._trackers.get(stream) or self._watchdogs.get(stream)

    def __len__(self) -> int:
        return len(self._trackers.keys() | self._watchdogs.keys())

    def __repr__(self) -> str:
        gaps = sum(t.gaps for t in self._trackers.values())
        due = sum(isinstance(t, DepthChain) and t.snapshot_due for t in self._trackers.values())
        return f"<Sequencer streams={len(self)} gaps={gaps} snapshots_due={due}>"


# Which method sequences an event, by the event's type (the msgspec Structs FrameDecoder gives).
_OBSERVERS: dict[type, Callable[[Sequencer, str, Any], tuple[Action, ...]]] = {
    AggTrade: Sequencer._observe_agg_trade,
    Trade: Sequencer._observe_trade,
    KlineEvent: Sequencer._observe_kline,
    DiffDepth: Sequencer._observe_depth,
}
