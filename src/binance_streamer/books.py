"""Order books rebuilt from a recording: any symbol's book at any moment, or a series of them.

A book at time T is the latest stored REST snapshot at or before T, with the stored ``@depth``
diffs applied in update-id order up to the last one with event time <= T, by Binance's rules
(web-socket-streams.md "How to manage a local order book correctly", `core.order_book`). When
the chain between the snapshot and T is broken (an unfilled gap) or there is no snapshot yet,
no book is returned: `BookUnknown` names the nearest earlier and later times at which the book
is known. A wrong book is never returned. Recordings of partial depth only (``@depth<N>``) give
the latest partial book at T.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import msgspec

from binance_streamer.core.order_book import Level, OrderBook
from binance_streamer.errors import BookUnknown, ConfigError, iso_time
from binance_streamer.storage.depth import DepthReader, StoredDiff, StoredLevels
from binance_streamer.storage.open import open_reader

__all__ = ["Book", "order_book", "order_books", "parse_every"]

_LEVELS = msgspec.json.Decoder(list[tuple[str, str]])
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


@dataclass(frozen=True)
class Book:
    """One symbol's book at ``time_ms``: the best ``depth`` levels per side.

    ``last_update_id`` is Binance's ``lastUpdateId`` of the book; ``updated_ms`` the time of
    the last change applied (the event time of the last diff at or before it);
    ``source`` is ``"depth"`` (snapshot + diffs) or ``"partial"`` (a ``@depth<N>`` book).
    """

    symbol: str
    time_ms: int
    last_update_id: int
    updated_ms: int
    bids: list[Level]
    asks: list[Level]
    source: str

    @property
    def spread(self) -> Decimal | None:
        """Best ask minus best bid, None when a side is empty."""
        if not self.bids or not self.asks:
            return None
        return Decimal(self.asks[0][0]) - Decimal(self.bids[0][0])

    @property
    def mid(self) -> Decimal | None:
        """The mid price, None when a side is empty."""
        if not self.bids or not self.asks:
            return None
        return (Decimal(self.asks[0][0]) + Decimal(self.bids[0][0])) / 2


def parse_every(text: str) -> int:
    """An interval such as ``100ms``, ``1s``, ``5m``, ``1h`` in ms; `ConfigError` otherwise."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", text.strip())
    if not match or int(match[1]) == 0:
        raise ConfigError(f"invalid interval {text!r}: use a number and a unit, e.g. 100ms, 1s, "
                          "5m, 1h")
    return int(match[1]) * _UNITS_MS[match[2]]


def order_book(database: str | Path, symbol: str, at: int, depth: int = 20) -> Book:
    """The book of ``symbol`` at ``at`` (epoch ms) from a SQLite file or ``postgresql://`` URL.

    Raises `BookUnknown` when the recording cannot tell (see the module docstring),
    `InvalidDatabase` when ``database`` holds no recording.
    """
    with open_reader(database) as reader:
        return _Rebuilder(DepthReader(reader.conn, reader.mark), symbol.upper()).at(at, depth)


def order_books(database: str | Path, symbol: str, since: int, until: int, depth: int = 25,
                every: str = "1s") -> Iterator[Book]:
    """The book of ``symbol`` every ``every`` from ``since`` to ``until`` (epoch ms, both
    included), as market-data vendors' ``book_snapshot_<depth>``; constant memory (diffs are
    read in pages, in update-id order).

    Moments at which the book is unknown (before the first snapshot, across a chain break until
    a later snapshot is bridged, after the last stored diff) are skipped, never guessed.
    """
    step = parse_every(every)
    with open_reader(database) as reader:
        rebuilder = _Rebuilder(DepthReader(reader.conn, reader.mark), symbol.upper())
        yield from rebuilder.series(since, until, step, depth)


class _Break(Exception):
    """The chain broke: the book is known up to ``earlier`` (ms), updates from ``first_id``
    are missing (the diff after them has event time ``time_ms``)."""

    def __init__(self, earlier: int | None, first_id: int, time_ms: int) -> None:
        super().__init__(first_id)
        self.earlier, self.first_id, self.time_ms = earlier, first_id, time_ms


