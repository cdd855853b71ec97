"""The fault matrix: under each fault, what is stored is complete, symbol by symbol.

Two synthetic symbols are recorded on aggTrade, trade, kline_1s and depth@100ms while one
scenario hits the recorder: a stall, a half frame, cuts at random (seeded) intervals, REST
answering 503 while reconnects are refused, ``kill -9`` of a ``python -m binance_streamer
record`` process during start-up and mid-stream, and a restart across a kline boundary. Then,
per symbol:

* `check_ids`: aggTrade and trade ids are contiguous over the stored range, none twice;
* `check_klines`: one kline per interval over the stored range, all closed but the newest, the
  closed ones with the exchange's final values;
* `check_depth_chain`: the ``depth_update`` rows, ordered by ``u``, chain (each ``U`` is the
  previous ``u + 1``), or each break has a ``gaps`` row and is followed by a stored snapshot
  that a stored diff after the break bridges (web-socket-streams.md "How to manage a local
  order book correctly": the first event applied on a snapshot has
  ``U <= lastUpdateId + 1 <= u``);
* `check_gaps`: every ``gaps`` row is filled, except silences (cause ``stale...``).

The checks read only the database (plus, for kline values, the exchange's own candles), so
``bench/soak.py`` runs the same functions after a long soak.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import sqlite3
import sys
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from binance_streamer import Recorder, RecorderConfig, RecorderStats
from binance_streamer.core.backoff import ReconnectPolicy, full_jitter
from binance_streamer.core.streams import KLINE_INTERVAL_MS
from binance_streamer.exchange import LocalExchange
from binance_streamer.exchange.rest import kline_rows
from binance_streamer.io.websocket import ConnectionSettings
from tests.helpers import TIMEOUT, wait_for_rows

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
STREAMS = ["aggTrade", "trade", "kline_1s", "depth@100ms"]
INTERVAL = "1s"
ID_TABLES = {"aggTrade": ("agg_trade", "agg_id"), "trade": ("trade", "trade_id")}
SETTLE_S = 12.0  # how long a recorder may take to catch up after a fault before it is judged


# -- the checks ----------------------------------------------------------------------------------

@dataclass
class Finding:
    """What one check found for one symbol: rows looked at, and each kind of problem counted."""

    check: str
    symbol: str
    checked: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    info: Counter[str] = field(default_factory=Counter)  # figures that are not problems
    examples: list[str] = field(default_factory=list)

    def add(self, problem: str, n: int, example: str) -> None:
        """Count ``n`` more of ``problem``; keep the first few examples."""
        self.problems[problem] += n
        if len(self.examples) < 3:
            self.examples.append(example)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"{self.symbol} {self.check}: ok ({self.checked} rows)"
        info = "".join(f", {n} {p}" for p, n in sorted(self.info.items()))
        counts = ", ".join(f"{n} {p}" for p, n in sorted(self.problems.items()))
        return (f"{self.symbol} {self.check}: {counts} in {self.checked} rows{info} "
                f"(e.g. {'; '.join(self.examples)})")


def _span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}..{hi}"


def check_ids(conn: sqlite3.Connection, symbol: str, table: str, column: str) -> Finding:
    """Ids of ``symbol`` in ``table`` are contiguous over the stored range, none stored twice."""
    ids = [r[0] for r in conn.execute(
        f"SELECT {column} FROM {table} WHERE symbol = ? ORDER BY {column}", (symbol,))]
    found = Finding(f"{table}.{column}", symbol, len(ids))
    if not ids:
        found.add("no rows", 1, "nothing stored")
    for prev, cur in itertools.pairwise(ids):
        if cur == prev:
            found.add("duplicate", 1, f"{cur} twice")
        elif cur > prev + 1:
            found.add("missing", cur - prev - 1, f"{_span(prev + 1, cur - 1)} missing")
    return found


def check_klines(conn: sqlite3.Connection, symbol: str, interval: str,
                 final: Mapping[int, tuple[int, str]] | None = None) -> Finding:
    """One kline per ``interval`` over the stored range, on the grid, all closed but the newest;
    with ``final`` (open time -> trade count and close price of each finished candle), every
    closed kline stored has those values."""
    step = KLINE_INTERVAL_MS[interval]
    rows = conn.execute(
        "SELECT open_time, is_closed, trade_count, close FROM kline WHERE symbol = ? "
        "AND interval = ? ORDER BY open_time", (symbol, interval)).fetchall()
    found = Finding(f"kline_{interval}", symbol, len(rows))
    if not rows:
        found.add("no rows", 1, "nothing stored")
    for (prev, *_), (cur, *_) in itertools.pairwise(rows):
        if cur - prev > step:
            found.add("missing", (cur - prev - 1) // step,
                      f"{_span(prev + step, cur - step)} missing")
    for open_time, closed, count, close in rows:
        if open_time % step:
            found.add("off grid", 1, f"{open_time} off the {step} ms grid")
        if not closed and open_time != rows[-1][0]:
            found.add("unclosed", 1, f"{open_time} not closed")
        if closed and final is not None and final.get(open_time) != (count, close):
            found.add("wrong", 1, f"{open_time} stored n={count} c={close}, "
                                  f"final {final.get(open_time)}")
    return found


def check_depth_chain(conn: sqlite3.Connection, symbol: str) -> Finding:
    """The diff chain of ``symbol`` is continuous, or each break is recorded in ``gaps`` and a
    stored snapshot anchors the diffs after it: its ``lastUpdateId`` falls within the continuous
    run of diffs after the break, so a stored diff bridges it (``U <= lastUpdateId + 1 <= u``),
    or, when another break follows, after the run's last ``u`` and before the next run (the
    snapshot came after the run's last diff, and the diff that would bridge it was lost in the
    next break, which needs its own snapshot). A snapshot is the book after every change up to
    its ``lastUpdateId``, so one taken between two pushes lies strictly inside the next diff."""
    diffs = conn.execute("SELECT first_update_id, final_update_id FROM depth_update "
                         "WHERE symbol = ? ORDER BY final_update_id", (symbol,)).fetchall()
    snapshots = sorted(r[0] for r in conn.execute(
        "SELECT last_update_id FROM depth_snapshot WHERE symbol = ?", (symbol,)))
    found = Finding("depth chain", symbol, len(diffs))
    if not diffs:
        found.add("no rows", 1, "nothing stored")
        return found
    recorded = conn.execute("SELECT first_missing, last_missing FROM gaps WHERE stream LIKE ?",
                            (symbol.lower() + "@depth%",)).fetchall()
    breaks = [i for i in range(1, len(diffs)) if diffs[i][0] != diffs[i - 1][1] + 1]
    found.info["breaks"] = len(breaks)
    for n, start in enumerate(breaks):
        end = breaks[n + 1] if n + 1 < len(breaks) else len(diffs)
        first_u, last_u = diffs[start][0], diffs[end - 1][1]
        # With a break after the run, its diffs up to the next run's U - 1 were lost: a
        # snapshot among them would have been bridged by one of them.
        last_anchor = diffs[end][0] - 2 if end < len(diffs) else last_u
        prev_u = diffs[start - 1][1]
        if not any(lo <= prev_u + 1 and first_u - 1 <= hi for lo, hi in recorded):
            found.add("unrecorded", 1, f"no gaps row for {prev_u + 1}..{first_u - 1}")
        # A snapshot with first_u - 1 <= lastUpdateId <= last_anchor anchors this run of diffs.
        i = bisect_left(snapshots, first_u - 1)
        if i == len(snapshots) or snapshots[i] > last_anchor:
            near = snapshots[max(0, i - 1):i + 1]
            found.add("unbridged", 1, f"no snapshot in {first_u - 1}..{last_u} after the break "
                                      f"u {diffs[start - 1][1]} -> U {first_u} (nearest {near})")
    return found


def check_gaps(conn: sqlite3.Connection, symbol: str) -> Finding:
    """Every ``gaps`` row of ``symbol``'s streams is filled, except silences."""
    rows = conn.execute(
        "SELECT stream, first_missing, last_missing, cause, filled_ns FROM gaps "
        "WHERE stream LIKE ? AND cause NOT LIKE 'stale%'", (symbol.lower() + "@%",)).fetchall()
    found = Finding("gaps", symbol, len(rows))
    for stream, first, last, cause, filled in rows:
        if filled is None:
            found.add("open", 1, f"{stream} {_span(first, last)} ({cause}) not filled")
    return found


