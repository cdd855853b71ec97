"""Streaming reads for export: one stream kind's rows in pages, in a stable order, constant memory.

A `Selection` is what the user asked for (a table, the stream kind's own filters such as the kline
interval, symbols, a time range); `pages` walks it with a server-side cursor on PostgreSQL and a
lazily stepped cursor on SQLite, ``page_rows`` rows at a time. Rows come grouped by symbol, in the
table's natural-key order within a symbol (the exchange's id or time order), which the natural
key's UNIQUE index gives without sorting; `feed_pages` orders by receive time instead, for the
merged feed. On the tables of `id_range.KEY_ORDERED` (no time index), a time range over named
symbols is read one symbol at a time within the natural-key range `id_bounds` bisects for it.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import queue
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binance_streamer.core.streams import InvalidStreamName, StreamKind, parse_stream
from binance_streamer.core.tables import TABLES, TableSpec
from binance_streamer.storage.bookkeeping import exchange_time_scale
from binance_streamer.storage.id_range import KEY_ORDERED, id_bounds, key_range_sql
from binance_streamer.storage.open import Reader, open_reader
from binance_streamer.storage.query import table_for
from binance_streamer.storage.schema import TIME_COLUMN
from binance_streamer.storage.sqlite import sqlite_path

__all__ = ["PAGE_ROWS", "Selection", "arrow_batches", "count_rows", "feed_pages", "narrowed",
           "pages", "per_symbol", "prefetched", "select", "time_unit"]

PAGE_ROWS = 16_384  # Python rows per page
BATCH_ROWS = 65_536  # rows per Arrow batch
SPECS = {t.name: t for t in TABLES}
_cursor_names = itertools.count()


@dataclass(frozen=True)
class Selection:
    """Rows of ``spec`` matching ``where`` (SQL over ``params``); ``stream`` is the stream kind
    as the user named it (``kline_1m``), or the table name."""

    spec: TableSpec
    stream: str
    where: tuple[str, ...] = ()
    params: tuple[Any, ...] = field(default=())
    symbols: tuple[str, ...] = ()  # upper case, sorted; empty: all
    span: tuple[int | None, int | None] = (None, None)  # [since, until) on ``span_column``
    span_column: str = ""
    mark: str = "?"  # the placeholder of ``where``

    @property
    def bisectable(self) -> bool:
        """Whether the natural key can be bisected for the time range, symbol by symbol."""
        order = KEY_ORDERED.get(self.spec.name)
        return (order is not None and order.time == self.span_column and bool(self.symbols)
                and self.span != (None, None))

    @property
    def time_column(self) -> str:
        return TIME_COLUMN[self.spec.name]


def select(kind: str, symbols: list[str], since: int | None, until: int | None, mark: str,
           exchange_scale: int, by_receive_time: bool = False) -> Selection:
    """The selection of stream ``kind`` (a stream type or market table name) for ``symbols``
    (all when empty) with ``since``/``until`` in epoch ms on the table's time column (on the
    receive time with ``by_receive_time``); ``exchange_scale`` is 1000 for a database of
    microsecond exchange times. `InvalidStreamName` for an unknown kind."""
    table = table_for(kind)
    if table not in SPECS:
        raise InvalidStreamName(f"{kind!r} is a bookkeeping table; export takes a stream type "
                                f"or one of: {', '.join(SPECS)}")
    where, params = _kind_filter(kind, mark)
    upper = tuple(sorted({s.upper() for s in symbols}))
    if upper:
        where.append(f"symbol IN ({', '.join(mark for _ in upper)})")
        params.extend(upper)
    time_col = "received_ns" if by_receive_time else TIME_COLUMN[table]
    scale = 1_000_000 if time_col == "received_ns" else exchange_scale
    span = tuple(None if bound is None else bound * scale for bound in (since, until))
    for bound, op in zip(span, (">=", "<"), strict=True):
        if bound is not None:
            where.append(f"{time_col} {op} {mark}")
            params.append(bound)
    return Selection(SPECS[table], kind, tuple(where), tuple(params), upper,
                     (span[0], span[1]), time_col, mark)


def per_symbol(conn: Any, sel: Selection) -> list[Selection]:
    """``sel`` as one selection per symbol, each within its natural-key range for the time
    range (symbols with none left out), when `bisectable`; else ``[sel]``."""
    if not sel.bisectable:
        return [sel]
    mark = sel.mark
    reader, key = Reader(conn, mark), KEY_ORDERED[sel.spec.name].key
    parts = []
    for symbol in sel.symbols:
        bounds = id_bounds(reader, sel.spec.name, symbol, *sel.span)
        if bounds is not None:
            where = f'symbol = {mark} AND "{key}" >= {mark} AND "{key}" < {mark}'
            parts.append(Selection(sel.spec, sel.stream, (*sel.where, where),
                                   (*sel.params, symbol, *bounds), (symbol,), mark=mark))
    return parts


def narrowed(conn: Any, sel: Selection) -> Selection:
    """``sel`` with each symbol's natural-key range for the time range as one condition, when
    `bisectable` (for a read in another order than the key's); else ``sel``."""
    if not sel.bisectable:
        return sel
    reader = Reader(conn, sel.mark)
    ranges = {s: b for s in sel.symbols
              if (b := id_bounds(reader, sel.spec.name, s, *sel.span)) is not None}
    cond, params = key_range_sql(sel.spec.name, ranges, sel.mark)
    return Selection(sel.spec, sel.stream, (*sel.where, cond), (*sel.params, *params),
                     mark=sel.mark)


def _kind_filter(kind: str, mark: str) -> tuple[list[str], list[Any]]:
    """The stream kind's own filter: the kline interval, ticker window, partial-depth levels."""
    try:
        stream = parse_stream(f"btcusdt@{kind}")
    except InvalidStreamName:
        return [], []  # a table name: every row
    if stream.kind is StreamKind.KLINE:
        return [f"interval = {mark}"], [stream.interval]
    if stream.kind is StreamKind.WINDOW_TICKER:
        return [f"window = {mark}"], [stream.interval]
    if stream.kind is StreamKind.PARTIAL_DEPTH:
        return [f"levels = {mark}"], [stream.levels]
    return [], []


def _sql(sel: Selection, head: str, order: str = "") -> str:
    sql = f"SELECT {head} FROM {sel.spec.name}"  # noqa: S608 - table and columns from specs
    if sel.where:
        sql += " WHERE " + " AND ".join(sel.where)
    return sql + (f" ORDER BY {order}" if order else "")


def row_sql(sel: Selection) -> str:
    """The SELECT of ``sel``'s columns in export order (grouped by symbol, natural key)."""
    cols = ", ".join(f'"{c}"' for c in sel.spec.column_names)
    return _sql(sel, cols, ", ".join(f'"{c}"' for c in sel.spec.key))


def count_rows(conn: Any, sel: Selection) -> int:
    """How many rows ``sel`` holds (one scan, of each symbol's key range when `bisectable`;
    for a progress bar)."""
    return sum(int(conn.execute(_sql(part, "COUNT(*)"), part.params).fetchone()[0])
               for part in per_symbol(conn, sel))


def pages(conn: Any, sel: Selection, mark: str, page_rows: int = PAGE_ROWS
          ) -> Generator[list[tuple[Any, ...]], None, None]:
    """``sel``'s rows, ``page_rows`` at a time, in export order; memory bounded by one page."""
    for part in per_symbol(conn, sel):
        yield from _paged(conn, row_sql(part), part.params, mark, page_rows)


def feed_pages(conn: Any, sel: Selection, mark: str, page_rows: int = 4096
               ) -> Generator[list[tuple[Any, ...]], None, None]:
    """``sel``'s rows received live, in receive order (``received_ns``, then ``id``)."""
    cols = ", ".join(f'"{c}"' for c in sel.spec.column_names)
    sel = narrowed(conn, sel)
    live = Selection(sel.spec, sel.stream, (*sel.where, "received_ns IS NOT NULL"), sel.params,
                     mark=sel.mark)
    yield from _paged(conn, _sql(live, cols, "received_ns, id"), live.params, mark, page_rows)


def _paged(conn: Any, sql: str, params: tuple[Any, ...], mark: str, page_rows: int
           ) -> Generator[list[tuple[Any, ...]], None, None]:
    if mark == "?":
        cur = conn.execute(sql, params)  # sqlite3 steps the statement as rows are fetched
    else:  # a psycopg server-side cursor: the server keeps the result, we fetch pages
        cur = conn.cursor(name=f"export_{next(_cursor_names)}")
        cur.itersize = page_rows
        cur.execute(sql, params)
    try:
        while page := cur.fetchmany(page_rows):
            yield page
    finally:
        cur.close()


def time_unit(conn: Any, mark: str) -> str:
    """``ms`` or ``us``: the unit of the database's exchange times (meta ``time_unit``)."""
    return "us" if exchange_time_scale(conn, mark) == 1000 else "ms"


def arrow_batches(database: str | Path, sel: Selection, batch_rows: int = BATCH_ROWS
                  ) -> Generator[Any, None, None] | None:
    """``sel``'s rows of a SQLite ``database`` as pyarrow RecordBatches read by the ADBC SQLite
    driver (columnar, no Python object per value), or None when ``adbc_driver_sqlite`` is not
    installed. Integer and text columns come as int64 and string, booleans as int64."""
    try:
        driver = importlib.import_module("adbc_driver_sqlite")
        manager = importlib.import_module("adbc_driver_manager")
    except ImportError:
        return None
    return _adbc_parts(driver, manager, sqlite_path(database), sel, batch_rows)


def _adbc_parts(driver: Any, manager: Any, path: Path, sel: Selection, batch_rows: int
                ) -> Generator[Any, None, None]:
    """`_adbc_batches` of each of `per_symbol`'s selections, in turn."""
    parts = [sel]
    if sel.bisectable:
        with open_reader(path) as reader:
            parts = per_symbol(reader.conn, sel)
    for part in parts:
        yield from _adbc_batches(driver, manager, path, part, batch_rows)


def _adbc_batches(driver: Any, manager: Any, path: Path, sel: Selection, batch_rows: int
                  ) -> Generator[Any, None, None]:
    # The low-level API: the DB-API module would import pandas and polars (~90 MB of RSS).
    # The driver infers each column's type from its first batch, and an all-NULL column there
    # would be taken as int64 and fail on the first text value: a first row of typed literals
    # fixes every type, and is dropped. SQLite runs UNION ALL's arms in order.
    pa = importlib.import_module("pyarrow")
    proto = ", ".join("''" if k == "TEXT" else "0" for _, k in sel.spec.columns)
    sql = f"SELECT {proto} UNION ALL SELECT * FROM ({row_sql(sel)})"  # noqa: S608
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(driver.connect(f"{path.absolute().as_uri()}?mode=ro"))
        conn = stack.enter_context(manager.AdbcConnection(db))
        stmt = stack.enter_context(manager.AdbcStatement(conn))
        stmt.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
        stmt.set_sql_query(sql)
        if sel.params:
            names = [f"p{i}" for i in range(len(sel.params))]
            stmt.bind(pa.record_batch([pa.array([p]) for p in sel.params], names=names))
        handle, _ = stmt.execute_query()
        reader = stack.enter_context(pa.RecordBatchReader.from_stream(handle))
        first = True
        for batch in reader:
            if first:
                batch, first = batch.slice(1), False
            if batch.num_rows:
                yield batch


_DONE = object()


def prefetched(items: Generator[Any, None, None], depth: int = 2) -> Generator[Any, None, None]:
    """``items`` produced by a reader thread up to ``depth`` ahead of the consumer, so that
    reading (the SQLite driver releases the GIL) overlaps with writing. Closing this generator
    stops and joins the thread; an error in the reader is raised here."""
    out: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    break
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            items.close()

    thread = threading.Thread(target=produce, name="export-reader", daemon=True)
    thread.start()
    try:
        while (item := out.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