class _Rebuilder:
    """Rebuilds one symbol's books from a `DepthReader`.

    The book at time T is known when: a stored diff ``D`` is the last with event time <= T,
    the newest stored snapshot at or below ``D``'s ``u`` is bridged by the stored diffs, they
    chain up to ``D``, the diff after ``D`` chains on too (else updates went missing somewhere
    between them), and, with no diff after ``D``, T is before the recording stopped receiving.
    Only the newest snapshot needs trying: an older one's chain passes the same diffs.
    """

    def __init__(self, reader: DepthReader, symbol: str) -> None:
        self.reader, self.symbol = reader, symbol

    def at(self, at: int, depth: int) -> Book:
        """The book at ``at``, or `BookUnknown`."""
        if not self.reader.has_diffs(self.symbol):
            return self._partial(at, depth)
        book, last = self._locate(at)
        return _book(self.symbol, at, book, last.time_ms, depth)

    def _locate(self, at: int) -> tuple[OrderBook, StoredDiff]:
        """The full book at ``at`` and the last diff in it (or the one its snapshot ends at),
        or `BookUnknown`."""
        last = self.reader.last_diff_at(self.symbol, at)
        if last is None:
            raise BookUnknown(f"no depth of {self.symbol} was recorded at or before "
                              f"{iso_time(at)}", None, self._known_after(0))
        snap = self.reader.snapshot_upto_id(self.symbol, last.final)
        if snap is None:
            raise BookUnknown(f"no depth snapshot of {self.symbol} was stored before "
                              f"{iso_time(at)}", None, self._known_after(last.final))
        book = _load(snap)
        try:
            self._advance(book, snap, last, at)
        except _Break as brk:
            raise BookUnknown(f"the depth chain of {self.symbol} breaks before {iso_time(at)}: "
                              f"updates from {brk.first_id} are missing", brk.earlier,
                              self._known_after(brk.first_id - 1)) from None
        return book, last

    def _advance(self, book: OrderBook, snap: StoredLevels, last: StoredDiff, at: int) -> None:
        """Apply the diffs after the snapshot up to ``last``, checking the one after it."""
        updated: int | None = None
        for diff in self.reader.diffs_after(self.symbol, snap.last_update_id):
            _check_chain(book, diff, updated)
            if diff.final > last.final:
                return
            if diff.time_ms > at:
                raise self._disorder(at)
            updated = _apply(book, diff)
        self._check_end(last, at)

    def _disorder(self, at: int) -> BookUnknown:
        return BookUnknown(f"the stored depth diffs of {self.symbol} around {iso_time(at)} are "
                           "not in event-time order; the book there cannot be told", None, None)

    def _check_end(self, last: StoredDiff, at: int) -> None:
        """`BookUnknown` when ``at`` is after the recording stopped receiving (``last`` is the
        symbol's last stored diff; the recording went on as long as any diff came after)."""
        end = self._end_of(last)
        if at > end:
            raise BookUnknown(f"the depth recording of {self.symbol} ends at {iso_time(end)}",
                              end, None)

    def _end_of(self, last: StoredDiff) -> int:
        """The last moment the recording still received, for a symbol whose last stored diff
        is ``last``: its event time plus how long diffs of any symbol kept coming after it."""
        return last.time_ms + max(0, self.reader.latest_received_ns() - last.received_ns
                                  ) // 1_000_000

    def _known_after(self, after_id: int) -> int | None:
        """The first time at which the book is known again after update ``after_id``: a stored
        snapshot bridged by a stored diff that the next diff chains on; None if never."""
        min_id = after_id
        while (snap := self.reader.snapshot_from_id(self.symbol, min_id)) is not None:
            found = self._first_known(snap)
            if isinstance(found, int) or found is None:
                return found
            min_id = found.min_id
        return None

    def _first_known(self, snap: StoredLevels) -> int | _Resume | None:
        """When the book from ``snap`` is first known, or where to look for another snapshot."""
        prev: StoredDiff | None = None
        for diff in self.reader.diffs_after(self.symbol, snap.last_update_id - 1):
            if prev is None:
                if diff.first > snap.last_update_id + 1:  # not bridged: too old
                    return _Resume(snap.last_update_id + 1)
                prev = diff
                continue
            if diff.first > prev.final + 1:  # the chain breaks right after ``prev``
                return _Resume(diff.first - 1)
            return prev.time_ms
        return None if prev is None else prev.time_ms

    def _partial(self, at: int, depth: int) -> Book:
        stored = self.reader.partial_before(self.symbol, at)
        if stored is None:
            raise BookUnknown(f"no depth of {self.symbol} was recorded at or before "
                              f"{iso_time(at)}", None, self.reader.partial_after(self.symbol, at))
        bids, asks = _LEVELS.decode(stored.bids), _LEVELS.decode(stored.asks)
        return Book(self.symbol, at, stored.last_update_id, stored.time_ms, bids[:depth],
                    asks[:depth], "partial")

    def series(self, since: int, until: int, step: int, depth: int) -> Iterator[Book]:
        """Books every ``step`` ms from ``since`` to ``until`` where they are known."""
        tick = since
        partial_only = not self.reader.has_diffs(self.symbol)
        while tick <= until:
            try:
                if partial_only:
                    yield self._partial(tick, depth)
                    tick += step
                    continue
                book, last = self._locate(tick)
            except BookUnknown as unknown:
                if unknown.later is None:
                    return
                tick = max(tick + step, _align_up(unknown.later, since, step))
                continue
            tick = yield from self._run(book, last, tick, until, step, depth)

    def _run(self, book: OrderBook, last: StoredDiff, tick: int, until: int, step: int,
             depth: int) -> Generator[Book, None, int]:
        """Books from the book at ``tick`` onwards; returns the tick to go on from (past
        ``until`` when the recording ends, the next known time after a break)."""
        assert book.last_update_id is not None
        updated = last.time_ms
        try:
            for diff in self.reader.diffs_after(self.symbol, book.last_update_id):
                _check_chain(book, diff, updated)
                if diff.time_ms < last.time_ms:
                    raise self._disorder(tick)
                while tick < diff.time_ms and tick <= until:
                    yield _book(self.symbol, tick, book, updated, depth)
                    tick += step
                if tick > until:
                    return tick
                updated = _apply(book, diff)
                last = diff
        except _Break as brk:
            later = self._known_after(brk.first_id - 1)
            if later is None:
                return until + 1
            return _align_up(max(later, brk.time_ms), tick, step)
        end = min(until, self._end_of(last))  # the recording ends: books until it stopped
        while tick <= end:
            yield _book(self.symbol, tick, book, updated, depth)
            tick += step
        return until + 1


