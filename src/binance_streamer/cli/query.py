"""``binance-streamer query``: recorded rows of one stream type."""

from __future__ import annotations

import click

from binance_streamer.cli.common import emit, parse_time
from binance_streamer.storage.query import query as read_query

__all__ = ["query"]


@click.command()
@click.argument("symbol", required=False)
@click.option("--stream", "kind", default="ticker", show_default=True,
              help="What to read: a stream type (ticker, aggTrade, kline_1m, depth, ...) or a "
                   "table name (gaps, quarantine).")
@click.option("--since", help="From this time: epoch ms or ISO date-time (UTC).")
@click.option("--until", help="Before this time: epoch ms or ISO date-time (UTC).")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many rows.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "jsonl"]),
              default="table", show_default=True, help="Output format.")
@click.option("--db", default="binance_data.db", show_default=True,
              help="SQLite database file, or a postgresql:// URL.")
def query(symbol: str | None, kind: str, since: str | None, until: str | None,
          limit: int | None, fmt: str, db: str) -> None:
    """Print recorded rows of one stream type, oldest first, optionally for one SYMBOL."""
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    result = read_query(db, kind, symbol, start, end, limit)
    emit(result.columns, result.rows, fmt)
