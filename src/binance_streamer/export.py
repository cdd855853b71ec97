"""Getting the data out: `export` to CSV, JSON lines, Parquet or a raw feed, and `read` into
DataFrames.

Exports stream with constant memory: rows are read a page at a time
(`binance_streamer.storage.export_rows`) and written a page at a time. ``output`` is one file,
or a folder (an existing one, or a path ending in ``/``) partitioned by symbol and UTC day in
the hive layout DuckDB, polars and Spark read directly
(``symbol=BTCUSDT/date=2021-04-04/part-0.parquet``).
Files are written under a temporary name and renamed, so a re-run replaces exactly its own files.
Parquet and `read` use the types of `binance_streamer.export_arrow`.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from binance_streamer.core.tables import TableSpec
from binance_streamer.errors import ConfigError, MissingExtra
from binance_streamer.export_arrow import arrow_schema, cast_batch, pyarrow, to_table
from binance_streamer.export_feed import feed_lines
from binance_streamer.export_files import Outputs, ParquetWriter, file_name
from binance_streamer.storage.export_rows import (
    arrow_batches,
    count_rows,
    pages,
    prefetched,
    select,
    time_unit,
)
from binance_streamer.storage.open import open_reader

__all__ = ["ExportResult", "export", "read"]

FORMATS = ("csv", "jsonl", "parquet", "feed")
COMPRESSIONS = ("none", "gzip", "zstd")
Progress = Callable[[int | None, int], None]
"""Called with (total rows or None, rows written since the last call)."""
_BOOK = re.compile(r"book_snapshot_(\d+)")
_DAY_MS = 86_400_000
_SCALE = {"ms": 1, "us": 1000, "ns": 1_000_000}


@dataclass
class ExportResult:
    """The files an export wrote and how many rows (feed: frames) they hold."""

    files: list[Path]
    rows: int


@dataclass
class _Source:
    """Rows to write: their table shape, pages, and where each row's time is (for the day)."""

    spec: TableSpec
    unit: str  # of the exchange times
    pages: Generator[list[tuple[Any, ...]], None, None]
    total: Callable[[], int | None]
    time_index: int
    time_scale: int  # time value per ms
    # The same rows as Arrow batches, when a columnar reader is installed.
    batches: Generator[Any, None, None] | None = None


def export(database: str | Path, stream: str | Sequence[str] | None, output: str | Path,
           fmt: str = "parquet", symbols: Sequence[str] = (), since: int | None = None,
           until: int | None = None, compression: str | None = None, as_float: bool = False,
           every: str = "1s", progress: Progress | None = None, *,
           from_raw: bool = False) -> ExportResult:
    """Write the recorded rows of ``stream`` (a stream type such as ``aggTrade`` or
    ``kline_1m``, a market table name, or ``book_snapshot_<N>`` for books rebuilt every
    ``every``) to ``output``; ``since``/``until`` in epoch ms.

    ``fmt`` ``feed`` writes ``<receive ns> <combined-stream frame>`` lines of any number of
    streams (all when ``stream`` is None) merged in receive order, see
    `binance_streamer.export_feed` (``since``/``until`` on the receive time).
    ``compression``: ``none``, ``gzip`` or ``zstd`` (default: zstd for Parquet, gzip for the
    feed, none otherwise). ``from_raw``: the feed's frames exactly as received, from the
    ``raw_frame`` archive (only what was recorded with ``--raw``); else rebuilt from the rows.

    Raises `ConfigError` (unknown stream or format, no rows, an output that cannot be
    written), `MissingExtra` (pyarrow for Parquet or zstd), `InvalidDatabase`.
    """
    compression = _compression(fmt, compression)
    streams = [stream] if isinstance(stream, str) else list(stream or [])
    target = Path(output)
    folder = str(output).endswith(("/", "\\")) or target.is_dir()
    if fmt == "feed":
        if folder:
            raise ConfigError("--format feed writes one file: give -o FILE, not a folder")
        return _export_feed(database, streams, target, symbols, since, until, compression,
                            progress, from_raw)
    if len(streams) != 1:
        raise ConfigError(f"--format {fmt} exports one stream at a time; got {len(streams)}")
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(open_reader(database))
        source = _source(reader.conn, reader.mark, streams[0], list(symbols), since, until,
                         every, database)
        schema = arrow_schema(source.spec, source.unit, as_float) if fmt == "parquet" else None
        bools = [i for i, (_, k) in enumerate(source.spec.columns) if k == "BOOLEAN"]
        outputs = Outputs(fmt, compression, list(source.spec.column_names), bools, schema)
        try:
            stack.enter_context(contextlib.closing(source.pages))  # while the database is open
            if fmt == "parquet" and not folder and source.batches is not None:
                rows = _write_batches(source, outputs, target, progress)
            else:
                rows = _write(source, outputs, target, folder, fmt, compression, progress)
        except BaseException:
            outputs.abort()
            raise
    return ExportResult(outputs.commit(), rows)