class _Resume(NamedTuple):
    """Look for the book again from the first snapshot with ``lastUpdateId >= min_id``."""

    min_id: int


def _align_up(time_ms: int, origin: int, step: int) -> int:
    """The first tick ``origin + k*step`` at or after ``time_ms``."""
    return origin + max(0, -(-(time_ms - origin) // step)) * step


def _check_chain(book: OrderBook, diff: StoredDiff, updated: int | None) -> None:
    """`_Break` unless ``diff`` is stale or chains on the book (``U <= lastUpdateId + 1``).

    ``updated`` is the time of the last diff applied (None: none since the snapshot); the book
    is known until just before it, since the missing updates may have come any time after.
    """
    last = book.last_update_id
    assert last is not None
    if diff.final > last and diff.first > last + 1:
        raise _Break(None if updated is None else updated - 1, last + 1, diff.time_ms)


def _apply(book: OrderBook, diff: StoredDiff) -> int:
    """Apply a diff that `_check_chain` passed; its event time."""
    book.apply(diff.first, diff.final, _LEVELS.decode(diff.bids), _LEVELS.decode(diff.asks))
    return diff.time_ms


# The ``limit`` values of GET /api/v3/depth (rest-api.md "Order book"): a snapshot side with
# exactly that many levels was cut there, and levels past its worst price are unknown.
_CUT_AT = frozenset({5, 10, 20, 50, 100, 500, 1000, 5000})


def _load(snap: StoredLevels) -> OrderBook:
    bids, asks = _LEVELS.decode(snap.bids), _LEVELS.decode(snap.asks)
    book = OrderBook()
    book.load_snapshot(snap.last_update_id, bids, asks,
                       cut=(len(bids) in _CUT_AT, len(asks) in _CUT_AT))
    return book


def _book(symbol: str, at: int, book: OrderBook, updated: int, depth: int) -> Book:
    bids, asks = book.top(depth)
    assert book.last_update_id is not None
    return Book(symbol, at, book.last_update_id, updated, bids, asks, "depth")
