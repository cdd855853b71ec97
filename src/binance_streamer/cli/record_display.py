"""What ``record`` shows while it runs, and its summary after.

Every view reads one model, `binance_streamer.monitor.RecordingState`:

* ``live``: on a terminal, a rich dashboard redrawn each second (connections, stream kinds,
  writer, gaps, REST), fitted to the terminal's width and height;
* ``plain``: off a terminal, one status line every ``every_s`` seconds (`status_line`);
* ``json``: one JSON object per period on stderr (``--log-format json``), log records too;
* ``quiet``: nothing but errors and the final summary.

With ``metrics_port`` the same model is served as Prometheus metrics (`MetricsServer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from binance_streamer.errors import iso_time
from binance_streamer.metrics import MetricsServer
from binance_streamer.monitor import ConnectionState, Monitor, RecordingState
from binance_streamer.recorder import BINANCE_WS_URL, Recorder, RecorderStats
from binance_streamer.supervisor import RecorderFleet

__all__ = ["Display", "DisplayMode", "StatusLine", "dashboard", "err", "print_summary",
           "record_with_status", "redact", "status_line"]

AnyRecorder = Recorder | RecorderFleet
DisplayMode = Literal["live", "plain", "json", "quiet"]
# soft_wrap: a message is one line however narrow the terminal, and never wrapped off a terminal.
err = Console(stderr=True, soft_wrap=True, highlight=False)
log = logging.getLogger("binance_streamer")
DEMO_HINT = ("no network to Binance? `binance-streamer demo` records from a bundled local "
             "exchange, offline")
# Event times further back than this are a replay's, not lateness: no lag is shown for them.
REPLAYED_MS = 3_600_000
MAX_CONNECTION_ROWS = 12  # the dashboard shows the worst connections, then "N more"


@dataclass(frozen=True)
class Display:
    """How ``record`` shows a run: ``mode`` (None: live on a terminal, else plain), the period
    of plain and JSON lines, the metrics port (None: none) and host, the health bound."""

    mode: DisplayMode | None = None
    every_s: float = 10.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    health_stale_s: float = 60.0


# -- the plain line ------------------------------------------------------------------------------


def status_line(state: RecordingState) -> str:
    """One line: connections, msgs/s by stream kind, the worst recent lag p99, rows stored,
    gaps, quarantined, and the REST budget when there is one."""
    open_, total = state.connections_open, len(state.connections)
    kinds = " ".join(f"{k.kind} {k.msgs_per_s:,.0f}/s" for k in state.kinds)
    timed = [k for k in state.kinds if k.lag_count]
    worst = max(timed, key=lambda k: k.lag_p99_ms, default=None)
    lag = ("" if worst is None or worst.lag_p99_ms > REPLAYED_MS
           else f" | lag p99 {worst.lag_p99_ms:,}ms ({worst.kind})")
    rest = "" if state.rest is None else f" | {state.rest.summary}"
    return (f"connections {open_}/{total} | {kinds or 'waiting for data'}{lag} | "
            f"stored {state.writer.rows_stored:,} | gaps {state.gaps.detected} "
            f"(filled {state.gaps.filled}) | quarantined {state.gaps.quarantined}{rest}")


class StatusLine:
    """`status_line` of a recording, its rates since the previous call (or since creation)."""

    def __init__(self, recorder: AnyRecorder) -> None:
        self.monitor = Monitor(recorder, window_s=0.0)

    def __call__(self) -> str:
        return status_line(self.monitor.sample())


# -- the dashboard -------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _lag(ms: int, count: int) -> str:
    return "-" if not count or ms > REPLAYED_MS else f"{ms:,}ms"


def worst_first(connections: tuple[ConnectionState, ...]) -> list[ConnectionState]:
    """Down connections first (longest down first), then the longest silent, then by
    reconnects."""
    def badness(c: ConnectionState) -> tuple[int, float, int]:
        if c.state != "open":
            return (0, -(c.down_for_s or 0.0), -c.reconnects)
        return (1, -(c.last_message_age_s or 0.0), -c.reconnects)
    return sorted(connections, key=badness)


Cell = tuple[str, str]  # text, style ("" for none)


def _columns(title: str, header: tuple[str, ...], rows: list[tuple[Cell, ...]],
             left: frozenset[int] = frozenset({0})) -> list[Text]:
    """A title, a bold header and ``rows`` as lines of aligned columns (columns in ``left``
    flush left, the others right), cropped and never wrapped. Plain text lines, not a rich
    Table: drawing them costs a tenth as much, and the dashboard is drawn every second."""
    widths = [max(len(cells[i][0]) for cells in [tuple((h, "") for h in header), *rows])
              for i in range(len(header))]

    def line(cells: tuple[Cell, ...], style: str = "") -> Text:
        text = Text(no_wrap=True, overflow="ellipsis", style=style)
        for i, ((cell, cell_style), width) in enumerate(zip(cells, widths, strict=True)):
            if i:
                text.append("  ")
            text.append(cell.ljust(width) if i in left else cell.rjust(width), cell_style)
        return text

    head = line(tuple((h, "") for h in header), "bold")
    return [Text(title, no_wrap=True, overflow="ellipsis"), head, *map(line, rows)]


def _connections_table(state: RecordingState, rows: int) -> list[Text]:
    shown = worst_first(state.connections)
    lines: list[tuple[Cell, ...]] = []
    for conn in shown[:rows]:
        colour = {"open": "green", "down": "red"}.get(conn.state, "yellow")
        last = (_age(conn.down_for_s) + " down" if conn.state != "open"
                else _age(conn.last_message_age_s))
        lines.append(((str(conn.index), ""), (conn.state, colour), (f"{conn.streams:,}", ""),
                      (f"{conn.msgs_per_s:,.0f}", ""), (str(conn.reconnects), ""),
                      (last, "")))
    if len(shown) > rows:
        rest = shown[rows:]
        lines.append((("", ""), (f"{len(rest)} more", "dim"),
                      (f"{sum(c.streams for c in rest):,}", "dim"),
                      (f"{sum(c.msgs_per_s for c in rest):,.0f}", "dim"),
                      (str(sum(c.reconnects for c in rest)), "dim"), ("", "")))
    return _columns(f"connections {state.connections_open}/{len(state.connections)} open, "
                    f"{state.reconnects} reconnects",
                    ("#", "state", "streams", "msg/s", "reconn", "last msg"), lines,
                    frozenset({1}))


def _kinds_table(state: RecordingState) -> list[Text]:
    lines: list[tuple[Cell, ...]] = [
        ((kind.kind, ""), (f"{kind.msgs_per_s:,.0f}", ""), (f"{kind.messages:,}", ""),
         (_lag(kind.lag_p50_ms, kind.lag_count), ""), (_lag(kind.lag_p99_ms, kind.lag_count), ""))
        for kind in state.kinds]
    if not lines:
        lines.append((("waiting for data", "dim"), ("", ""), ("", ""), ("", ""), ("", "")))
    return _columns("stream kinds", ("kind", "msg/s", "messages", "lag p50", "lag p99"), lines)


def _facts(state: RecordingState) -> list[Text]:
    """The writer, gaps and REST, a line each (cropped, never wrapped)."""
    w, g = state.writer, state.gaps
    lines = [
        f"writer  queue {w.queue_batches} batches | {w.batches_per_s:,.1f} batches/s | "
        f"commit p99 {w.commit_p99_ms:,}ms | paused {w.paused}x",
        f"stored  {w.rows_stored:,} rows ({w.rows_per_s:,.0f}/s) | db {_bytes(w.db_size_bytes)}",
        f"gaps    open {g.open} | filled {g.filled} of {g.detected} | silences {g.stale} | "
        f"quarantined {g.quarantined} | {g.rows_backfilled:,} rows over REST",
    ]
    if state.rest is not None:
        lines.append(f"rest    {state.rest.summary}")
    return [Text(line, no_wrap=True, overflow="ellipsis") for line in lines]


def _side_by_side(left: list[Text], right: list[Text], gap: int = 4) -> list[Text]:
    width = max(len(line) for line in left) + gap
    out = []
    for i in range(max(len(left), len(right))):
        line = left[i].copy() if i < len(left) else Text(no_wrap=True, overflow="ellipsis")
        line.pad_right(width - len(line))
        if i < len(right):
            line.append_text(right[i])
        out.append(line)
    return out


def dashboard(state: RecordingState, width: int = 80, height: int = 24) -> RenderableType:
    """The live dashboard of ``state`` for a terminal of ``width`` x ``height``: on a narrow
    one the tables stack, and at most as many connections as fit are listed (worst first)."""
    header = Text(f"binance-streamer record | up {_age(state.uptime_s)} | "
                  f"{sum(k.msgs_per_s for k in state.kinds):,.0f} msg/s | "
                  f"{state.messages:,} messages", style="bold", no_wrap=True,
                  overflow="ellipsis")
    facts = _facts(state)
    kinds = _kinds_table(state)
    if width >= 120:  # side by side
        room = height - 5 - len(facts)
        conns = _connections_table(state, max(1, min(MAX_CONNECTION_ROWS, room)))
        return Group(header, *_side_by_side(conns, kinds), *facts)
    room = height - 6 - len(facts) - len(kinds)
    return Group(header, *_connections_table(state, max(1, min(MAX_CONNECTION_ROWS, room))),
                 *kinds, *facts)


# -- the display during a run --------------------------------------------------------------------


@contextlib.contextmanager
def status_display(monitor: Monitor, mode: DisplayMode, every_s: float = 10.0
                   ) -> Iterator[Callable[[], None]]:
    """A function to call about once a second that shows the recording as ``mode`` says."""
    if mode == "live":
        with Live(console=err, auto_refresh=False, transient=True,
                  vertical_overflow="ellipsis") as live:
            def draw() -> None:
                size = err.size
                live.update(dashboard(monitor.sample(), size.width, size.height), refresh=True)
            yield draw
        return
    if mode == "quiet":
        yield lambda: None
        return
    logged = time.monotonic()

    def periodic() -> None:
        nonlocal logged
        if time.monotonic() - logged >= every_s:
            logged = time.monotonic()
            state = monitor.sample()
            if mode == "json":
                print_json({"event": "status", **state.to_json()})
            else:
                err.print(escape(status_line(state)))
    yield periodic


def print_json(obj: dict[str, Any]) -> None:
    """One JSON object as one line on stderr."""
    sys.stderr.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stderr.flush()


class JsonLogFormatter(logging.Formatter):
    """A log record as one JSON object: time (ISO, UTC), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"event": "log", "time": iso_time(int(record.created * 1000)),
                 "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def configure_logging(mode: DisplayMode) -> None:
    """JSON log records for ``json``; only errors for ``quiet``."""
    root = logging.getLogger()
    if mode == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLogFormatter())
        root.handlers[:] = [handler]
    elif mode == "quiet":
        root.setLevel(logging.ERROR)