def _compression(fmt: str, compression: str | None) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if compression is None:
        return {"parquet": "zstd", "feed": "gzip"}.get(fmt, "none")
    if compression not in COMPRESSIONS:
        raise ConfigError(f"unknown compression {compression!r}; use one of "
                          f"{', '.join(COMPRESSIONS)}")
    if compression == "zstd" and fmt != "parquet":
        pyarrow()  # zstd streams come from pyarrow
    return compression


def _source(conn: Any, mark: str, stream: str, symbols: list[str], since: int | None,
            until: int | None, every: str, database: str | Path) -> _Source:
    unit = time_unit(conn, mark)
    if match := _BOOK.fullmatch(stream):
        from binance_streamer.export_books import book_source

        spec, rows = book_source(conn, mark, database, int(match[1]), symbols, since, until,
                                 every, _SCALE[unit])
        return _Source(spec, "ms", rows, lambda: None, 1, 1)
    sel = select(stream, symbols, since, until, mark, _SCALE[unit])
    index = sel.spec.column_names.index(sel.time_column)
    scale = _SCALE["ns" if sel.time_column == "received_ns" else unit]
    batches = None if mark != "?" else arrow_batches(database, sel)
    return _Source(sel.spec, unit, pages(conn, sel, mark), lambda: count_rows(conn, sel),
                   index, scale, batches)


def _write(source: _Source, outputs: Outputs, target: Path, folder: bool, fmt: str,
           compression: str, progress: Progress | None) -> int:
    """Write every page of ``source``; the row count. `ConfigError` when there is none."""
    if progress:
        progress(source.total(), 0)
    written, key_open, path = 0, None, target
    parts: dict[tuple[str, str], int] = {}
    for page in source.pages:
        if not folder:
            outputs.writer(target).write(page)
        else:
            for key, run in _partitions(page, source):
                if key != key_open:  # one partition open at a time: memory stays flat
                    for done in list(outputs.open):
                        outputs.finish(done)
                    key_open, part = key, parts.get(key, -1) + 1
                    parts[key] = part  # a partition met again gets a part of its own
                    path = (target / f"symbol={key[0]}" / f"date={key[1]}"
                            / file_name(f"part-{part}", fmt, compression))
                outputs.writer(path).write(run)
        written += len(page)
        if progress:
            progress(None, len(page))
    if not written:
        raise ConfigError(f"no {source.spec.name} rows match; nothing written")
    return written


def _write_batches(source: _Source, outputs: Outputs, target: Path,
                   progress: Progress | None) -> int:
    """Write ``source``'s Arrow batches to one Parquet file; the row count."""
    assert source.batches is not None
    if progress:
        progress(source.total(), 0)
    written = 0
    batches = prefetched(source.batches)
    with contextlib.closing(batches):
        for batch in batches:
            written += _write_batch(outputs, target, batch)
            if progress:
                progress(None, batch.num_rows)
    if not written:
        raise ConfigError(f"no {source.spec.name} rows match; nothing written")
    return written


