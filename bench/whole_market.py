"""Can `binance-streamer record` keep up with the whole spot market, and what does it cost on disk?

    python bench/whole_market.py [--symbols 1500] [--rates 30000,60000,100000] [--seconds 30]
                                 [--warmup 5] [--variant-rate 100000] [--record-args "..."]
                                 [--json] [--keep DIR]

The load is the local exchange's synthetic market, in a process of its own, exactly as a user
starts it: ``binance-streamer replay --synthetic-market N --market-rate R --skew S --port 0``
(``N`` real listed symbols first, Zipf-skewed: a few busy symbols, a long quiet tail; real
payload shapes, tick and step sizes). Every run subscribes to ``<symbol>@trade``,
``@bookTicker`` and ``@depth@100ms`` of every symbol (4,500 streams at 1,500 symbols).

For each offered rate (messages/s), in one run:

1. **offered**: a fresh exchange at the ``--market-rate`` that gives the rate (steps/s, corrected
   from each measurement, up to ``--attempts`` exchanges), and a bare counting client
   (`bench/synthetic_rate.py`'s: picows, no decode, its own process) subscribed to every stream
   counts the frames it receives over ``--count-seconds``. This is what the exchange really
   offers, measured before the recorder.
2. **recorder**: the one command users run, in a subprocess against the same exchange:
   ``python -m binance_streamer -v record SYMBOLS... --streams trade,bookTicker,depth@100ms
   --db X --ws-url ... --rest-url ...`` plus ``--record-args``. From its start until every
   connection is open (its ``connection #N connected`` log lines) is *startup*; then
   ``--warmup`` s, then a ``--seconds`` window, then SIGINT (a clean stop writes everything).

Measured over the window (t0..t1), beside the machine's 1-minute load average:

* *received*: rows whose ``received_ns`` lies in the window (counted after the stop, when all
  is written), per second; *persisted*: rows committed during the window (``MAX(id)`` at t1
  minus at t0; ids are dense) per second; *backlog*: received minus persisted over the window
  (grows when the writer falls behind the reader; when the reader falls behind, the exchange
  slows down instead, back-pressure, and *received* drops below *offered*);
* *lag* of ``trade`` and ``depth@100ms``: ``received_ns`` minus the event time ``E`` of the
  stored rows of the window (p50/p99; the exchange stamps events with their scheduled time,
  so a lagging exchange shows here too; ``bookTicker`` carries no event time);
* *visible*: every 0.5 s the bench reads the newest ``received_ns`` committed in each stream
  table; now minus it is how stale a reader's view is (commit latency plus the time since the
  last commit), p99 over the samples, the worst of the three tables;
* RSS of the recorder process and all its children, summed, sampled every 0.5 s (peak over the
  whole run), and CPU time (user + system) of that process tree per persisted message and in
  cores; the exchange's CPU share alongside. Read from ``/proc`` (what psutil reads).

Disk (part 6): after each run, SQLite's ``dbstat`` gives the bytes of each table and each of its
indexes (the natural key's ``sqlite_autoindex``; schema v4 has no ``<table>_by_time`` index on
these tables) per stored row, and ``/proc/<pid>/io`` ``write_bytes`` of the recorder's tree over
the window per persisted message (WAL plus checkpoints). At ``--variant-rate`` the recorder also
runs a second time on the same exchange with ``--variant-args`` added (default
``--processes 1``: one process against the default layout, `record --processes auto`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("trade", "bookTicker", "depth@100ms")
STREAM_TABLES = ("trade", "book_ticker", "depth_update")  # one row per message
EVENT_TIME_TABLES = ("trade", "depth_update")  # bookTicker has no event time
TABLES = (*STREAM_TABLES, "depth_snapshot")  # + REST snapshots of every depth stream
MSGS_PER_STEP = 6.0  # first guess: messages offered per --market-rate step at 1,500 symbols
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECTED = re.compile(
    r"^(\S+ \S+) INFO binance_streamer\.recorder: (?:\[shard \S+\] )?connection #\d+ connected")
ATTEMPT = re.compile(r"connection #\d+ (connected|connect_failed|refused)")


# -- processes, from /proc ------------------------------------------------------------------------

def _tree(root: int) -> list[int]:
    """``root`` and its descendants (live ones)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def _cpu_s(pid: int) -> float:
    """User + system time of ``pid`` and of its children it has reaped."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / CLK_TCK


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat: not idle, iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


@dataclass
class TreeSample:
    """One reading of a process tree: CPU seconds, RSS and peak RSS (bytes), bytes written."""

    cpu_s: float = 0.0
    rss: int = 0
    hwm: int = 0
    write_bytes: int = 0
    processes: int = 0


def sample_tree(root: int) -> TreeSample:
    s = TreeSample()
    for pid in _tree(root):
        try:
            s.cpu_s += _cpu_s(pid)
            s.rss += _status_kb(pid, "VmRSS") * 1024
            s.hwm += _status_kb(pid, "VmHWM") * 1024
            s.write_bytes += _write_bytes(pid)
            s.processes += 1
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
    return s


# -- the exchange and the counting client ---------------------------------------------------------

class Exchange:
    """``binance-streamer replay --synthetic-market`` in a process of its own."""

    def __init__(self, symbols: int, market_rate: float, skew: float) -> None:
        self.market_rate = market_rate
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "binance_streamer", "replay", "--synthetic-market",
             str(symbols), "--market-rate", f"{market_rate:.0f}", "--skew", str(skew),
             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        self.ws_url = self.rest_url = ""
        while not (self.ws_url and self.rest_url):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the exchange exited before it was ready")
            if line.startswith("WebSocket:"):
                self.ws_url = line.split()[1]
            elif line.startswith("REST:"):
                self.rest_url = line.split()[1]

    def cpu_s(self) -> float:
        return _cpu_s(self.proc.pid)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _ask(proc: subprocess.Popen[str]) -> Any:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("mark\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def count_offered(ex: Exchange, symbols_file: str, seconds: float) -> dict[str, float]:
    """Frames/s a bare client subscribed to every stream receives, and the exchange's CPU share."""
    client = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "synthetic_rate.py"), "--count", ex.ws_url,
         "--symbols-file", symbols_file], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    assert client.stdin is not None and client.stdout is not None
    if client.stdout.readline().strip() != "ready":
        raise RuntimeError("the counting client did not connect")
    time.sleep(2.0)  # the first frames after subscribing
    c0, x0 = _ask(client), ex.cpu_s()
    time.sleep(seconds)
    c1, x1 = _ask(client), ex.cpu_s()
    client.stdin.close()
    client.wait(30)
    span = c1["at"] - c0["at"]
    return {"market_rate": ex.market_rate, "offered": (c1["received"] - c0["received"]) / span,
            "exchange_core": (x1 - x0) / span, "client_core": (c1["cpu"] - c0["cpu"]) / span,
            "load1": os.getloadavg()[0]}