def check_all(db: Path, symbols: Iterable[str],
              finals: Mapping[str, Mapping[int, tuple[int, str]]] | None = None,
              interval: str = INTERVAL) -> list[Finding]:
    """Every check for every symbol of ``db``."""
    found = []
    with sqlite3.connect(db) as conn:
        for symbol in symbols:
            for table, column in ID_TABLES.values():
                found.append(check_ids(conn, symbol, table, column))
            found.append(check_klines(conn, symbol, interval,
                                      None if finals is None else finals.get(symbol)))
            found.append(check_depth_chain(conn, symbol))
            found.append(check_gaps(conn, symbol))
    return found


def final_klines(ex: LocalExchange, symbol: str, interval: str = INTERVAL
                 ) -> dict[int, tuple[int, str]]:
    """The exchange's finished candles of ``symbol``: open time -> trade count, close price
    (computed from every trade it published, so also for the time nobody was subscribed)."""
    state = ex.market.symbols[symbol]
    now = time.time_ns() // 1_000_000
    found: dict[int, tuple[int, str]] = {}
    start = state.agg_times[0] - KLINE_INTERVAL_MS[interval]
    while rows := [r for r in kline_rows(state, interval, start, now, 1000) if r[0] >= start]:
        found.update((r[0], (r[8], r[4])) for r in rows if r[6] < now)
        start = rows[-1][0] + 1  # klines open at or after startTime (rest-api.md)
    return found


