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

import msgspec

from binance_streamer.core.order_book import Level, OrderBook
from binance_streamer.errors import BookUnknown, ConfigError, iso_time
from binance_streamer.storage.depth import DepthReader, StoredDiff, StoredLevels
from binance_streamer.storage.open import open_reader

__all__ = ["Book", "order_book", "order_books", "parse_every"]

_LEVELS = msgspec.json.Decoder(list[tuple[str, str]])
_TRIES = 4  # snapshots tried before giving up (the newest may be too old to be bridged)
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
    """Rebuilds one symbol's books from a `DepthReader`."""

    def __init__(self, reader: DepthReader, symbol: str) -> None:
        self.reader, self.symbol = reader, symbol

    def at(self, at: int, depth: int) -> Book:
        """The book at ``at``, or `BookUnknown`."""
        if not self.reader.has_diffs(self.symbol):
            return self._partial(at, depth)
        book, updated = self._locate(at)
        return _book(self.symbol, at, book, updated, depth)

    def _locate(self, at: int) -> tuple[OrderBook, int]:
        """The full book at ``at`` and the time of its last change, or `BookUnknown`."""
        last = self.reader.last_diff_at(self.symbol, at)
        if last is None:
            raise BookUnknown(f"no depth of {self.symbol} was recorded at or before {iso_time(at)}",
                              None, self._known_after(0))
        snapshots = self.reader.snapshots_upto_id(self.symbol, last.final, _TRIES)
        if not snapshots:
            raise BookUnknown(f"no depth snapshot of {self.symbol} was stored before "
                              f"{iso_time(at)}", None, self._known_after(last.final))
        first_break: _Break | None = None
        for snap in snapshots:
            book = _load(snap)
            try:
                return book, self._advance(book, snap, last)
            except _Break as brk:
                first_break = first_break or brk
        assert first_break is not None
        raise BookUnknown(f"the depth chain of {self.symbol} breaks before {iso_time(at)}: "
                          f"updates from {first_break.first_id} are missing", first_break.earlier,
                          self._known_after(first_break.first_id - 1))

    def _advance(self, book: OrderBook, snap: StoredLevels, last: StoredDiff) -> int:
        """Apply the diffs after the snapshot up to ``last``; the time of the last change.

        The diff after ``last`` must chain on too: when it does not, updates are missing
        somewhere between ``last`` and it, so the book at ``last``'s time is not known either.
        """
        updated: int | None = None
        for diff in self.reader.diffs_after(self.symbol, snap.last_update_id):
            _check_chain(book, diff, updated)
            if diff.final > last.final:
                break
            updated = _apply(book, diff)
        return last.time_ms if updated is None else updated

    def _known_after(self, after_id: int) -> int | None:
        """The first time after update ``after_id`` at which a stored snapshot is bridged by a
        stored diff (the book is known again), None if never."""
        for snap in self.reader.snapshots_from_id(self.symbol, after_id, _TRIES):
            for diff in self.reader.diffs_after(self.symbol, snap.last_update_id - 1):
                if diff.first <= snap.last_update_id + 1:  # ends at it, or bridges it
                    return diff.time_ms
                break
        return None

    def _partial(self, at: int, depth: int) -> Book:
        found = self.reader.partial_before(self.symbol, at)
        if found is None:
            raise BookUnknown(f"no depth of {self.symbol} was recorded at or before {iso_time(at)}",
                              None, self.reader.partial_after(self.symbol, at))
        _, stored = found
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
                book, updated = self._locate(tick)
            except BookUnknown as unknown:
                if unknown.later is None:
                    return
                tick = max(tick + step, _align_up(unknown.later, since, step))
                continue
            tick = yield from self._run(book, updated, tick, until, step, depth)

    def _run(self, book: OrderBook, updated: int, tick: int, until: int, step: int,
             depth: int) -> Generator[Book, None, int]:
        """Books from the book at ``tick`` onwards; returns the tick to go on from (past
        ``until`` when the recording ends, the next known time after a break)."""
        assert book.last_update_id is not None
        try:
            for diff in self.reader.diffs_after(self.symbol, book.last_update_id):
                _check_chain(book, diff, updated)
                while tick < diff.time_ms and tick <= until:
                    yield _book(self.symbol, tick, book, updated, depth)
                    tick += step
                if tick > until:
                    return tick
                updated = _apply(book, diff)
        except _Break as brk:
            later = self._known_after(brk.first_id - 1)
            if later is None:
                return until + 1
            return _align_up(max(later, brk.time_ms), tick, step)
        return until + 1  # the recording ends here: later books are unknown


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


def _load(snap: StoredLevels) -> OrderBook:
    book = OrderBook()
    book.load_snapshot(snap.last_update_id, _LEVELS.decode(snap.bids), _LEVELS.decode(snap.asks))
    return book


def _book(symbol: str, at: int, book: OrderBook, updated: int, depth: int) -> Book:
    bids, asks = book.top(depth)
    assert book.last_update_id is not None
    return Book(symbol, at, book.last_update_id, updated, bids, asks, "depth")