def calibrated_exchange(target: float, args: argparse.Namespace, symbols_file: str,
                        guess: float) -> tuple[Exchange, dict[str, float], float]:
    """An exchange offering about ``target`` msgs/s, its measured offer and the messages per step
    it showed. Messages per step grow with the rate (more symbols change their book within each
    100 ms) and the machine is shared, so the step rate is corrected up to ``--attempts`` - 1
    times, each time from the last measurement."""
    per_step, before = guess, 0.0
    for attempt in range(args.attempts):
        ex = Exchange(args.symbols, target / per_step, args.skew)
        offer = count_offered(ex, symbols_file, args.count_seconds)
        per_step = offer["offered"] / ex.market_rate
        saturated = offer["offered"] < before * 1.1  # more steps asked, hardly more messages
        before = offer["offered"]
        if (abs(offer["offered"] / target - 1) <= args.tolerance or saturated
                or attempt == args.attempts - 1):
            offer["attempts"] = attempt + 1
            return ex, offer, per_step
        ex.stop()
    raise ValueError("--attempts must be at least 1")


# -- the database, read while the recorder writes -------------------------------------------------

def _read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None, timeout=1.0,
                           check_same_thread=False)


def _table_heads(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """Per table: rows (``MAX(id)``; ids are dense) and the newest ``received_ns`` committed."""
    heads = {}
    for t in TABLES:
        n = conn.execute(f"SELECT MAX(id) FROM {t}").fetchone()[0] or 0
        newest = conn.execute(f"SELECT MAX(received_ns) FROM (SELECT received_ns FROM {t} "
                              "ORDER BY id DESC LIMIT 64)").fetchone()[0] or 0
        heads[t] = (n, newest)
    return heads


@dataclass
class Mark:
    """The state at one instant of the run."""

    mono: float
    wall_ns: int
    rows: dict[str, int]
    tree: TreeSample
    exchange_cpu_s: float
    load1: float
    machine_busy_s: float


@dataclass
class Monitor:
    """Samples the recorder's process tree and the database every ``every`` seconds."""

    pid: int
    db: Path
    exchange: Exchange
    every: float = 0.5
    peak_rss: int = 0
    first_row_at: float | None = None
    staleness_ms: dict[str, list[float]] = field(default_factory=dict)
    measuring: bool = False
    _conn: sqlite3.Connection | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._conn is not None:
            self._conn.close()

    def heads(self) -> dict[str, tuple[int, int]] | None:
        with self._lock:
            try:
                if self._conn is None:
                    if not self.db.exists():
                        return None
                    self._conn = _read_only(self.db)
                return _table_heads(self._conn)
            except sqlite3.Error:
                return None  # not created or migrated yet

    def mark(self) -> Mark:
        heads = self.heads() or {t: (0, 0) for t in TABLES}
        return Mark(time.monotonic(), time.time_ns(), {t: n for t, (n, _) in heads.items()},
                    sample_tree(self.pid), self.exchange.cpu_s(), os.getloadavg()[0],
                    machine_busy_s())

    def _run(self) -> None:
        while not self._stop.wait(self.every if self.first_row_at else 0.1):
            tree = sample_tree(self.pid)
            self.peak_rss = max(self.peak_rss, tree.rss)
            heads = self.heads()
            if heads is None:
                continue
            now = time.time_ns()
            if self.first_row_at is None and any(n for t, (n, _) in heads.items()
                                                 if t in STREAM_TABLES):
                self.first_row_at = time.monotonic()
            if self.measuring:
                for t in STREAM_TABLES:
                    if heads[t][1]:
                        self.staleness_ms.setdefault(t, []).append((now - heads[t][1]) / 1e6)


# -- one recorder run -----------------------------------------------------------------------------

def _option(args: list[str], name: str, default: str) -> str:
    """The value of ``name`` in a command line (``--name V`` or ``--name=V``), else default."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


def _connections_expected(symbols: list[str], record_args: list[str], override: int) -> int:
    """Connections the recorder opens: per shard process, its streams / streams per connection."""
    from binance_streamer.core.sharding import split
    from binance_streamer.core.streams import streams_for
    from binance_streamer.recorder import RecorderConfig
    from binance_streamer.supervisor import resolve_processes

    if override:
        return override
    per = int(_option(record_args, "--streams-per-connection", "200"))
    wanted = _option(record_args, "--processes", "auto")
    config = RecorderConfig(symbols=symbols, streams=list(KINDS))
    processes = resolve_processes(config, "auto" if wanted == "auto" else int(wanted))
    return sum(math.ceil(len(part) / per)
               for part in split(streams_for(symbols, list(KINDS)), processes))


def _log_wall(stamp: str) -> float:
    """Epoch seconds of a log line's local time stamp (``2026-11-29 23:21:02,604``)."""
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:]) / 1000