def test_the_checks_count_each_kind_of_hole() -> None:
    """Each check counts what is wrong in hand-made rows and passes rows that are whole."""
    conn = sqlite3.connect(":memory:")
    conn.executescript("""
        CREATE TABLE agg_trade (symbol TEXT, agg_id INTEGER);
        CREATE TABLE kline (symbol TEXT, interval TEXT, open_time INTEGER, is_closed BOOLEAN,
                            trade_count INTEGER, close TEXT);
        CREATE TABLE depth_update (symbol TEXT, first_update_id INTEGER, final_update_id INTEGER);
        CREATE TABLE depth_snapshot (symbol TEXT, last_update_id INTEGER);
        CREATE TABLE gaps (stream TEXT, first_missing INTEGER, last_missing INTEGER,
                           cause TEXT, filled_ns INTEGER);""")
    conn.executemany("INSERT INTO agg_trade VALUES (?, ?)",
                     [("A", i) for i in (1, 2, 3, 6, 6, 7)] + [("B", i) for i in (4, 5)])
    conn.executemany("INSERT INTO kline VALUES ('A', '1s', ?, ?, ?, ?)", [
        (0, True, 3, "1"), (1000, False, 2, "2"), (4000, True, 9, "4"), (5000, False, 1, "5")])
    conn.executemany("INSERT INTO kline VALUES ('B', '1s', ?, ?, 1, '1')",
                     [(0, True), (1000, True), (2000, False)])
    # A: breaks after u=20 (snapshot 25 bridged by 22..30), after u=30 (snapshot 40 is the
    # last u of the run 35..40; no gaps row) and after u=40 (no snapshot in 44..60; 90 is past
    # every diff). B: one recorded break, then snapshot 12 on the run 9..20. C: the run 15..20
    # ends in a break losing 21..30; its snapshot 25 came after it, inside the lost diffs (so
    # it anchors it), and 35 anchors the run 31..40. D: the same runs, but only snapshot 30,
    # which the run 31..40 bridges: the run 15..20 has none.
    conn.executemany("INSERT INTO depth_update VALUES (?, ?, ?)", [
        ("A", 11, 20), ("A", 22, 30), ("A", 35, 40), ("A", 45, 60),
        ("B", 1, 5), ("B", 9, 12), ("B", 13, 20),
        ("C", 1, 10), ("C", 15, 20), ("C", 31, 40), ("D", 1, 10), ("D", 15, 20), ("D", 31, 40)])
    conn.executemany("INSERT INTO depth_snapshot VALUES (?, ?)",
                     [("A", 25), ("A", 40), ("A", 90), ("B", 3), ("B", 12), ("C", 25),
                      ("C", 35), ("D", 30)])
    conn.executemany("INSERT INTO gaps VALUES (?, 1, 2, ?, ?)", [
        ("a@trade", "id gap", None), ("a@trade", "stale", None), ("a@kline_1s", "id gap", 5),
        ("b@trade", "id gap", 7)])
    conn.executemany("INSERT INTO gaps VALUES (?, ?, ?, 'depth chain broken', 9)", [
        ("a@depth@100ms", 21, 21), ("a@depth@100ms", 41, 44), ("b@depth@100ms", 6, 8),
        ("c@depth@100ms", 11, 14), ("c@depth@100ms", 21, 30), ("d@depth@100ms", 11, 14),
        ("d@depth@100ms", 21, 30)])
    finals = {0: (3, "1"), 4000: (8, "4")}

    def counts(found: Finding) -> dict[str, int]:
        return dict(found.problems)

    assert counts(check_ids(conn, "A", "agg_trade", "agg_id")) == {"missing": 2, "duplicate": 1}
    assert check_ids(conn, "B", "agg_trade", "agg_id").ok
    assert counts(check_ids(conn, "C", "agg_trade", "agg_id")) == {"no rows": 1}
    assert counts(check_klines(conn, "A", "1s", finals)) == {
        "missing": 2, "unclosed": 1, "wrong": 1}
    assert check_klines(conn, "B", "1s").ok
    depth = check_depth_chain(conn, "A")
    assert counts(depth) == {"unbridged": 1, "unrecorded": 1} and depth.info["breaks"] == 3
    assert check_depth_chain(conn, "B").ok
    assert check_depth_chain(conn, "C").ok
    assert counts(check_depth_chain(conn, "D")) == {"unbridged": 1}
    assert counts(check_gaps(conn, "A")) == {"open": 1} and check_gaps(conn, "B").ok


# -- driving the recorder ------------------------------------------------------------------------

def config(ex: LocalExchange, db: Path, **kw: Any) -> RecorderConfig:
    """The recorder of every scenario: both symbols, the four streams, a silent connection
    pinged after 0.3 s and replaced 0.3 s later, reconnects within ~0.1 s."""
    fast = ConnectionSettings(
        ping_idle_s=0.3, pong_timeout_s=0.3,
        policy=lambda: ReconnectPolicy(delays=lambda: full_jitter(0.01, 0.1)))
    return RecorderConfig(**{
        "symbols": SYMBOLS, "streams": STREAMS, "database": db, "ws_url": ex.ws_url,
        "rest_url": ex.rest_url, "backfill_drain_s": 2.0, "connection": fast, **kw})


def targets(recorder: Recorder, ex: LocalExchange) -> dict[str, int]:
    """Per stream, the id (aggTrade a, trade t), final update id (depth u) or open time (kline)
    the recorder must see live to have caught up with the exchange as of now."""
    now = time.time_ns() // 1_000_000
    want = {}
    for name in recorder.config.stream_names:
        kind = name.split("@", 1)[1]
        events = ex.history.events(name)
        if kind in ("aggTrade", "trade"):
            want[name] = events[-1]["a" if kind == "aggTrade" else "t"] + 20 if events else 0
        elif kind.startswith("depth"):
            want[name] = events[-1]["u"] + 1 if events else 0
        else:  # a candle opening after now
            step = KLINE_INTERVAL_MS[kind.removeprefix("kline_")]
            want[name] = now // step * step + step
    return want


