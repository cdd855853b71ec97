"""``binance-streamer plot``: a chart of a recorded symbol (candles, volume, depth heat map)."""

from __future__ import annotations

from typing import cast

import click

from binance_streamer.cli.common import parse_time
from binance_streamer.plot import Source
from binance_streamer.plot import plot as draw

__all__ = ["plot"]


@click.command()
@click.argument("symbol")
@click.option("--since", help="From this time: epoch ms or ISO date-time (UTC). Default: the "
                              "first recorded trade.")
@click.option("--until", help="Before this time: epoch ms or ISO date-time (UTC). Default: the "
                              "last recorded trade.")
@click.option("--interval", default="1m", show_default=True,
              help="Candle interval, 1s to 1d (e.g. 1s, 5m, 1h). Over 2000 candles are drawn "
                   "as a close-price line.")
@click.option("--from", "source", type=click.Choice(["auto", "aggTrade", "trade", "kline"]),
              default="auto", show_default=True,
              help="Build candles from these rows; auto: aggTrade if recorded, else trade, "
                   "else the recorded klines.")
@click.option("--book", is_flag=True,
              help="Draw the rebuilt order books behind the candles as a heat map of resting "
                   "quantity (needs a recorded depth stream).")
@click.option("--db", default="binance_data.db", show_default=True,
              help="SQLite database file, or a postgresql:// URL.")
@click.option("-o", "--output", default="chart.png", show_default=True,
              type=click.Path(dir_okay=False), help="The image to write: .png, .svg or .pdf.")
def plot(symbol: str, since: str | None, until: str | None, interval: str, source: str,
         book: bool, db: str, output: str) -> None:
    """Draw SYMBOL's recorded candles with their volume into an image (UTC times).

    Needs the plot extra: pip install 'binance-streamer[plot]'.
    """
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    path = draw(db, symbol, output, start, end, interval, book, cast(Source, source))
    click.echo(f"wrote {path}")