def _startup(log: Path, expected: int) -> tuple[float | None, int]:
    """Wall time at which the ``expected``-th connection opened, and the connection attempts."""
    text = log.read_text(errors="replace")
    opened = [m.group(1) for line in text.splitlines() if (m := CONNECTED.match(line))]
    at = _log_wall(opened[expected - 1]) if len(opened) >= expected else None
    return at, len(ATTEMPT.findall(text))


def _percentile(values: list[float], q: int) -> float:
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(
        values)


def record_run(label: str, ex: Exchange, symbols: list[str], args: argparse.Namespace,
               workdir: Path, *, variant: str = "") -> dict[str, Any]:
    """Run ``record`` (with ``variant`` options added) against ``ex`` and measure it (see the
    module's docstring)."""
    db = workdir / f"{label}.db"
    extra = shlex.split(args.record_args) + shlex.split(variant)
    cmd = [sys.executable, "-m", "binance_streamer", "-v", "record", *symbols,
           "--streams", ",".join(KINDS), "--db", str(db), "--ws-url", ex.ws_url,
           "--rest-url", ex.rest_url, *extra]
    log = workdir / f"{label}.log"
    expected = _connections_expected(symbols, extra, args.expect_connections)
    with open(log, "w") as out:
        started_wall, started = time.time(), time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        mon = Monitor(proc.pid, db, ex)
        mon.start()
        try:
            live_at = _await_startup(proc, mon, log, expected, started + args.startup_timeout)
            time.sleep(args.warmup)
            mon.measuring = True
            m0 = mon.mark()
            time.sleep(args.seconds)
            m1 = mon.mark()
            mon.measuring = False
        finally:
            stop_at = time.monotonic()
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stopped = time.monotonic() - stop_at
            mon.stop()
    _, attempts = _startup(log, expected)
    result = _analyse(db, m0, m1, mon)
    tail = log.read_text(errors="replace")
    summary = re.search(r"messages received ([\d,]+), gaps (\d+)", tail)
    result.update(
        label=label, exit_code=proc.returncode, variant=variant,
        startup_all_live_s=None if live_at is None else live_at - started_wall,
        first_row_s=None if mon.first_row_at is None else mon.first_row_at - started,
        connections=expected, connection_attempts=attempts, stop_s=stopped,
        peak_rss=mon.peak_rss, peak_rss_hwm_sum=m1.tree.hwm, processes=m1.tree.processes,
        messages_received_total=int(summary.group(1).replace(",", "")) if summary else None,
        gaps=int(summary.group(2)) if summary else None,
        disconnects=tail.count(" disconnected\n"), command=shlex.join(
            ["python", "-m", "binance_streamer", "-v", "record", f"<{len(symbols)} symbols>",
             *cmd[cmd.index("--streams"):]]))
    if not args.keep:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    return result


