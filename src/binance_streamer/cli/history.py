"""``binance-streamer history``: fetch the past over REST into the recorded tables."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from binance_streamer.cli.common import parse_time
from binance_streamer.history import HistoryProgress, HistoryStats, fetch_history
from binance_streamer.io.rest import BINANCE_REST_URL

__all__ = ["history"]

_err = Console(stderr=True, soft_wrap=True, highlight=False)
Report = Callable[[HistoryProgress], None]
INTERRUPTED_EXIT = 130  # as the command group's Ctrl-C, which click's own handling hides here


@click.command()
@click.argument("symbols", nargs=-1, required=True)
@click.option("--streams", default="aggTrade", show_default=True,
              help="Comma-separated kinds to fetch for every symbol: aggTrade, trade, "
                   "kline_<interval> (e.g. aggTrade,kline_1m).")
@click.option("--since", required=True, help="Start: epoch ms or ISO date-time (UTC if naive).")
@click.option("--until", help="End (inclusive): epoch ms or ISO date-time; default now.")
@click.option("--db", "db", default="binance_data.db", show_default=True,
              help="SQLite database file (created if missing), or a postgresql:// URL; may be "
                   "the one a running `record` writes.")
@click.option("--rest-url", default=BINANCE_REST_URL, show_default=True,
              help="REST base URL of a Binance-compatible exchange.")
def history(symbols: tuple[str, ...], streams: str, since: str, until: str | None, db: str,
            rest_url: str) -> None:
    """Fetch trades, aggregate trades and klines of SYMBOLS from before the recording started.

    Uses the REST API (aggTrades and historicalTrades by id, klines by open time) and stores
    into the same tables as `record`, each row once: a rerun fetches only what is missing, so
    after Ctrl-C or a ban the same command resumes. Stays under the exchange's weight limit.
    Exit codes: 0 done, 1 network or storage failure (an IP ban says when to retry), 2 bad
    input (unknown symbol, stream kind or time), 130 Ctrl-C.
    """
    since_ms = parse_time(since, "--since")
    assert since_ms is not None  # required
    until_ms = parse_time(until, "--until")
    kinds = [s.strip() for s in streams.split(",") if s.strip()]
    with _reporter() as report:
        try:
            stats = asyncio.run(fetch_history(db, [s.upper() for s in symbols], kinds,
                                              since_ms, until_ms, rest_url=rest_url,
                                              progress=report))
        except KeyboardInterrupt:
            _err.print("interrupted: every page fetched so far is stored; run the same "
                       "command again to resume")
            sys.exit(INTERRUPTED_EXIT)
    _summary(stats, db)


@contextlib.contextmanager
def _reporter() -> Iterator[Report]:
    """A rich progress bar per stream on a terminal, else one plain line per finished
    stream."""
    if not sys.stderr.isatty():
        yield _plain
        return
    bars = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[at]}"),
                    TextColumn("{task.fields[rows]:,} rows"), TimeRemainingColumn(),
                    console=_err, transient=False)
    tasks: dict[str, TaskID] = {}

    def report(p: HistoryProgress) -> None:
        if p.stream not in tasks:
            tasks[p.stream] = bars.add_task(p.stream, total=max(p.until - p.since, 1),
                                            at="", rows=0)
        bars.update(tasks[p.stream], completed=p.reached - p.since, at=_iso(p.reached, p),
                    rows=p.stored)

    with bars:
        yield report


def _plain(p: HistoryProgress) -> None:
    if p.done:
        click.echo(f"{p.stream}: {p.fetched:,} rows fetched, {p.stored:,} new, up to "
                   f"{_iso(p.until, p)}", err=True)


def _iso(t: int, p: HistoryProgress) -> str:
    """``t`` (ms, or µs when ``p``'s times are µs) as UTC ISO to the second."""
    ms = t // 1000 if p.until > 10**15 else t
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _summary(stats: HistoryStats, db: str) -> None:
    waits = (f"; waited {stats.weight_waits} time(s) for the weight limit"
             if stats.weight_waits else "")
    limited = f"; {stats.rate_limited} 429 answer(s) waited out" if stats.rate_limited else ""
    click.echo(f"Stored {stats.total_stored:,} new rows into {db} ({stats.requests} REST "
               f"requests{waits}{limited}).")