class DemoHint:
    """Once, when Binance itself cannot be reached for 15 s: point at the offline demo."""

    def __init__(self, recorder: AnyRecorder, after_s: float = 15.0, quiet: bool = False
                 ) -> None:
        self.recorder = recorder
        self._due = time.monotonic() + after_s
        self._shown = quiet or recorder.config.ws_url != BINANCE_WS_URL

    def __call__(self) -> None:
        conns = self.recorder.connections
        if self._shown or time.monotonic() < self._due or not conns:
            return
        self._shown = True
        if not any(c.frames or c.is_open for c in conns):
            err.print(f"[yellow]hint:[/yellow] {escape(DEMO_HINT)}")


async def record_with_status(recorder: AnyRecorder, duration: float | None,
                             mode: DisplayMode | None = None, every_s: float = 10.0,
                             metrics_port: int | None = None, health_stale_s: float = 60.0,
                             metrics_host: str = "127.0.0.1") -> RecorderStats:
    """Run ``recorder`` for ``duration`` (None: until SIGINT/SIGTERM), showing it as ``mode``
    (None: live on a terminal, else plain) and serving metrics on ``metrics_port``."""
    mode = mode or ("live" if err.is_terminal else "plain")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, recorder.stop)
    monitor = Monitor(recorder, window_s=every_s if mode in ("plain", "json") else 5.0)
    async with contextlib.AsyncExitStack() as stack:
        if metrics_port is not None:
            server = MetricsServer(monitor, metrics_port, metrics_host, health_stale_s)
            await stack.enter_async_context(server)
            url = f"http://{metrics_host}:{server.port}"
            if mode == "json":
                log.warning("metrics on %s/metrics, health on %s/healthz", url, url)
            elif mode != "quiet" or metrics_port == 0:  # a port picked must be findable
                err.print(f"metrics on {url}/metrics, health on {url}/healthz")
        task = asyncio.create_task(recorder.run(duration))
        hint = DemoHint(recorder, quiet=mode == "quiet")
        with status_display(monitor, mode, every_s) as show:
            while not task.done():
                await asyncio.wait({task}, timeout=1.0)
                show()
                hint()
        stats = await task
        if mode == "json":
            print_json({"event": "final", **monitor.sample().to_json()})
        return stats