def _await_startup(proc: subprocess.Popen[bytes], mon: Monitor, log: Path, expected: int,
                   deadline: float) -> float | None:
    """Wait until every connection is open and a row is stored; the wall time of the former."""
    live_at = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"record exited ({proc.returncode}):\n"
                               + log.read_text(errors="replace")[-3000:])
        if live_at is None:
            live_at, _ = _startup(log, expected)
        if live_at is not None and mon.first_row_at is not None:
            return live_at
        time.sleep(0.1)
    return live_at


def _analyse(db: Path, m0: Mark, m1: Mark, mon: Monitor) -> dict[str, Any]:
    from binance_streamer.storage.bookkeeping import exchange_time_scale

    span = m1.mono - m0.mono
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        scale = exchange_time_scale(conn, "?")  # event times in ms, or us (timeUnit)
        tables: dict[str, dict[str, Any]] = {}
        for t in TABLES:
            received = conn.execute(f"SELECT COUNT(*) FROM {t} WHERE received_ns BETWEEN ? "
                                    "AND ?", (m0.wall_ns, m1.wall_ns)).fetchone()[0]
            tables[t] = {"received": received, "persisted": m1.rows[t] - m0.rows[t],
                         "rows": conn.execute(f"SELECT MAX(id) FROM {t}").fetchone()[0] or 0}
            if t in EVENT_TIME_TABLES:
                lags = [r[0] / 1e6 for r in conn.execute(
                    f"SELECT received_ns - event_time * ? FROM {t} WHERE received_ns BETWEEN ? "
                    "AND ? AND event_time IS NOT NULL", (1_000_000 // scale, m0.wall_ns,
                                                        m1.wall_ns))]
                tables[t]["lag_ms"] = {"p50": _percentile(lags, 50), "p99": _percentile(lags, 99),
                                       "max": max(lags, default=math.nan)}
            if t in mon.staleness_ms:
                vis = mon.staleness_ms[t]
                tables[t]["visible_ms"] = {"p50": _percentile(vis, 50),
                                           "p99": _percentile(vis, 99), "samples": len(vis)}
        disk = _disk(conn)
    finally:
        conn.close()
    persisted = sum(tables[t]["persisted"] for t in STREAM_TABLES)
    received = sum(tables[t]["received"] for t in STREAM_TABLES)
    cpu = m1.tree.cpu_s - m0.tree.cpu_s
    written = m1.tree.write_bytes - m0.tree.write_bytes
    return {
        "window_s": span, "received_per_s": received / span, "persisted_per_s": persisted / span,
        "backlog_growth": received - persisted, "tables": tables, "disk": disk,
        "cpu_us_per_msg": cpu / max(persisted, 1) * 1e6, "recorder_cores": cpu / span,
        "exchange_core": (m1.exchange_cpu_s - m0.exchange_cpu_s) / span,
        # cores busy with anything else: other work on the shared machine, and this bench
        "other_cores": (m1.machine_busy_s - m0.machine_busy_s - cpu
                        - (m1.exchange_cpu_s - m0.exchange_cpu_s)) / span,
        "written_bytes": written, "written_per_msg": written / max(persisted, 1),
        "load1": [m0.load1, m1.load1],
        "visible_p99_ms": max((tables[t].get("visible_ms", {}).get("p99", math.nan)
                               for t in STREAM_TABLES), default=math.nan),
    }