def _write_batch(outputs: Outputs, target: Path, batch: Any) -> int:
    writer = outputs.writer(target)
    assert isinstance(writer, ParquetWriter)
    writer.write_arrow(batch)
    return int(batch.num_rows)


def _partitions(page: list[tuple[Any, ...]], source: _Source
                ) -> Iterator[tuple[tuple[str, str], list[tuple[Any, ...]]]]:
    """Consecutive runs of ``page`` sharing symbol and UTC day."""
    i, per_day = source.time_index, _DAY_MS * source.time_scale
    start, key = 0, None
    for n, row in enumerate(page):
        t = row[i]
        k = (row[0], -1 if t is None else t // per_day)
        if k != key:
            if key is not None:
                yield _day_key(key), page[start:n]
            start, key = n, k
    if key is not None:
        yield _day_key(key), page[start:]


def _day_key(key: tuple[str, int]) -> tuple[str, str]:
    symbol, day = key
    if day < 0:
        return symbol, "__HIVE_DEFAULT_PARTITION__"
    return symbol, datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()


def _export_feed(database: str | Path, streams: list[str], target: Path,
                 symbols: Sequence[str], since: int | None, until: int | None,
                 compression: str, progress: Progress | None, from_raw: bool) -> ExportResult:
    outputs = Outputs("feed", compression, [], [])
    with open_reader(database) as reader:
        try:
            lines, total = feed_lines(reader.conn, reader.mark, streams, list(symbols), since,
                                      until, from_raw=from_raw)
            if progress:
                progress(total(), 0)
            written = 0
            writer = outputs.writer(target)
            with contextlib.closing(lines):  # closed while the database is open
                for chunk in lines:
                    writer.write([(line,) for line in chunk])
                    written += len(chunk)
                    if progress:
                        progress(None, len(chunk))
            if not written:
                raise ConfigError("no frames match; nothing written")
        except BaseException:
            outputs.abort()
            raise
    return ExportResult(outputs.commit(), written)


def read(database: str | Path, stream: str, symbol: str | Sequence[str] | None = None,
         since: int | None = None, until: int | None = None,
         as_: Literal["pandas", "polars", "arrow"] = "pandas") -> Any:
    """The recorded rows of ``stream`` (as in `export`) as a pandas or polars DataFrame or a
    pyarrow Table, with the Parquet export's types (decimal128, UTC timestamps, booleans);
    ``since``/``until`` in epoch ms.

    Raises `MissingExtra` when pyarrow (or the asked DataFrame library) is not installed,
    `InvalidStreamName`, `InvalidDatabase`.
    """
    if as_ not in ("pandas", "polars", "arrow"):
        raise ConfigError(f"as_ must be 'pandas', 'polars' or 'arrow', not {as_!r}")
    pa = pyarrow()
    symbols = [symbol] if isinstance(symbol, str) else list(symbol or [])
    with open_reader(database) as reader:
        source = _source(reader.conn, reader.mark, stream, symbols, since, until, "1s",
                         database)
        schema = arrow_schema(source.spec, source.unit)
        if source.batches is not None:
            table = pa.Table.from_batches([cast_batch(b, schema) for b in source.batches],
                                          schema=schema)
        else:
            table = pa.concat_tables([to_table(p, schema) for p in source.pages]
                                     or [schema.empty_table()])
    return _as(table, as_)


def _as(table: Any, as_: str) -> Any:
    if as_ == "arrow":
        return table
    if as_ == "polars":
        try:
            import polars
        except ImportError as exc:
            raise MissingExtra("read(..., as_='polars')", "polars") from exc
        return polars.from_arrow(table)
    try:
        importlib.import_module("pandas")  # to_pandas needs it
    except ImportError as exc:
        raise MissingExtra("read(..., as_='pandas')", "pandas") from exc
    return table.to_pandas()