# -- the summary ---------------------------------------------------------------------------------


def redact(database: str) -> str:
    """``database`` as it may be printed: a URL's password replaced by ``***``."""
    parts = urlsplit(database)
    if not parts.scheme or parts.password is None:
        return database
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def print_summary(stats: RecorderStats, db: str) -> None:
    """What was recorded: rows per table, messages, gaps, lag, on stdout."""
    out = Console(soft_wrap=True, highlight=False)
    elapsed = time.monotonic() - stats.started
    out.print(f"Recorded into {escape(redact(db))} in {elapsed:.1f}s")
    table = Table(show_edge=False)
    table.add_column("table")
    table.add_column("rows written", justify="right")
    for name, n in sorted(stats.stored.items()):
        table.add_row(name, f"{n:,}")
    out.print(table)
    out.print(
        f"messages received {stats.total_messages:,}, gaps {stats.gaps} "
        f"(filled {stats.gaps_filled}, open {stats.gaps_open}, "
        f"{stats.rows_backfilled:,} rows over REST), "
        f"silences {stats.stale}, quarantined {stats.quarantined}"
    )
    kinds, connections = stats.lag.run_summary()
    if kinds and min(lag.p50_ms for lag in kinds.values()) > REPLAYED_MS:
        out.print("lag: not measured, the event times are hours old (a replay of old data)")
    elif kinds:
        out.print("lag (receive time - event time): " + ", ".join(
            f"{kind} p50 {lag.p50_ms:,}ms p99 {lag.p99_ms:,}ms max {lag.max_ms:,}ms"
            for kind, lag in sorted(kinds.items())))
        index, late = max(connections.items(), key=lambda item: item[1].p99_ms)
        if len(connections) > 1:
            out.print(f"latest connection: #{index} p99 {late.p99_ms:,}ms, "
                      f"of {len(connections)} connections")
    if stats.rest_unchecked:
        err.print("[yellow]warning:[/yellow] REST never answered: symbols were not checked and "
                  "gaps stay open; the next run with REST fills them")
