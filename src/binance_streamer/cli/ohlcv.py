"""``binance-streamer ohlcv``: candles at any interval from recorded trades or klines."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from binance_streamer.candles import SOURCES, Candle
from binance_streamer.candles import ohlcv as build_candles
from binance_streamer.cli.common import parse_time

__all__ = ["ohlcv"]

COLUMNS = [f.name for f in dataclasses.fields(Candle)]
# The table view shows what fits 120 columns (UTC open times); csv and json carry every field.
TABLE_COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "trades"]


@click.command()
@click.argument("symbol")
@click.option("--interval", default="1m", show_default=True,
              help="Candle length: a kline interval 1s..1d, or any Ns/Nm/Nh dividing a day.")
@click.option("--from", "source", type=click.Choice(SOURCES), default="aggTrade",
              show_default=True, help="Build from recorded aggTrade or trade rows, or "
                                      "re-aggregate recorded klines.")
@click.option("--since", help="Candles opening at or after: epoch ms or ISO date-time (UTC).")
@click.option("--until", help="Candles opening before: epoch ms or ISO date-time (UTC).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="Output format (csv and json carry every kline field).")
@click.option("--db", default="binance_data.db", show_default=True,
              help="SQLite database file, or a postgresql:// URL.")
def ohlcv(symbol: str, interval: str, source: str, since: str | None, until: str | None,
          fmt: str, db: str) -> None:
    """Print SYMBOL's candles (OHLCV, trade count, quote and taker-buy volumes, trade ids),
    built exactly from what was recorded; intervals without trades are left out."""
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    candles = build_candles(db, symbol, interval, start, end, source)
    first = next(candles, None)
    if first is None:
        click.echo(f"no candles: {db} holds no {symbol.upper()} {source} rows"
                   + ("" if start is None and end is None else " in that time range"), err=True)
        return
    rows = _chain(first, candles)
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(dataclasses.astuple(c) for c in rows)
    elif fmt == "json":
        _write_json(rows)
    else:
        _print_table(rows)


def _chain(first: Candle, rest: Iterator[Candle]) -> Iterator[Candle]:
    yield first
    yield from rest


def _write_json(candles: Iterator[Candle]) -> None:
    """A JSON array of objects, written a candle at a time."""
    out = sys.stdout
    for i, candle in enumerate(candles):
        out.write(("[" if i == 0 else ",\n") + json.dumps(dataclasses.asdict(candle)))
    out.write("]\n")


def _print_table(candles: Iterator[Candle]) -> None:
    """A table of the main fields; on a narrow terminal values wrap, never lose digits."""
    table = Table(show_edge=False, box=None)
    for name in TABLE_COLUMNS:
        table.add_column(name, justify="left" if name == "open_time" else "right",
                         no_wrap=True)
    for c in candles:
        opened = datetime.fromtimestamp(c.open_time / 1000, UTC)
        table.add_row(f"{opened:%Y-%m-%d %H:%M:%S}", *(_short(v) for v in (
            c.open, c.high, c.low, c.close, c.volume)), str(c.trades))
    Console(highlight=False).print(table)


def _short(value: str) -> str:
    """A decimal string without trailing zeros past two decimals, so a candle fits an 80-column
    line in the table view (csv and json keep Binance's 8 decimals)."""
    whole, _, frac = value.partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"
