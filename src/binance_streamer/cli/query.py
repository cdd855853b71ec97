"""``binance-streamer query``: recorded rows of one stream type, streamed out as they are read."""

from __future__ import annotations

import csv
import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

import click

from binance_streamer.cli.common import parse_time
from binance_streamer.cli.table_view import fit_table, terminal_width
from binance_streamer.storage.query import Rows, open_rows, select

__all__ = ["DEFAULT_COLUMNS", "TABLE_LIMIT", "iso_time", "query"]

TABLE_LIMIT = 50  # rows the table view shows unless --limit says otherwise
# The table view's columns per table when --columns/--all-columns are not given, most telling
# first: on a narrow terminal the last ones are left out (and named) rather than wrapped. The
# symbol, and the interval, window or depth a stream name fixes, are left out when given.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "trade": ("symbol", "trade_id", "trade_time", "price", "quantity", "buyer_is_maker"),
    "agg_trade": ("symbol", "agg_id", "trade_time", "price", "quantity", "buyer_is_maker"),
    "block_trade": ("symbol", "block_trade_id", "trade_time", "price", "quantity"),
    "kline": ("symbol", "interval", "open_time", "open", "high", "low", "close", "base_volume",
              "is_closed"),
    "ticker": ("symbol", "event_time", "last_price", "best_bid_price", "best_ask_price",
               "price_change_percent", "base_volume"),
    "window_ticker": ("symbol", "window", "event_time", "last_price", "price_change_percent",
                      "base_volume"),
    "mini_ticker": ("symbol", "event_time", "close", "open", "high", "low", "base_volume"),
    "book_ticker": ("symbol", "update_id", "best_bid_price", "best_bid_quantity",
                    "best_ask_price", "best_ask_quantity"),
    "avg_price": ("symbol", "event_time", "interval", "price"),
    "reference_price": ("symbol", "time", "price"),
    "partial_depth": ("symbol", "levels", "last_update_id", "received_ns", "bids", "asks"),
    "depth_update": ("symbol", "final_update_id", "event_time", "bids", "asks"),
    "depth_snapshot": ("symbol", "last_update_id", "received_ns", "bids", "asks"),
    "gaps": ("stream", "first_missing", "last_missing", "cause", "detected_ns", "rows_filled"),
    "quarantine": ("received_ns", "stream", "reason", "raw"),
    "raw_frame": ("received_ns", "connection", "frame"),
}
_DIGITS = {"ms": 3, "us": 6, "ns": 9}


@click.command()
@click.argument("symbol", required=False)
@click.option("--stream", "kind", default="ticker", show_default=True,
              help="What to read: a stream type (ticker, aggTrade, kline_1m, depth5, ...) or a "
                   "table name (gaps, quarantine).")
@click.option("--since", help="From this time: epoch ms or ISO date-time (UTC).")
@click.option("--until", help="Before this time: epoch ms or ISO date-time (UTC).")
@click.option("--limit", type=click.IntRange(min=0),
              help=f"At most this many rows; 0 for all. Default: {TABLE_LIMIT} in the table "
                   "view, all otherwise.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "jsonl"]),
              default="table", show_default=True, help="Output format.")
@click.option("--columns", help="Only these columns, comma-separated, in this order.")
@click.option("--all-columns", is_flag=True,
              help="Every column in the table view (csv and json always have every column).")
@click.option("--time-format", type=click.Choice(["ms", "iso"]), default="ms",
              show_default=True,
              help="Exchange and receive times as stored numbers, or as UTC ISO date-times.")
@click.option("--db", default="binance_data.db", show_default=True,
              help="SQLite database file, or a postgresql:// URL.")
def query(symbol: str | None, kind: str, since: str | None, until: str | None,
          limit: int | None, fmt: str, columns: str | None, all_columns: bool,
          time_format: str, db: str) -> None:
    """Print recorded rows of one stream type, oldest first, optionally for one SYMBOL.

    Rows are written as they are read, so csv and jsonl start at once on any table size.
    """
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    default_cut = fmt == "table" and limit is None
    # One row more than the table view shows by default tells whether rows were left out.
    wanted = TABLE_LIMIT + 1 if default_cut else limit or None
    selection = select(kind)
    # What the command line fixes (the symbol, a kline interval) need not fill the table view.
    fixed = {c for c, _ in selection.match} | ({"symbol"} if symbol else set())
    default = tuple(c for c in DEFAULT_COLUMNS.get(selection.table, ()) if c not in fixed)
    with open_rows(db, kind, symbol, start, end, wanted) as rows:
        names = _chosen(rows.columns, columns, all_columns or fmt != "table", default)
        records = _projected(rows, names, time_format)
        try:
            if fmt == "table":
                _print_table(names, records, TABLE_LIMIT if default_cut else None,
                             fit=columns is None and not all_columns)
            else:
                _WRITERS[fmt](sys.stdout, names, records)
        except BrokenPipeError:  # the reader went away (| head): stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise SystemExit(1) from None


