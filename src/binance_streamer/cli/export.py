"""``binance-streamer export``: recorded rows to CSV, JSON lines, Parquet or a raw feed file."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from binance_streamer.cli.common import parse_time
from binance_streamer.export import COMPRESSIONS, FORMATS
from binance_streamer.export import Progress as ProgressCallback
from binance_streamer.export import export as export_rows

__all__ = ["export"]


@click.command()
@click.option("--stream", "streams", multiple=True,
              help="What to export: a stream type (aggTrade, kline_1m, depth@100ms, ...), a "
                   "table name, or book_snapshot_<N> (books rebuilt every --every). Repeat for "
                   "--format feed (default there: every stream).")
@click.option("--symbol", "symbols", multiple=True, help="Only this symbol (repeatable).")
@click.option("--since", help="From this time: epoch ms or ISO date-time (UTC).")
@click.option("--until", help="Before this time: epoch ms or ISO date-time (UTC).")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Output format; feed is '<receive ns> <frame>' lines. Default: from the "
                   "output's suffix (.csv, .jsonl, .parquet, with .gz or .zst), else parquet.")
@click.option("--from-raw", is_flag=True,
              help="With --format feed: the frames exactly as received, from the archive a "
                   "recording made with --raw keeps (only what was recorded with --raw).")
@click.option("-o", "--output", required=True,
              help="Output file, or a folder (ending in /) partitioned as "
                   "symbol=<SYMBOL>/date=<YYYY-MM-DD>/part-0.<ext>.")
@click.option("--compression", type=click.Choice(COMPRESSIONS),
              help="gzip or zstd (default: zstd for Parquet, gzip for feed, as the output's "
                   ".gz or .zst suffix says, none otherwise).")
@click.option("--float", "as_float", is_flag=True,
              help="Parquet prices and quantities as float64 instead of decimal128(38, 8).")
@click.option("--every", default="1s", show_default=True,
              help="Interval of book_snapshot_<N> rows (100ms, 1s, 5m, ...).")
@click.option("--db", default="binance_data.db", show_default=True,
              help="SQLite database file, or a postgresql:// URL.")
def export(streams: tuple[str, ...], symbols: tuple[str, ...], since: str | None,
           until: str | None, fmt: str | None, from_raw: bool, output: str,
           compression: str | None, as_float: bool, every: str, db: str) -> None:
    """Write recorded rows of one stream type to a file or a partitioned folder, streaming with
    constant memory; re-running replaces exactly the files it wrote."""
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    fmt = fmt or _format_of(output)
    if compression is None and fmt != "parquet":  # x.csv.gz is gzip, x.jsonl.zst zstd
        compression = {".gz": "gzip", ".zst": "zstd"}.get(Path(output).suffix)
    if from_raw and fmt != "feed":
        raise click.UsageError("--from-raw is for --format feed")
    if not streams and fmt != "feed":
        raise click.UsageError("--stream is required (e.g. --stream aggTrade)")
    with _progress() as progress:
        result = export_rows(db, list(streams), output, fmt, list(symbols), start, end,
                             compression, as_float, every, progress, from_raw=from_raw)
    what = "frames" if fmt == "feed" else "rows"
    where = result.files[0] if len(result.files) == 1 else f"{len(result.files)} files in {output}"
    click.echo(f"{result.rows:,} {what} -> {where}", err=True)


def _format_of(output: str) -> str:
    """The format an output's suffix names (``x.csv.gz`` is csv), parquet otherwise."""
    suffixes = [x.lstrip(".") for x in Path(output).suffixes if x not in (".gz", ".zst")]
    last = suffixes[-1] if suffixes else ""
    return {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}.get(last, "parquet")


@contextlib.contextmanager
def _progress() -> Iterator[ProgressCallback | None]:
    """A progress bar on stderr when it is a terminal, else nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    with Progress(TextColumn("exporting"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True),
                  transient=True) as bar:
        task = bar.add_task("export", total=None)

        def advance(total: int | None, rows: int) -> None:
            if total is not None:
                bar.update(task, total=total)
            bar.advance(task, rows)

        yield advance