async def settle(recorder: Recorder, ex: LocalExchange) -> str | None:
    """Wait until the recorder saw every stream live past `targets`, filled every gap and
    committed everything; None, or what it had not done after `SETTLE_S`."""
    want = targets(recorder, ex)

    def seen(name: str) -> int:
        tracker = recorder.sequencer.tracker(name)
        last = getattr(tracker, "last", None)
        return last if isinstance(last, int) else -1

    def done(s: RecorderStats) -> bool:
        return (all(seen(n) >= t for n, t in want.items()) and s.gaps_filled == s.gaps
                and recorder.flushed)

    try:
        await recorder.wait_until(done, SETTLE_S)
    except TimeoutError:
        behind = [f"{n} at {seen(n)} < {t}" for n, t in want.items() if seen(n) < t]
        s = recorder.stats
        return (f"not caught up after {SETTLE_S:g}s: gaps {s.gaps_filled}/{s.gaps} filled, "
                f"flushed {recorder.flushed}, behind: {behind}")
    return None


Inject = Callable[[LocalExchange, Recorder], Awaitable[None]]


async def record(ex: LocalExchange, db: Path, inject: Inject | None = None,
                 stop_phase_ms: int | None = None) -> list[str]:
    """Record until caught up, run ``inject``, wait until caught up again, and stop (at
    ``stop_phase_ms`` into a wall-clock second, if given); returns what did not settle."""
    await ex.start()  # the market starts with the first recorder (it may run already)
    recorder = Recorder(config(ex, db))
    task = asyncio.create_task(recorder.run())
    late = []
    try:
        await asyncio.wait_for(recorder.ready.wait(), TIMEOUT)
        if (problem := await settle(recorder, ex)) is not None:
            late.append("before the fault: " + problem)
        if inject is not None:
            await inject(ex, recorder)
            if (problem := await settle(recorder, ex)) is not None:
                late.append("after the fault: " + problem)
        if stop_phase_ms is not None:
            await until_wall_ms(stop_phase_ms)
    finally:
        recorder.stop()
        await asyncio.wait_for(task, TIMEOUT)
    return late


async def record_in_child(ex: LocalExchange, db: Path) -> asyncio.subprocess.Process:
    """``python -m binance_streamer record`` of the scenario's symbols and streams into ``db``."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "binance_streamer", "record", *SYMBOLS,
        "--streams", ",".join(STREAMS), "--db", str(db), "--ws-url", ex.ws_url,
        "--rest-url", ex.rest_url, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)


async def kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL ``proc`` and reap it."""
    proc.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), TIMEOUT) == -signal.SIGKILL


async def until_wall_ms(phase_ms: int, step_ms: int = 1000) -> None:
    """Sleep until the wall clock is ``phase_ms`` into the next ``step_ms`` period (a time, not
    an event: kline boundaries are wall-clock seconds)."""
    now = time.time_ns() // 1_000_000
    due = now - now % step_ms + phase_ms
    if due <= now:
        due += step_ms
    await asyncio.sleep((due - now) / 1000)


# -- the scenarios -------------------------------------------------------------------------------

async def stall(ex: LocalExchange, db: Path) -> list[str]:
    """The socket stays open and silent for 3 s: a ping goes unanswered, the recorder
    reconnects and backfills."""
    async def inject(ex: LocalExchange, _: Recorder) -> None:
        ex.faults.stall(3.0)
    return await record(ex, db, inject)


async def half_frame(ex: LocalExchange, db: Path) -> list[str]:
    """Half of a WebSocket frame, then the TCP connection drops."""
    async def inject(ex: LocalExchange, _: Recorder) -> None:
        ex.faults.truncated()
    return await record(ex, db, inject)


async def random_cuts(ex: LocalExchange, db: Path) -> list[str]:
    """Six abrupt drops at seeded random intervals, some with reconnects refused a while."""
    rng = random.Random(8)

    async def inject(ex: LocalExchange, _: Recorder) -> None:
        for _ in range(6):
            await asyncio.sleep(rng.uniform(0.2, 1.0))  # the fault's timing, not a wait for it
            if rng.random() < 0.5:
                ex.faults.refuse_connections(rng.uniform(0.1, 0.8))
            ex.faults.drop_now()
    return await record(ex, db, inject)


async def rest_down_then_up(ex: LocalExchange, db: Path) -> list[str]:
    """REST answers 503 to the next 10 requests while reconnects are refused for 1.5 s; then
    both recover."""
    async def inject(ex: LocalExchange, _: Recorder) -> None:
        ex.faults.rest_error(503, times=10)
        ex.faults.refuse_connections(1.5)
        ex.faults.drop_now()
    return await record(ex, db, inject)


async def kill_during_startup(ex: LocalExchange, db: Path) -> list[str]:
    """The market starts once a recorder process subscribed, ``kill -9`` as soon as each
    symbol's first streamed candle is stored, still open (no closed candle stored yet), then a
    restart that cannot connect for 2 s, so that candle closes while nobody records."""
    proc = await record_in_child(ex, db)
    await asyncio.wait_for(ex.wait_subscribed(len(SYMBOLS) * len(STREAMS)), TIMEOUT)
    await ex.start()
    await wait_for_rows(db, "kline", len(SYMBOLS))
    await kill(proc)
    ex.faults.refuse_connections(2.0)
    return await record(ex, db)


async def kill_mid_stream(ex: LocalExchange, db: Path) -> list[str]:
    """``kill -9`` once a few candles and depth diffs are stored, then a restart that cannot
    connect for 1.2 s (a kline boundary passes while the recorder is down)."""
    await ex.start()
    proc = await record_in_child(ex, db)
    await wait_for_rows(db, "kline", 6)
    await wait_for_rows(db, "depth_update", 20)
    await kill(proc)
    ex.faults.refuse_connections(1.2)
    return await record(ex, db)


async def restart_across_kline_boundary(ex: LocalExchange, db: Path) -> list[str]:
    """A stop mid-candle (its kline stored unclosed) and a restart 2.6 s later: that candle
    and the next two close while nobody records (a 1s candle's closing update comes up to 1 s
    after its close time)."""
    late = await record(ex, db, stop_phase_ms=400)
    await until_wall_ms(0)
    await asyncio.sleep(2.0)  # two more candles open and close with nobody recording
    late += await record(ex, db)
    return late


SCENARIOS: dict[str, Callable[[LocalExchange, Path], Awaitable[list[str]]]] = {
    f.__name__: f for f in (stall, half_frame, random_cuts, rest_down_then_up,
                            kill_during_startup, kill_mid_stream, restart_across_kline_boundary)}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_fault_matrix(scenario: str, db_path: Path) -> None:
    """After each fault and recovery every symbol's stored data is whole: contiguous ids, one
    closed kline per second with its final values, a bridged depth chain and no open gap."""
    async with LocalExchange(synthetic=SYMBOLS, rate=100, seed=3, start="manual") as ex:
        late = await SCENARIOS[scenario](ex, db_path)
        finals = {s: final_klines(ex, s) for s in SYMBOLS}
    problems = [str(f) for f in check_all(db_path, SYMBOLS, finals) if not f.ok] + late
    assert not problems, "\n".join(problems)