def _chosen(available: list[str], picked: str | None, every: bool,
            default: tuple[str, ...]) -> list[str]:
    if picked is not None:
        names = [c.strip() for c in picked.split(",") if c.strip()]
        unknown = [c for c in names if c not in available]
        if unknown or not names:
            raise click.BadParameter(f"unknown column {', '.join(unknown) or '(none given)'}; "
                                     f"columns: {', '.join(available)}", param_hint="--columns")
        return names
    if every or not default:
        return available
    return [c for c in default if c in available]


def _projected(rows: Rows, names: list[str], time_format: str) -> Iterator[tuple[Any, ...]]:
    indexes = [rows.columns.index(c) for c in names]
    convert = [_time_converter(n, rows.exchange_time_unit) if time_format == "iso" else None
               for n in names]
    pairs = list(zip(indexes, convert, strict=True))
    for row in rows:
        yield tuple(row[i] if f is None or row[i] is None else f(row[i]) for i, f in pairs)


def _time_converter(name: str, exchange_unit: str) -> Callable[[int], str] | None:
    """How to show column ``name`` as an ISO time, or None when it holds no time."""
    if name.endswith("_ns"):
        return functools.partial(iso_time, unit="ns")
    if name == "time" or name.endswith("_time"):
        return functools.partial(iso_time, unit=exchange_unit)
    return None


def iso_time(value: int, unit: str) -> str:
    """An integer time since the epoch in ``unit`` (ms, us or ns) as a UTC ISO 8601 string at
    that precision: ``iso_time(1617566591315, "ms") == "2021-04-04T20:03:11.315Z"``."""
    digits = _DIGITS[unit]
    seconds, fraction = divmod(value, 10**digits)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{fraction:0{digits}d}Z"


def _print_table(names: list[str], records: Iterator[tuple[Any, ...]], shown: int | None,
                 fit: bool) -> None:
    """The table view; ``shown`` is the default limit (None when the user gave --limit), when
    one more row tells that rows were left out."""
    out = sys.stdout
    cut = False
    if shown is not None:
        records, cut = _at_most(records, shown)
    hidden: list[str] = []
    lines = 0
    for line in fit_table(names, records, terminal_width(), fit, hidden):
        out.write(line + "\n")
        lines += 1
    notes = [] if lines > 2 else ["no rows match"]  # the header and its rule only
    if hidden:
        notes.append(f"{len(hidden)} more column{'s' if len(hidden) > 1 else ''} not shown "
                     f"({', '.join(hidden)}): --columns to pick, --all-columns for every one")
    if cut:
        notes.append(f"first {shown} rows shown, more match: --limit N for more, --limit 0 "
                     "for all, or --format csv|jsonl to stream them")
    for note in notes:
        click.echo(note, err=True)


def _at_most(records: Iterator[tuple[Any, ...]], n: int) -> tuple[Iterator[tuple[Any, ...]],
                                                                  bool]:
    taken = [r for _, r in zip(range(n + 1), records, strict=False)]
    return iter(taken[:n]), len(taken) > n


def _write_csv(out: TextIO, names: list[str], records: Iterable[tuple[Any, ...]]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for r in records:
        writer.writerow(r)


def _write_jsonl(out: TextIO, names: list[str], records: Iterable[tuple[Any, ...]]) -> None:
    for r in records:
        out.write(json.dumps(dict(zip(names, r, strict=True))) + "\n")


def _write_json(out: TextIO, names: list[str], records: Iterable[tuple[Any, ...]]) -> None:
    """A JSON array written one element at a time."""
    separator = "[\n"
    for r in records:
        out.write(separator + json.dumps(dict(zip(names, r, strict=True))))
        separator = ",\n"
    out.write("[]\n" if separator == "[\n" else "\n]\n")


_WRITERS = {"csv": _write_csv, "jsonl": _write_jsonl, "json": _write_json}