def _disk(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Per table: its rows, and bytes (pages, and payload) of the table and of each index."""
    owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN "
                              "('table', 'index')").fetchall())
    out: dict[str, dict[str, Any]] = {}
    for name, pages, payload in conn.execute(
            "SELECT name, pgsize, payload FROM dbstat WHERE aggregate = TRUE"):
        table = owner.get(name, name)
        if table not in TABLES:
            continue
        part = ("table" if name == table else "by_time" if name.endswith("_by_time")
                else "key" if name.startswith("sqlite_autoindex") else name)
        entry = out.setdefault(table, {"parts": {}})
        entry["parts"][part] = {"bytes": pages, "payload": payload}
    for table, entry in out.items():
        rows = conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0
        entry["rows"] = rows
        entry["bytes_per_row"] = {p: v["bytes"] / max(rows, 1) for p, v in entry["parts"].items()}
        entry["bytes_per_row"]["total"] = sum(entry["bytes_per_row"].values())
    for table in STREAM_TABLES:
        if table in out:
            out[table]["column_bytes"] = _column_bytes(conn, table)
    out["_file"] = {"bytes": conn.execute("PRAGMA page_count").fetchone()[0]
                    * conn.execute("PRAGMA page_size").fetchone()[0]}
    return out


def _value_bytes(v: object) -> int:
    """Bytes of one value in a SQLite record, its type byte in the header excluded."""
    if v is None or v in (0, 1):  # NULL, 0 and 1 are stored in the header alone
        return 0
    if isinstance(v, int):
        return next(n for n, bound in ((1, 1 << 7), (2, 1 << 15), (3, 1 << 23), (4, 1 << 31),
                                       (6, 1 << 47), (8, 1 << 63)) if -bound <= v < bound)
    if isinstance(v, float):
        return 8
    if isinstance(v, str):
        return len(v.encode())
    return len(v) if isinstance(v, bytes) else 0


def _column_bytes(conn: sqlite3.Connection, table: str, sample: int = 20_000) -> dict[str, float]:
    """Average bytes of each column's values over the newest ``sample`` rows of ``table``."""
    cur = conn.execute(f"SELECT * FROM {table} ORDER BY id DESC LIMIT {sample}")
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    return {name: sum(_value_bytes(r[i]) for r in rows) / max(len(rows), 1)
            for i, name in enumerate(names) if name != "id"}  # the rowid: the b-tree's key


# -- printing -------------------------------------------------------------------------------------

def _ms(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:,.0f}"


def print_report(offers: list[dict[str, Any]], runs: list[dict[str, Any]],
                 args: argparse.Namespace, out: IO[str]) -> None:
    def p(line: str = "") -> None:
        print(line, file=out)

    p(f"whole market: {args.symbols} symbols x {', '.join(KINDS)} "
      f"({args.symbols * len(KINDS):,} streams), Zipf skew {args.skew:g}; "
      f"exchange (replay --synthetic-market) and recorder in separate processes, 2 cores")
    p()
    p("offered: a bare counting client (picows, no decode), "
      f"{args.count_seconds:g} s, before the recorder")
    p(f"{'target msg/s':>12}  {'steps/s':>8}  {'offered msg/s':>13}  {'exchange core':>13}  "
      f"{'client core':>11}  {'load1':>5}")
    for o in offers:
        p(f"{o['target']:>12,.0f}  {o['market_rate']:>8,.0f}  {o['offered']:>13,.0f}  "
          f"{o['exchange_core']:>13.0%}  {o['client_core']:>11.0%}  {o['load1']:>5.2f}")
    p()
    p(f"recorder: `record` + {args.record_args!r}, {args.warmup:g} s warm-up, "
      f"{args.seconds:g} s window; lag = received - event time; visible = now - newest "
      "committed received_ns (0.5 s samples)")
    p(f"{'run':<22} {'offered':>8} {'received':>8} {'persisted':>9} {'backlog':>8} "
      f"{'trade lag':>11} {'depth lag':>11} {'visible':>7} {'live/1st row':>12} "
      f"{'RSS':>6} {'CPU/msg':>7} {'cores':>5} {'exch':>4} {'other':>5} {'load1':>5}")
    p(f"{'':<22} {'msg/s':>8} {'msg/s':>8} {'msg/s':>9} {'rows':>8} {'p50/p99 ms':>11} "
      f"{'p50/p99 ms':>11} {'p99 ms':>7} {'s':>12} {'MB':>6} {'':>7} {'':>5} {'core':>4} "
      f"{'cores':>5}")
    for r in runs:
        t = r["tables"]
        lag = {k: f"{_ms(t[k]['lag_ms']['p50'])}/{_ms(t[k]['lag_ms']['p99'])}"
               for k in EVENT_TIME_TABLES}
        live = ("-" if r["startup_all_live_s"] is None else f"{r['startup_all_live_s']:.1f}")
        first = "-" if r["first_row_s"] is None else f"{r['first_row_s']:.1f}"
        p(f"{r['label']:<22} {r['offered']:>8,.0f} {r['received_per_s']:>8,.0f} "
          f"{r['persisted_per_s']:>9,.0f} {r['backlog_growth']:>+8,} {lag['trade']:>11} "
          f"{lag['depth_update']:>11} {_ms(r['visible_p99_ms']):>7} {live + '/' + first:>12} "
          f"{r['peak_rss'] / 2**20:>6,.0f} {r['cpu_us_per_msg']:>5.1f}us "
          f"{r['recorder_cores']:>5.2f} {r['exchange_core']:>4.0%} {r['other_cores']:>5.2f} "
          f"{r['load1'][1]:>5.2f}")
    p()
    p("disk: bytes per stored row (dbstat pages: table + natural-key index + _by_time index), "
      "and bytes written (/proc io of the recorder tree) per persisted message over the window")
    p(f"{'run':<22} {'table':<15} {'rows':>10} {'table':>6} {'key':>5} {'by_time':>7} "
      f"{'total':>6}")
    for r in runs:
        for table in TABLES:
            d = r["disk"].get(table)
            if not d:
                continue
            b = d["bytes_per_row"]
            p(f"{r['label']:<22} {table:<15} {d['rows']:>10,} {b.get('table', 0):>6,.0f} "
              f"{b.get('key', 0):>5.0f} {b.get('by_time', 0):>7.0f} {b['total']:>6,.0f}")
        p(f"{r['label']:<22} {'written/msg':<15} {'':>10} {'':>6} {'':>5} {'':>7} "
          f"{r['written_per_msg']:>6,.0f}   (database "
          f"{r['disk']['_file']['bytes'] / 2**20:,.0f} MB; startup "
          f"{r['connection_attempts']} connection attempts; "
          f"exit {r['exit_code']}, stop {r['stop_s']:.1f} s)")
    _print_variant(runs, p)
    if runs:
        r = runs[0]
        p(f"average bytes per value in the rows of {r['label']} (SQLite record; each column also "
          "takes a type byte in the row header)")
        for table in STREAM_TABLES:
            cols = r["disk"].get(table, {}).get("column_bytes", {})
            p(f"  {table:<13} " + ", ".join(f"{c} {b:.1f}" for c, b in cols.items()))


def _print_variant(runs: list[dict[str, Any]], p: Callable[[str], None]) -> None:
    for other in (r for r in runs if r["variant"]):
        base = next((r for r in runs if not r["variant"] and r["target"] == other["target"]),
                    None)
        if base is None:
            continue
        p(f"{other['variant']} at {other['target']:,.0f} offered: persisted "
          f"{base['persisted_per_s']:,.0f} by default, {other['persisted_per_s']:,.0f} with it "
          f"({other['persisted_per_s'] / max(base['persisted_per_s'], 1) - 1:+.0%}); CPU/msg "
          f"{base['cpu_us_per_msg']:.1f} -> {other['cpu_us_per_msg']:.1f} us; written/msg "
          f"{base['written_per_msg']:,.0f} -> {other['written_per_msg']:,.0f} B")


# -- main -----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1500)
    parser.add_argument("--rates", default="30000,60000,100000",
                        help="offered messages/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds after every connection is open and a row is stored")
    parser.add_argument("--count-seconds", type=float, default=4.0)
    parser.add_argument("--skew", type=float, default=1.0)
    parser.add_argument("--tolerance", type=float, default=0.07,
                        help="restart the exchange at a corrected rate when the offered rate "
                             "is further than this from the target")
    parser.add_argument("--attempts", type=int, default=3,
                        help="exchanges started at most per rate to get within --tolerance")
    parser.add_argument("--variant-rate", type=float, default=None,
                        help="rate of the extra run with --variant-args (default: the "
                             "highest; 0: none)")
    parser.add_argument("--variant-args", default="--processes 1",
                        help="options the extra run adds to `record`")
    parser.add_argument("--record-args", default="", help="more options for `record`, "
                        "e.g. '--processes 2' or '--streams-per-connection 1024'")
    parser.add_argument("--expect-connections", type=int, default=0,
                        help="connections the recorder opens (default: streams / "
                             "--streams-per-connection)")
    parser.add_argument("--startup-timeout", type=float, default=90.0)
    parser.add_argument("--keep", help="keep databases, logs and the raw figures "
                        "(whole_market.json) in this folder")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    variant_rate = max(rates) if args.variant_rate is None else args.variant_rate

    from binance_streamer.exchange.listings import market_symbols

    symbols = market_symbols(args.symbols)
    offers: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    guess = MSGS_PER_STEP
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        symbols_file = str(workdir / "symbols.json")
        Path(symbols_file).write_text(json.dumps(symbols))
        for target in rates:
            ex, offer, guess = calibrated_exchange(target, args, symbols_file, guess)
            offers.append({"target": target, **offer})
            print(f"offered {offer['offered']:,.0f} msg/s at {ex.market_rate:,.0f} steps/s "
                  f"(target {target:,.0f})", file=sys.stderr, flush=True)
            try:
                variants = [""] + ([args.variant_args] if target == variant_rate else [])
                for variant in variants:
                    label = f"{target / 1000:g}k" + (f" {variant}" if variant else "")
                    r = record_run(re.sub(r"\W+", "_", label), ex, symbols, args, workdir,
                                   variant=variant)
                    r.update(label=label, target=target, offered=offer["offered"])
                    runs.append(r)
                    print(f"{label}: persisted {r['persisted_per_s']:,.0f} msg/s",
                          file=sys.stderr, flush=True)
            finally:
                ex.stop()
    raw = json.dumps({"args": vars(args), "offers": offers, "runs": runs}, indent=1,
                     default=str)
    if args.keep:
        (Path(args.keep) / "whole_market.json").write_text(raw)
    if args.json:
        print(raw)
    else:
        print_report(offers, runs, args, sys.stdout)


if __name__ == "__main__":
    main()
