"""``binance-streamer status``: what a database holds per stream, safe to run while recording.

``--format json`` prints one object with these keys (stable; times as stored integers):

- ``database``, ``backend`` (``sqlite`` | ``postgresql``), ``schema_version``, ``time_unit``
  (``millisecond`` | ``microsecond``: the exchange times'), ``size_bytes`` (SQLite: the file and
  its ``-wal``; PostgreSQL: ``pg_database_size``), ``read_ns`` (when it was read, ns since the
  epoch; the last minute ends there), ``symbol`` (``--symbol`` upper case, or null),
  ``rate_window_s`` (60);
- ``streams``: one object per stream: ``table``, ``symbol``, ``detail`` (kline interval, ticker
  window or partial-depth levels, else null), ``rows`` (null: not counted), ``rows_exact``,
  ``time_column``, ``time_unit`` (``ms`` | ``us`` | ``ns``), ``first_time``, ``last_time``,
  ``last_received_ns``, ``rows_last_minute``;
- ``tables``: ``table``, ``rows``, ``rows_exact`` (false: the id span, an upper bound); empty
  with ``--symbol``;
- ``gaps``: ``open``, ``filled``, ``silences`` and ``by_stream`` (``stream``, ``cause``,
  ``open``, ``filled``, ``silences``);
- ``quarantined``, ``listing_changes``.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from binance_streamer.cli.table_view import terminal_width
from binance_streamer.storage.status import (
    EXACT_ROWS_LIMIT,
    RATE_WINDOW_S,
    Status,
    StreamStatus,
    read_status,
)

__all__ = ["status", "status_json"]

_PER_SECOND = {"ms": 10**3, "us": 10**6, "ns": 10**9}
# Columns of the stream table, most telling first: a narrow terminal drops the last ones.
_COLUMNS = ("stream", "symbol", "rows", "last", "received", "/min", "first")
_RIGHT = {"rows", "received", "/min"}
_GAP = 2  # the table's padding between columns


@click.command()
@click.option("--db", default="binance_data.db", show_default=True,
              help="SQLite database file, or a postgresql:// URL.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="A table for people, or one JSON object for scripts.")
@click.option("--symbol", help="Only this symbol's streams, gaps and quarantined frames.")
@click.option("--exact", is_flag=True,
              help=f"Count every table's rows, however long it takes (by default tables past "
                   f"{EXACT_ROWS_LIMIT:,} rows are estimated from their ids).")
def status(db: str, fmt: str, symbol: str | None, exact: bool) -> None:
    """Show what a database holds per stream: rows, first and last time, last receive time,
    rows received in the last minute; gaps, quarantined frames, size, time unit.

    Safe while a recorder writes to it: it takes no lock, and reads one snapshot in one short
    read transaction, which blocks no writer. Columns: last and first are the exchange times of
    the stream's last and first rows (receive times for tables without one), received how long
    ago its last row arrived, rows/min the rows received in the last minute. Rows marked ~ are
    estimated from the ids (exact unless rows are missing), - not counted; --exact counts them.
    """
    found = read_status(db, symbol=symbol, exact=exact)
    if fmt == "json":
        click.echo(json.dumps(status_json(found), indent=2))
    else:
        _print(found, Console(width=terminal_width(), highlight=False, soft_wrap=False))


def status_json(found: Status) -> dict[str, Any]:
    """``found`` as the documented JSON object (see the module docstring)."""
    return {
        "database": found.database, "backend": found.backend,
        "schema_version": found.schema_version, "time_unit": found.time_unit,
        "size_bytes": found.size_bytes, "read_ns": found.read_ns, "symbol": found.symbol,
        "rate_window_s": RATE_WINDOW_S,
        "streams": [dataclasses.asdict(s) for s in found.streams],
        "tables": [{"table": t.table, "rows": t.rows, "rows_exact": t.exact}
                   for t in found.tables],
        "gaps": {"open": found.gaps_open, "filled": found.gaps_filled,
                 "silences": found.silences,
                 "by_stream": [dataclasses.asdict(g) for g in found.gaps]},
        "quarantined": found.quarantined, "listing_changes": found.listing_changes,
    }


def _print(found: Status, out: Console) -> None:
    unit = "ms" if found.time_unit == "millisecond" else "µs"
    out.print(f"[bold]{escape(found.database)}[/]: {found.backend}, schema v"
              f"{found.schema_version}, {_size(found.size_bytes)}, exchange times in {unit}")
    if not found.streams:
        out.print("no rows recorded" + (f" for {found.symbol}" if found.symbol else ""))
    else:
        _print_streams(found, out)
    gaps = (f"gaps: {found.gaps_open} open, {found.gaps_filled} filled; silences (stale "
            f"streams): {found.silences}")
    style = "red" if found.gaps_open else ""
    out.print(f"[{style}]{gaps}[/{style}]" if style else gaps)
    for g in found.gaps:
        out.print(f"  {escape(g.stream)}: {escape(g.cause)}: {g.open} open, {g.filled} filled"
                  + (f", {g.silences} silences" if g.silences else ""))
    out.print(f"quarantined frames: {found.quarantined:,}, listing changes: "
              f"{found.listing_changes:,}")
    if found.tables:
        out.print("rows per table: " + ", ".join(
            f"{t.table} {'' if t.exact else '~'}{t.rows:,}" for t in found.tables))
    if any(not s.rows_exact for s in found.streams) or any(not t.exact for t in found.tables):
        out.print("[dim]~ estimated from the ids (exact unless rows are missing), - not "
                  "counted: --exact counts them[/dim]")


def _print_streams(found: Status, out: Console) -> None:
    cells = [_cells(s, found.read_ns) for s in found.streams]
    shown = _fitting([max([len(name)] + [len(c[i]) for c in cells])
                      for i, name in enumerate(_COLUMNS)], out.width)
    table = Table(box=None, pad_edge=False, padding=(0, _GAP // 2), header_style="bold")
    for i in shown:
        name = _COLUMNS[i]
        header = {"last": "last (UTC)", "first": "first (UTC)", "received": "received",
                  "/min": "rows/min"}.get(name, name)
        table.add_column(header, justify="right" if name in _RIGHT else "left", no_wrap=True)
    for row in cells:
        table.add_row(*(escape(row[i]) for i in shown))
    with out.capture() as captured:
        out.print(table)
    for line in captured.get().splitlines():  # without the padding of the last column
        out.out(line.rstrip(), highlight=False)
    left_out = [_COLUMNS[i] for i in range(len(_COLUMNS)) if i not in shown]
    if left_out:
        out.print(f"[dim]not shown, too narrow: {', '.join(left_out)} (--format json has "
                  "every figure)[/dim]")


def _fitting(widths: list[int], width: int) -> list[int]:
    """Indexes of the columns that fit in ``width``, in order; the first three always."""
    headers = [len(h) for h in ("stream", "symbol", "rows", "last (UTC)", "received",
                                "rows/min", "first (UTC)")]
    widths = [max(w, h) for w, h in zip(widths, headers, strict=True)]
    keep, used = [0, 1, 2], sum(widths[:3]) + 2 * _GAP
    for i in range(3, len(widths)):
        if used + _GAP + widths[i] <= width:
            keep.append(i)
            used += _GAP + widths[i]
    return keep


def _cells(s: StreamStatus, read_ns: int) -> list[str]:
    stream = s.table if s.detail is None else f"{s.table} {s.detail}"
    rows = "-" if s.rows is None else f"{'' if s.rows_exact else '~'}{s.rows:,}"
    received = "" if s.last_received_ns is None else _age(read_ns - s.last_received_ns)
    return [stream, s.symbol, rows, _time(s.last_time, s.time_unit), received,
            f"{s.rows_last_minute:,}", _time(s.first_time, s.time_unit)]


def _time(value: int | None, unit: str) -> str:
    """A stored time as a UTC date-time to the second."""
    if value is None:
        return ""
    seconds = value // _PER_SECOND[unit]
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(ns: int) -> str:
    """How long ago, in the largest whole unit: ``now``, ``42s ago``, ``5m ago``..."""
    seconds = ns // 10**9
    if seconds < 1:
        return "now"
    for size, suffix in ((86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")):
        if seconds >= size:
            return f"{seconds // size}{suffix} ago"
    return "now"  # pragma: no cover - seconds >= 1 matched above


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover
