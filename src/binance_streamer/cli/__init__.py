"""The ``binance-streamer`` command: thin click commands over the library.

Errors reach the user as one line on stderr, never a traceback: `ConfigError` (and click's usage
errors) exit with code 2, every other `StreamerError` with code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import math
import re
import sqlite3
import sys
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from binance_streamer.books import Book, order_book, parse_every
from binance_streamer.cli.common import parse_time
from binance_streamer.cli.config import configure, init
from binance_streamer.cli.export import export
from binance_streamer.cli.history import history
from binance_streamer.cli.ohlcv import ohlcv
from binance_streamer.cli.plot import plot
from binance_streamer.cli.query import query
from binance_streamer.cli.record_display import (
    DEMO_HINT,
    Display,
    DisplayMode,
    StatusLine,
    configure_logging,
    err,
    print_summary,
    record_with_status,
)
from binance_streamer.cli.replay import parse_speed_option, replay
from binance_streamer.cli.status import status
from binance_streamer.cli.table_view import fit_table, terminal_width
from binance_streamer.core.sharding import Shard, parse_shard
from binance_streamer.core.streams import kind_names, parse_stream_spec
from binance_streamer.errors import (
    ConfigError,
    InvalidStreamName,
    NoDataReceived,
    StorageError,
    StreamerError,
    iso_time,
)
from binance_streamer.io.rest import BINANCE_REST_URL
from binance_streamer.recorder import (
    BINANCE_WS_URL,
    Recorder,
    RecorderConfig,
    RecorderStats,
    check_duration,
)
from binance_streamer.storage.query import read_rows
from binance_streamer.supervisor import Processes, RecorderFleet

__all__ = ["main"]

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
log = logging.getLogger("binance_streamer")
GAPS_OPEN_EXIT = 3  # the run ended with gaps not filled yet


def fail(message: str, code: int) -> None:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    err.print(f"[red]error:[/red] {escape(message)}")
    sys.exit(code)


class _Commands(click.Group):
    """The command group; turns every expected error into one line on stderr and an exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run a command: usage errors and `ConfigError` exit 2, other failures exit 1."""
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            fail(exc.format_message() + hint, 2)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("aborted", 1)
        except ConfigError as exc:
            fail(str(exc), 2)
        except StreamerError as exc:
            fail(str(exc), 1)
        except OSError as exc:  # e.g. `replay --port` already in use
            fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), 1)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="binance-streamer")
@click.option("-v", "--verbose", is_flag=True, help="Log connection events and gaps in detail.")
def main(verbose: bool) -> None:
    """Record Binance market-data streams into a database, losing nothing; query and replay them.

    Start with `binance-streamer demo` (no network needed), then `binance-streamer record`.
    """
    level = logging.INFO if verbose else logging.WARNING
    if err.is_terminal:  # log lines go above the live status line, never into it
        handler: logging.Handler = RichHandler(console=err, show_path=False, markup=False)
        logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    else:
        logging.basicConfig(level=level, stream=sys.stderr, force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _parse_streams(_ctx: click.Context, _param: click.Parameter, value: str) -> list[str]:
    specs = [s.strip() for s in value.split(",") if s.strip()]
    if not specs:
        raise click.BadParameter(f"no stream type given; known: {', '.join(kind_names())}")
    try:
        return [parse_stream_spec(s) for s in specs]
    except InvalidStreamName as exc:
        raise click.BadParameter(f"{exc}. Known stream types: {', '.join(kind_names())}") from exc


def _parse_duration(_ctx: click.Context, _param: click.Parameter, value: float | None
                    ) -> float | None:
    try:
        check_duration(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


def _parse_snapshot_every(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    """``30m``, ``1h``, ``90s``... -> seconds; ``0`` (or ``0s``...) -> 0 (no periodic ones)."""
    if re.fullmatch(r"0+(ms|s|m|h)?", value.strip()):
        return 0.0
    try:
        return parse_every(value) / 1000
    except ConfigError as exc:
        raise click.BadParameter(f"{exc}, or 0 for none") from exc


def _parse_listings_every(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    """``5m``, ``60s``... -> seconds (positive)."""
    try:
        return parse_every(value) / 1000
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from exc


def _parse_seconds(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    """``10s``, ``500ms``, ``2m``, or a bare number of seconds -> seconds (positive)."""
    with contextlib.suppress(ValueError):
        seconds = float(value)
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    try:
        return parse_every(value) / 1000
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from exc


def _parse_processes(ctx: click.Context, param: click.Parameter, value: str) -> Processes:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise click.BadParameter(f"{value!r}: give a number of processes (1 or more) or auto")
    return count


def _parse_shard(_ctx: click.Context, _param: click.Parameter, value: str | None
                 ) -> Shard | None:
    if value is None:
        return None
    try:
        return parse_shard(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@main.command()
@click.argument("symbols", nargs=-1)
@click.option("--all", "all_symbols", is_flag=True,
              help="Record every TRADING spot symbol exchangeInfo lists instead of SYMBOLS, "
                   "following listings while running: new symbols are subscribed, halted or "
                   "delisted ones unsubscribed, without reconnecting (table listing_change).")
@click.option("--quote", metavar="ASSET",
              help="With --all: only symbols quoted in ASSET, e.g. USDT.")
@click.option("--exclude", multiple=True, metavar="SYMBOL",
              help="With --all: never record SYMBOL (repeat for several).")
@click.option("--listings-every", default="5m", show_default=True, metavar="DURATION",
              callback=_parse_listings_every,
              help="With --all: read exchangeInfo again this often, e.g. 60s, 5m.")
@click.option("--shard", metavar="I/N", callback=_parse_shard,
              help="Record only shard I of N of the streams (rendezvous-hashed by stream name; "
                   "with --all also of the streams listed later), e.g. 1/4.")
@click.option("--processes", default="auto", show_default=True, callback=_parse_processes,
              metavar="N|auto",
              help="Recording processes, each taking one shard of the streams into the same "
                   "database. auto: 1 under 100 streams, else up to one per core (at most 4).")
@click.option("--streams", default="ticker", show_default=True, callback=_parse_streams,
              help="Comma-separated stream types recorded for every symbol, e.g. "
                   "ticker,aggTrade,kline_1m,depth@100ms. Known: " + ", ".join(kind_names())
                   + " (the ! ones cover every symbol).")
@click.option("--db", "db", default="binance_data.db", show_default=True,
              help="SQLite database file (created if missing, in an existing folder), or a "
                   "postgresql:// URL (needs: pip install 'binance-streamer[postgres]').")
@click.option("--duration", type=float, callback=_parse_duration,
              help="Stop by itself after this many seconds, start-up included (exit 0).")
@click.option("--ws-url", default=BINANCE_WS_URL, show_default=True,
              help="WebSocket base URL of a Binance-compatible exchange (ws:// or wss://).")
@click.option("--rest-url", default=BINANCE_REST_URL, show_default=True,
              help="REST base URL (symbol validation and gap backfill; recording goes on "
                   "without it).")
@click.option("--raw", is_flag=True, help="Also archive every frame exactly as received.")
@click.option("--streams-per-connection", default=200, show_default=True,
              type=click.IntRange(1, 1024), help="Streams per WebSocket connection.")
@click.option("--no-backfill", is_flag=True, help="Record gaps but do not fill them over REST.")
@click.option("--snapshot-every", default="1h", show_default=True, metavar="DURATION",
              callback=_parse_snapshot_every,
              help="Store a fresh REST order-book snapshot of each diff-depth stream (depth, "
                   "depth@100ms) this often, e.g. 30m, 1h, 90s, so rebuilding a book later "
                   "replays at most this much of the recording. 0: snapshots only at start and "
                   "after a gap.")
@click.option("--microseconds", is_flag=True,
              help="Store exchange times in microseconds (Binance's timeUnit=MICROSECOND) "
                   "instead of milliseconds. A database keeps the unit it started with.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True,
              help="json: log records and a status object every --status-every as one JSON "
                   "object per line on stderr, for services; text: a live dashboard on a "
                   "terminal, else a status line every --status-every.")
@click.option("-q", "--quiet", is_flag=True,
              help="Print nothing while recording but errors; the summary at the end.")
@click.option("--status-every", default="10s", show_default=True, metavar="DURATION",
              callback=_parse_seconds,
              help="Off a terminal, print the status line (or JSON object) this often.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), metavar="PORT",
              help="Serve Prometheus metrics on http://HOST:PORT/metrics and a health check "
                   "on /healthz (0: a free port, logged).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="The address --metrics-port listens on (0.0.0.0: every interface).")
@click.option("--health-stale", default="60s", show_default=True, metavar="DURATION",
              callback=_parse_seconds,
              help="/healthz answers 503 once a connection has been down, or silent, "
                   "this long.")
def record(symbols: tuple[str, ...], all_symbols: bool, quote: str | None,
           exclude: tuple[str, ...], listings_every: float, shard: Shard | None,
           streams: list[str], db: str, duration: float | None,
           ws_url: str, rest_url: str, raw: bool, streams_per_connection: int,
           no_backfill: bool, snapshot_every: float, microseconds: bool,
           processes: Processes, log_format: str, quiet: bool, status_every: float,
           metrics_port: int | None, metrics_host: str, health_stale: float) -> None:
    """Record SYMBOLS (default BTCUSDT ETHUSDT BNBUSDT) into SQLite (or PostgreSQL).

    With --all, every TRADING spot symbol instead (--quote, --exclude), and the streams follow
    exchangeInfo's changes while it runs (--listings-every). Symbols are checked against the
    exchange first (when its REST API answers). Ctrl-C or SIGTERM stops after writing
    everything received; a summary follows. Exit codes: 0 done,
    1 storage or network failure or a stream that sent nothing, 2 bad input (unknown symbol,
    bad stream name, bad option), 3 done but some gaps are still open (the next run fills
    them).
    """
    if all_symbols and symbols:
        raise click.UsageError("give SYMBOLS or --all, not both")
    config = RecorderConfig(
        symbols=([] if all_symbols else [s.upper() for s in symbols] if symbols
                 else list(DEFAULT_SYMBOLS)),
        all_symbols=all_symbols, quote=quote, exclude=[s.upper() for s in exclude],
        listings_every_s=listings_every, shard=shard,
        streams=streams, database=db, ws_url=ws_url, rest_url=rest_url, raw=raw,
        max_streams_per_connection=streams_per_connection, backfill=not no_backfill,
        snapshot_every_s=snapshot_every, microseconds=microseconds,
    )
    if shard is not None and processes not in ("auto", 1):
        raise click.UsageError("--shard records one shard in this process: drop --processes")
    config.validate()
    mode: DisplayMode | None = "quiet" if quiet else "json" if log_format == "json" else None
    if mode is not None:
        configure_logging(mode)
    display = Display(mode, status_every, metrics_port, metrics_host, health_stale)
    stats = _run_recorder(config, duration, 1 if shard is not None else processes, display)
    _print_summary(stats, db)
    if stats.silent_streams and config.all_symbols and stats.total_messages:
        # The whole market's long tail: a symbol with no trade during the run is normal.
        shown = ", ".join(stats.silent_streams[:5])
        more = len(stats.silent_streams) - 5
        err.print(f"[yellow]note:[/yellow] {len(stats.silent_streams)} stream(s) sent nothing "
                  f"during the run ({escape(shown)}{f' and {more} more' if more > 0 else ''}); "
                  "quiet symbols are normal with --all")
    elif stats.silent_streams:
        err.print(f"[red]error:[/red] "
                  f"{escape(str(NoDataReceived(stats.silent_streams, stats.total_messages)))}")
        if not stats.total_messages and config.ws_url == BINANCE_WS_URL:
            err.print(f"[yellow]hint:[/yellow] {escape(DEMO_HINT)}")
        sys.exit(1)
    if stats.gaps_open:
        err.print(f"[yellow]gaps open:[/yellow] {stats.gaps_open} gap(s) could not be filled "
                  "before the stop; they are kept in the gaps table and the next run fills "
                  "them (exit code 3)")
        sys.exit(GAPS_OPEN_EXIT)


def _run_recorder(config: RecorderConfig, duration: float | None,
                  processes: Processes = 1, display: Display | None = None) -> RecorderStats:
    recorder = RecorderFleet(config, processes)
    display = display or Display()
    try:
        return asyncio.run(record_with_status(
            recorder, duration, display.mode, display.every_s, display.metrics_port,
            display.health_stale_s, display.metrics_host))
    except StorageError:
        if recorder.stats.total_messages:
            _print_summary(recorder.stats, str(config.database))
        raise


_StatusLine = StatusLine  # the name tests and older callers use
_print_summary = print_summary


@main.command()
@click.argument("symbol")
@click.option("--at", "at_text", required=True,
              help="The moment: epoch ms or ISO date-time (UTC), e.g. 2021-04-05T18:35:00.")
@click.option("--depth", default=20, show_default=True, type=click.IntRange(min=1),
              help="Price levels per side.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="Output format.")
@click.option("--db", default="binance_data.db", show_default=True,
              help="SQLite database file, or a postgresql:// URL.")
def book(symbol: str, at_text: str, depth: int, fmt: str, db: str) -> None:
    """Print SYMBOL's order book as it was at --at, rebuilt from what was recorded.

    The book is the latest stored depth snapshot before that moment with the recorded
    @depth diffs applied up to it, by Binance's rules. If the recording cannot tell (no
    snapshot yet, or updates missing in between) it says so, names the nearest times at which
    the book is known, and exits with code 2: it never prints a wrong book. For @depth5/10/20
    recordings it prints the latest partial book at that moment.
    """
    at = parse_time(at_text, "--at")
    assert at is not None
    found = order_book(db, symbol, at, depth)
    if fmt == "json":
        click.echo(json.dumps(_book_json(found)))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["side", "level", "price", "quantity"])
        writer.writerows(("ask", n, p, q) for n, (p, q) in enumerate(found.asks, 1))
        writer.writerows(("bid", n, p, q) for n, (p, q) in enumerate(found.bids, 1))
    else:
        _print_book(found)


def _book_json(found: Book) -> dict[str, Any]:
    spread, mid = found.spread, found.mid
    return {"symbol": found.symbol, "time": found.time_ms, "lastUpdateId": found.last_update_id,
            "updated": found.updated_ms, "source": found.source,
            "bids": [list(level) for level in found.bids],
            "asks": [list(level) for level in found.asks],
            "spread": None if spread is None else str(spread),
            "mid": None if mid is None else str(mid)}


def _print_book(found: Book) -> None:
    """Asks above bids, best prices meeting at the spread line."""
    console = Console()
    kind = "" if found.source == "depth" else " (partial book)"
    console.print(f"[bold]{found.symbol}[/] at {iso_time(found.time_ms)}{kind}")
    console.print(f"lastUpdateId {found.last_update_id}, last change "
                  f"{iso_time(found.updated_ms)}", style="dim")
    table = Table(show_edge=False, box=None)
    for name in ("side", "price", "quantity"):
        table.add_column(name, justify="left" if name == "side" else "right")
    for price, qty in reversed(found.asks):
        table.add_row("[red]ask[/]", price, qty)
    spread = "-" if found.spread is None else f"{found.spread.normalize():f}"
    mid = "-" if found.mid is None else f"{found.mid.normalize():f}"
    table.add_row("", f"[dim]spread {spread}[/]", f"[dim]mid {mid}[/]", end_section=True)
    for price, qty in found.bids:
        table.add_row("[green]bid[/]", price, qty)
    console.print(table)


@main.command()
@click.option("--db", default="demo.db", show_default=True, type=click.Path(dir_okay=False),
              help="SQLite database to record into.")
@click.option("--speed", default="4", show_default=True, callback=parse_speed_option,
              help="Replay pace of the bundled recording ('max' for as fast as possible).")
def demo(db: str, speed: float | None) -> None:
    """Record from a local exchange replaying a bundled real Binance session (no network needed).

    Starts the local exchange on a free port with 92 seconds of real BTCUSDT, ETHUSDT and
    DOTUSDT data recorded on 2021-04-04 (trades, order book diffs, klines, and tickers derived
    from the trades), records it into --db, then prints what was stored.
    """
    from binance_streamer.exchange import LocalExchange
    from binance_streamer.samples import bundled_session

    async def run() -> RecorderStats:
        async with LocalExchange(replay=[bundled_session("cf_2021-04-04")], speed=speed,
                                 port=0) as ex:
            config = RecorderConfig(
                symbols=["BTCUSDT", "ETHUSDT", "DOTUSDT"],
                streams=["ticker", "aggTrade", "kline_1m", "depth@100ms"], database=db,
                ws_url=ex.ws_url, rest_url=ex.rest_url)
            recorder = Recorder(config)
            err.print(f"local exchange at {ex.ws_url}; recording into {db} ...")
            task = asyncio.create_task(record_with_status(recorder, None))
            await asyncio.wait({task, asyncio.ensure_future(ex.finished())},
                               return_when=asyncio.FIRST_COMPLETED)
            recorder.stop()
            return await task
    stats = asyncio.run(run())
    _print_summary(stats, db)
    click.echo(f"\nFirst tickers (binance-streamer query --db {db} --stream ticker --limit 3):")
    conn = sqlite3.connect(db)
    try:
        result = read_rows(conn, "ticker", "BTCUSDT", limit=3)
    finally:
        conn.close()
    names = ["symbol", "event_time", "last_price", "best_bid_price", "best_ask_price",
             "trade_count"]
    rows = [(r[1], r[2], r[7], r[9], r[11], r[22]) for r in result.rows]
    for line in fit_table(names, rows, terminal_width(), fit=True, hidden=[]):
        click.echo(line)


for _command in (query, export, ohlcv, plot, history, replay, status, init):
    main.add_command(_command)
configure(record)
