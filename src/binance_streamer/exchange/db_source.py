"""A recorded database (SQLite file or ``postgresql://`` URL) as a replay source.

Every market table's rows received live (source ``ws``) become frames again (`core.feed`, keys
in Binance's order), merged across tables in receive order (``received_ns``, then ``id``) and
paced by it: ``offset_ms`` counts from the first row's receive time, and a pause longer than
`sources.MAX_GAP_MS` (the recorder was stopped) is replayed as none, as for capture files.
REST depth snapshots (``depth_snapshot``) are snapshot items at their receive time.

Rows fetched over REST (source ``rest``: gap backfill and ``history``) were never received on a
stream, so they are not replayed as frames (a recorder would store them as live rows, with a
receive time and an event time Binance never sent); REST answers still hold them. Aggregate
trades and trades go on the timeline as `BACKFILL` items, which the market keeps for REST but
nobody can subscribe to, each right before the first live one of its symbol with a higher id
(ids stay increasing, as `SymbolState` needs); klines are `ReplaySource.history` to load into
the REST history of the stream before the replay starts (`preload_history`).

Stream names are rebuilt from the table and the row: ``kline_<interval>``, ``ticker_<window>``,
``depth<levels>``. The depth update speed is not stored: a diff-depth stream is ``@100ms`` when
two of its consecutive diffs are less than 900 ms apart by event time, a partial-depth stream
when two of its consecutive rows arrived less than 500 ms apart; else the 1000 ms stream.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from bisect import bisect_right
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from binance_streamer.core.feed import FRAME_BUILDERS
from binance_streamer.core.tables import TABLES
from binance_streamer.errors import InvalidDatabase
from binance_streamer.exchange.sources import MAX_GAP_MS, Recorded, ReplaySource
from binance_streamer.storage.id_range import KEY_ORDERED, key_range_sql, symbol_ranges
from binance_streamer.storage.open import Reader, open_reader
from binance_streamer.storage.postgres import is_postgres_url, redact

if TYPE_CHECKING:
    from binance_streamer.exchange.market import Market

__all__ = ["BACKFILL", "ReplayFilter", "is_database", "load_database", "preload_history"]

BACKFILL = ""  # the stream of backfilled trades on the timeline: kept for REST, never sent
_SQLITE_HEADER = b"SQLite format 3\x00"
_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_COLUMNS = {t.name: t.column_names for t in TABLES}
_ID = {"agg_trade": "agg_id", "trade": "trade_id"}  # backfilled tables REST answers from
_FAST_EVENT_MS = 900  # diff depth: event-time gap below which the stream is @100ms
_FAST_RECEIVE_NS = 500_000_000  # partial depth: receive-time gap below which it is @100ms
_cursor_names = itertools.count()


@dataclass(frozen=True)
class ReplayFilter:
    """What of a recorded database to replay: ``symbols`` (all when empty; any case) received
    from ``since_ms`` (inclusive) until ``until_ms`` (exclusive), epoch ms. Backfilled rows,
    which have no receive time, are chosen by their trade or open time instead."""

    symbols: tuple[str, ...] = ()
    since_ms: int | None = None
    until_ms: int | None = None

    def where(self, mark: str, time_column: str, scale: int) -> tuple[str, list[Any]]:
        """SQL conditions (`` AND ...``) and their parameters; times multiplied by ``scale``."""
        sql, params = "", list[Any]()
        if self.symbols:
            sql += f" AND symbol IN ({', '.join(mark for _ in self.symbols)})"
            params += [s.upper() for s in self.symbols]
        for bound, op in ((self.since_ms, ">="), (self.until_ms, "<")):
            if bound is not None:
                sql += f' AND "{time_column}" {op} {mark}'
                params.append(bound * scale)
        return sql, params

    def key_ranges(self, reader: Reader, table: str, time_column: str, scale: int
                   ) -> tuple[str, list[Any]]:
        """On a table of `KEY_ORDERED` filtered by its own time column for named symbols, a
        condition (`` AND ...``) on each symbol's natural-key range for the time range (it
        has no time index: `storage.id_range`); else nothing."""
        order = KEY_ORDERED.get(table)
        if (order is None or order.time != time_column or not self.symbols
                or (self.since_ms is None and self.until_ms is None)):
            return "", []
        since, until = (None if b is None else b * scale for b in (self.since_ms, self.until_ms))
        ranges = symbol_ranges(reader, table, sorted({s.upper() for s in self.symbols}),
                               since, until)
        cond, params = key_range_sql(table, ranges, reader.mark)
        return " AND " + cond, params


def is_database(path: str | Path) -> bool:
    """Whether ``path`` names a database: a ``postgresql://`` URL, a SQLite file, or a file
    named ``*.db``, ``*.sqlite`` or ``*.sqlite3`` (which must then be one)."""
    if is_postgres_url(path):
        return True
    p = Path(path)
    if p.suffix.lower() in _DB_SUFFIXES:
        return True
    try:
        with p.open("rb") as fh:
            return fh.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return False


def load_database(database: str | Path, replay_filter: ReplayFilter | None = None
                  ) -> ReplaySource:
    """The replay source of a recorded database (see the module docstring).

    Raises `InvalidDatabase` when it is not a recording or holds nothing to replay for the
    filter, and `MissingExtra` for a PostgreSQL URL without psycopg.
    """
    flt = replay_filter or ReplayFilter()
    name = redact(str(database)) if is_postgres_url(database) else str(database)
    src = ReplaySource(name)
    with open_reader(database) as reader:
        conn, mark = reader.conn, reader.mark
        unit = conn.execute(f"SELECT value FROM meta WHERE key = {mark}",  # noqa: S608
                            ("time_unit",)).fetchone()
        if unit and unit[0] == "microsecond":
            raise InvalidDatabase(f"{name} was recorded with microsecond times; replay serves "
                                  "millisecond times only")
        with contextlib.closing(_live_rows(reader, flt)) as live:  # cursors close here
            _timeline(src, live)
        _interleave(src, {t: list(_rows(conn, mark, _backfill_sql(reader, t, flt)))
                          for t in _ID})
        src.history = [_frame("kline", r)[1:] for r in
                       _rows(conn, mark, _backfill_sql(reader, "kline", flt))]
    if not src.items and not src.history:
        raise InvalidDatabase(f"{name} holds no recorded market data to replay{_asked(flt)}")
    return src


def _asked(flt: ReplayFilter) -> str:
    parts = [f"for {', '.join(flt.symbols)}"] if flt.symbols else []
    if flt.since_ms is not None or flt.until_ms is not None:
        parts.append(f"received from {flt.since_ms} until {flt.until_ms} (epoch ms)")
    return (" " + " ".join(parts)) if parts else ""


# -- reading -----------------------------------------------------------------------------------


def _rows(conn: Any, mark: str, query: tuple[str, list[Any]]) -> Iterator[tuple[Any, ...]]:
    """The rows of ``query``, fetched as iterated (a server-side cursor on PostgreSQL)."""
    sql, params = query
    if mark == "?":
        cur = conn.execute(sql, params)
    else:
        cur = conn.cursor(name=f"replay_{next(_cursor_names)}")
        cur.execute(sql, params)
    try:
        while page := cur.fetchmany(4096):
            yield from page
    finally:
        cur.close()


def _select(table: str, tail: str = "") -> str:
    cols = ", ".join(f'"{c}"' for c in _COLUMNS[table])
    return f"SELECT {cols} FROM {table} WHERE source = {tail}"  # noqa: S608 - names from specs


def _filtered(reader: Reader, table: str, flt: ReplayFilter, time_column: str, scale: int
              ) -> tuple[str, list[Any]]:
    cond, params = flt.where(reader.mark, time_column, scale)
    ranges, range_params = flt.key_ranges(reader, table, time_column, scale)
    return cond + ranges, params + range_params


def _live_sql(reader: Reader, table: str, flt: ReplayFilter) -> tuple[str, list[Any]]:
    source = "'rest'" if table == "depth_snapshot" else "'ws'"
    cond, params = _filtered(reader, table, flt, "received_ns", 1_000_000)
    return _select(table, source) + cond + " ORDER BY received_ns, id", params


def _backfill_sql(reader: Reader, table: str, flt: ReplayFilter) -> tuple[str, list[Any]]:
    cond, params = _filtered(reader, table, flt,
                             "open_time" if table == "kline" else "trade_time", 1)
    order = "symbol, open_time" if table == "kline" else f"symbol, {_ID[table]}"
    return _select(table, "'rest'") + cond + f" ORDER BY {order}", params


def _live_rows(reader: Reader, flt: ReplayFilter
               ) -> Generator[tuple[int, int, tuple[str, tuple[Any, ...]]], None, None]:
    """``(received_ns, table index, row)`` of every live row and depth snapshot, merged in
    receive order."""
    conn, mark = reader.conn, reader.mark

    def keyed(n: int, table: str) -> Iterator[tuple[int, int, tuple[str, tuple[Any, ...]]]]:
        for row in _rows(conn, mark, _live_sql(reader, table, flt)):
            yield row[-2], n, (table, row)  # every row ends with (received_ns, source)

    tables = [*FRAME_BUILDERS, "depth_snapshot"]
    cursors = [keyed(n, t) for n, t in enumerate(tables)]
    yield from heapq.merge(*cursors, key=lambda e: e[:2])


# -- building the timeline ---------------------------------------------------------------------


def _frame(table: str, row: tuple[Any, ...]) -> tuple[str, str, Any]:
    """``(table, stream name without depth speed, payload)`` of a stored row."""
    suffix, payload = FRAME_BUILDERS[table](row)
    for key, value in payload.items():
        if isinstance(value, msgspec.Raw):
            payload[key] = msgspec.json.decode(value)
    return table, f"{row[0].lower()}@{suffix}", payload


def _timeline(src: ReplaySource,
              rows: Iterable[tuple[int, int, tuple[str, tuple[Any, ...]]]]) -> None:
    """Fill ``src.items`` from merged rows; depth stream names get their speed at the end."""
    last_ns: int | None = None
    offset = 0.0
    fast: dict[str, bool] = {}  # depth stream -> @100ms
    last_seen: dict[str, int] = {}
    for ns, _, (table, row) in rows:
        if last_ns is None:
            last_ns = ns
            src.base_ms = ns // 1_000_000
        gap_ms = (ns - last_ns) / 1e6
        if gap_ms <= MAX_GAP_MS:
            offset += gap_ms
        last_ns = ns
        if table == "depth_snapshot":
            body = {"lastUpdateId": row[1], "bids": msgspec.json.decode(row[2]),
                    "asks": msgspec.json.decode(row[3])}
            src.items.append(Recorded(offset, "", body, snapshot_symbol=row[0]))
            continue
        _, stream, payload = _frame(table, row)
        if table in ("depth_update", "partial_depth"):
            clock = payload["E"] if table == "depth_update" else ns
            limit = _FAST_EVENT_MS if table == "depth_update" else _FAST_RECEIVE_NS
            before = last_seen.get(stream)
            fast[stream] = fast.get(stream, False) or (before is not None
                                                       and 0 <= clock - before < limit)
            last_seen[stream] = clock
        src.items.append(Recorded(offset, stream, payload))
    for item in src.items:
        if fast.get(item.stream):
            item.stream += "@100ms"


def _interleave(src: ReplaySource, backfill: dict[str, list[tuple[Any, ...]]]) -> None:
    """Put backfilled (aggregate) trades on the timeline as `BACKFILL` items, each right
    before the first live one of its symbol with a higher id (at the start without any)."""
    before: dict[int, list[Recorded]] = {}
    end: list[Recorded] = []
    for table, rows in backfill.items():
        live = _live_ids(src.items, "aggTrade" if table == "agg_trade" else "trade")
        for row in rows:
            _, _, payload = _frame(table, row)
            positions, ids = live.get(row[0], ([], []))
            at = bisect_right(ids, row[1])
            if not positions:
                before.setdefault(0, []).append(Recorded(0.0, BACKFILL, payload))
            elif at < len(positions):
                offset = src.items[positions[at]].offset_ms
                before.setdefault(positions[at], []).append(Recorded(offset, BACKFILL, payload))
            else:
                end.append(Recorded(src.duration_ms, BACKFILL, payload))
    if not before and not end:
        return
    items: list[Recorded] = []
    for n, item in enumerate(src.items):
        items += before.get(n, ())
        items.append(item)
    src.items = items + end


def _live_ids(items: list[Recorded], kind: str) -> dict[str, tuple[list[int], list[int]]]:
    """Per symbol, the positions of its live ``kind`` items and the highest id up to each."""
    out: dict[str, tuple[list[int], list[int]]] = {}
    key = "a" if kind == "aggTrade" else "t"
    for n, item in enumerate(items):
        payload = item.payload
        if item.stream.endswith("@" + kind):
            positions, ids = out.setdefault(payload["s"], ([], []))
            positions.append(n)
            ids.append(max(payload[key], ids[-1]) if ids else payload[key])
    return out


def preload_history(market: Market, sources: Iterable[ReplaySource]) -> None:
    """Before the replay starts: load the sources' REST-only history (backfilled klines) into
    ``market``, which REST ``klines`` answers from (nothing is sent on a stream)."""
    for src in sources:
        for stream, payload in src.history:
            market.mark_recorded(market.symbol(payload["s"]), stream)
            market.history.add(stream, payload)
