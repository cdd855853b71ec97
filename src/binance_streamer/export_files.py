"""Output files of an export: one writer per file, written under a temporary name and renamed.

Every writer takes pages of rows and holds at most one page; `Outputs` keeps the writers of one
run, renames each finished file over its final name (so a re-run replaces exactly its own files)
and removes its temporary files when the run fails.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import importlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import msgspec

from binance_streamer.errors import ConfigError
from binance_streamer.export_arrow import cast_batch, pyarrow, to_table

__all__ = ["EXTENSIONS", "FileWriter", "Outputs", "ParquetWriter", "open_binary"]

EXTENSIONS = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet", "feed": ".txt"}
_SUFFIX = {"none": "", "gzip": ".gz", "zstd": ".zst"}
_BUFFER_ROWS = 65_536  # a Parquet row group
_DICTIONARY_COLUMNS = ("symbol", "interval", "window", "source")


class FileWriter(Protocol):
    def write(self, rows: Sequence[tuple[Any, ...]]) -> None: ...
    def close(self) -> None: ...


def file_name(stem: str, fmt: str, compression: str) -> str:
    """``part-0.csv.gz`` and the like (Parquet compresses inside the file)."""
    return stem + EXTENSIONS[fmt] + ("" if fmt == "parquet" else _SUFFIX[compression])


def open_binary(path: Path, compression: str) -> BinaryIO:
    """``path`` opened for writing bytes, through gzip or zstd when asked."""
    if compression == "gzip":
        return cast(BinaryIO, gzip.open(path, "wb", compresslevel=6))
    if compression == "zstd":
        stream: BinaryIO = pyarrow().CompressedOutputStream(str(path), "zstd")
        return stream
    return path.open("wb")


class _TextWriter:
    """CSV or JSON lines of the stored values; booleans as ``true``/``false``."""

    def __init__(self, path: Path, fmt: str, compression: str, columns: list[str],
                 booleans: list[int]) -> None:
        self.out = open_binary(path, compression)
        self.fmt, self.columns, self.booleans = fmt, columns, booleans
        if fmt == "csv":
            self.out.write((",".join(columns) + "\n").encode())

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        if self.booleans:
            words = _CSV_BOOLS if self.fmt == "csv" else _JSON_BOOLS
            rows = [_bools(r, self.booleans, words) for r in rows]
        if self.fmt == "csv":
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(rows)
            self.out.write(buf.getvalue().encode())
        else:
            encode, cols = msgspec.json.encode, self.columns
            self.out.write(b"".join(encode(dict(zip(cols, r, strict=True))) + b"\n"
                                    for r in rows))

    def close(self) -> None:
        self.out.close()


_CSV_BOOLS: dict[Any, Any] = {None: None, 0: "false", 1: "true"}  # True == 1, False == 0
_JSON_BOOLS: dict[Any, Any] = {None: None, 0: False, 1: True}


def _bools(row: Sequence[Any], indexes: list[int], words: dict[Any, Any]) -> list[Any]:
    """``row`` with SQLite's 0/1 (or PostgreSQL's booleans) at ``indexes`` as ``words``."""
    values = list(row)
    for i in indexes:
        values[i] = words[values[i]]
    return values


class ParquetWriter:
    """Row groups of up to 65,536 rows, zstd/gzip/uncompressed pages."""

    def __init__(self, path: Path, schema: Any, compression: str) -> None:
        pyarrow()
        pq = importlib.import_module("pyarrow.parquet")
        self.schema, self.pending, self.rows = schema, list[Any](), 0
        # Dictionary-encode only the few-valued text columns: on ids, times and prices it costs
        # more time than zstd alone and, measured on agg_trade rows, doubles the file.
        words = [c for c in _DICTIONARY_COLUMNS if c in schema.names]
        self.writer = pq.ParquetWriter(str(path), schema, compression=compression,
                                       use_dictionary=words)

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.pending.append(to_table(rows, self.schema))  # Arrow holds rows far more compactly
        self.rows += len(rows)
        if self.rows >= _BUFFER_ROWS:
            self._flush()

    def write_arrow(self, batch: Any) -> None:
        """Write a RecordBatch of stored values (see `cast_batch`) as one row group."""
        self._flush()
        self.writer.write_batch(cast_batch(batch, self.schema))

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(pyarrow().concat_tables(self.pending))
            self.pending, self.rows = [], 0

    def close(self) -> None:
        self._flush()
        self.writer.close()


class _FeedWriter:
    """Lines already encoded (the feed)."""

    def __init__(self, path: Path, compression: str) -> None:
        self.out = open_binary(path, compression)

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.out.write(b"".join(r[0] for r in rows))

    def close(self) -> None:
        self.out.close()


class Outputs:
    """The files of one export run, written to temporary names and renamed on `commit`."""

    def __init__(self, fmt: str, compression: str, columns: list[str], booleans: list[int],
                 schema: Any = None) -> None:
        self.fmt, self.compression, self.columns = fmt, compression, columns
        self.booleans, self.schema = booleans, schema
        self.open: dict[Path, tuple[Path, FileWriter]] = {}
        self.done: list[tuple[Path, Path]] = []

    def writer(self, path: Path) -> FileWriter:
        """The writer of ``path``, opened (with its folders) on first use."""
        if path in self.open:
            return self.open[path][1]
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = self._make(tmp)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
        self.open[path] = (tmp, writer)
        return writer

    def _make(self, tmp: Path) -> FileWriter:
        if self.fmt == "parquet":
            codec = "none" if self.compression == "none" else self.compression
            return ParquetWriter(tmp, self.schema, codec)
        if self.fmt == "feed":
            return _FeedWriter(tmp, self.compression)
        return _TextWriter(tmp, self.fmt, self.compression, self.columns, self.booleans)

    def finish(self, path: Path) -> None:
        """Close ``path``'s writer; it is renamed into place on `commit`."""
        tmp, writer = self.open.pop(path)
        writer.close()
        self.done.append((tmp, path))

    def commit(self) -> list[Path]:
        """Close every writer and move every file into place; the final paths."""
        for path in list(self.open):
            self.finish(path)
        for tmp, path in self.done:
            os.replace(tmp, path)
        return [p for _, p in self.done]

    def abort(self) -> None:
        """Close and remove every temporary file."""
        for tmp, writer in self.open.values():
            with contextlib.suppress(Exception):  # already failing; the file goes anyway
                writer.close()
            self.done.append((tmp, tmp))
        for tmp, _ in self.done:
            tmp.unlink(missing_ok=True)
