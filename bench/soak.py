"""Soak benchmark: the recorder against the local exchange's synthetic market under random faults.

The local exchange (this process) publishes a synthetic market (aggTrade, trade, kline_1s,
depth@100ms and ticker for a few symbols) while a fault drawn at random (seeded; every fault
once per round of the catalogue, in a random order) hits it every few seconds: abrupt drops,
close frames, drops after n messages, short and long stalls, skipped events, malformed and
truncated frames, serverShutdown, refused reconnects, and HTTP 429 on the REST backfill that a
skip provokes. The recorder runs in a child process, so its memory is its own (sampled once a
second from ``/proc``); the size of the SQLite write-ahead log (``soak.db-wal``) is sampled every
0.1 s. At the end the database is compared with the exchange's history of the
id-sequenced streams (aggTrade ``a``, trade ``t``): over the stored id range every published id
must be stored exactly once, with its price and quantity. The klines, the depth chain and the
``gaps`` table are then judged by the fault matrix's checks (tests/test_fault_matrix.py): one
kline per second, all closed but the newest and each closed one with the exchange's final
values; every break of the diff-depth chain anchored by a stored snapshot; every gap filled.

    .venv/bin/python bench/soak.py [--minutes 10] [--seed 1] [--fault-every 4] [--rate 20]
                                   [--wal-limit-mb 32]

Exit status 1 if any message was lost, duplicated or altered, a kline is missing, unclosed or
wrong, a depth break is unbridged, or a gap is left open.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import multiprocessing as mp
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

STREAMS = ["aggTrade", "trade", "kline_1s", "depth@100ms", "ticker"]
ID_STREAMS = {"aggTrade": ("agg_trade", "agg_id", "a"), "trade": ("trade", "trade_id", "t")}
STALL_TIMEOUT_S = 2.0  # the recorder's liveness bound in this bench: ping after 1 s, pong in 1 s


# -- the recorder process ------------------------------------------------------------------------

def run_recorder(ws_url: str, rest_url: str, symbols: list[str], db: str, per_connection: int,
                 wal_limit_mb: float | None, log_path: str, stop: Connection, out: Connection
                 ) -> None:
    """Child process: record until "stop" arrives on ``stop``, then send the counters to ``out``."""
    logging.basicConfig(filename=log_path, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        out.send(asyncio.run(_record(ws_url, rest_url, symbols, db, per_connection, wal_limit_mb,
                                     stop)))
    except BaseException as exc:  # report anything, the parent prints it
        logging.exception("recorder failed")
        out.send({"error": f"{type(exc).__name__}: {exc}"})


async def _record(ws_url: str, rest_url: str, symbols: list[str], db: str, per_connection: int,
                  wal_limit_mb: float | None, stop_pipe: Connection) -> dict[str, Any]:
    from binance_streamer import Recorder, RecorderConfig
    from binance_streamer.core.backoff import ReconnectPolicy, full_jitter
    from binance_streamer.io.websocket import ConnectionSettings

    settings = ConnectionSettings(
        ping_idle_s=STALL_TIMEOUT_S / 2, pong_timeout_s=STALL_TIMEOUT_S / 2,
        policy=lambda: ReconnectPolicy(delays=lambda: full_jitter(0.05, 2.0), stable_after_s=5))
    sink_factory = None
    if wal_limit_mb is not None:
        from binance_streamer.storage.open import open_sink

        sink_factory = functools.partial(open_sink, db,
                                         wal_limit_bytes=int(wal_limit_mb * 1024 * 1024))
    recorder = Recorder(RecorderConfig(
        symbols=symbols, streams=STREAMS, database=db, ws_url=ws_url, rest_url=rest_url,
        max_streams_per_connection=per_connection, connection=settings), sink_factory)
    task = asyncio.create_task(recorder.run())
    stop = asyncio.create_task(asyncio.to_thread(stop_pipe.recv))
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    recorder.stop()
    stats = await task
    backfiller = getattr(recorder, "backfiller", None)
    return {
        "messages": dict(stats.messages), "stored": dict(stats.stored),
        "gaps": stats.gaps, "gaps_filled": stats.gaps_filled,
        "rows_backfilled": stats.rows_backfilled, "quarantined": stats.quarantined,
        "paused": stats.paused, "batches": stats.batches,
        "connects": sum(c.connects for c in recorder.connections),
        "reconnects": sum(c.reconnects for c in recorder.connections),
        "rollovers": sum(c.rollovers for c in recorder.connections),
        "backfill_failures": getattr(backfiller, "failures", None),
        "backfill_rate_limited": getattr(backfiller, "rate_limited", None),
    }


def rss_mb(pid: int) -> float | None:
    """Resident set size of process ``pid`` in MB, None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# -- the fault catalogue ------------------------------------------------------------------------

@dataclass
class Injected:
    """One fault as applied: when (s since start, and wall ms), what, to which connection."""

    at_s: float
    wall_ms: int
    name: str
    detail: str


def fault_catalogue(ex: Any, rng: random.Random, symbols: list[str]
                    ) -> dict[str, Callable[[Any], str]]:
    """Fault name -> apply(target connection or None) returning a description."""
    f = ex.faults

    def id_stream() -> str:
        return f"{rng.choice(symbols).lower()}@{rng.choice(list(ID_STREAMS))}"

    def drop_now(c: Any) -> str:
        f.drop_now(conn=c)
        return "abrupt TCP drop"

    def close_1001(c: Any) -> str:
        f.drop_now(code=1001, reason="going away", conn=c)
        return "close frame 1001"

    def drop_after(c: Any) -> str:
        n = rng.randint(1, 200)
        f.drop_after(n, conn=c)
        return f"abrupt drop after {n} messages"

    def stall_short(c: Any) -> str:
        s = rng.uniform(0.3, STALL_TIMEOUT_S * 0.7)
        f.stall(s, conn=c)
        return f"stall {s:.1f}s (below the stall bound)"

    def stall_long(c: Any) -> str:
        s = rng.uniform(STALL_TIMEOUT_S * 1.3, STALL_TIMEOUT_S * 3)
        f.stall(s, conn=c)
        return f"stall {s:.1f}s (beyond the stall bound)"

    def skip_stream(c: Any) -> str:
        n, stream = rng.randint(1, 50), id_stream()
        f.skip(n, stream=stream, conn=c)
        return f"skip {n} of {stream}"

    def skip_any(c: Any) -> str:
        n = rng.randint(1, 20)
        f.skip(n, conn=c)
        return f"skip next {n} events of any stream"

    def malformed(c: Any) -> str:
        f.malformed(conn=c)
        return "malformed frame"

    def truncated(c: Any) -> str:
        f.truncated(conn=c)
        return "truncated frame + TCP drop"

    def server_shutdown(_c: Any) -> str:
        s = rng.uniform(0.5, 3.0)
        f.server_shutdown(close_after_s=s)
        return f"serverShutdown to all, close 1001 after {s:.1f}s"

    def refuse(c: Any) -> str:
        s = rng.uniform(0.5, 3.0)
        f.refuse_connections(s)
        f.drop_now(conn=c)
        return f"drop + refuse reconnects for {s:.1f}s"

    def rest_429(c: Any) -> str:
        times, n, stream = rng.randint(1, 3), rng.randint(3, 30), id_stream()
        f.rest_error(429, times=times, retry_after=1)
        f.skip(n, stream=stream, conn=c)
        return f"REST 429 x{times} (Retry-After 1) during backfill of skip {n} of {stream}"

    return {fn.__name__: fn for fn in (drop_now, close_1001, drop_after, stall_short, stall_long,
                                       skip_stream, skip_any, malformed, truncated,
                                       server_shutdown, refuse, rest_429)}


# -- the run -------------------------------------------------------------------------------------

async def soak(args: argparse.Namespace) -> int:
    from binance_streamer.core.streams import streams_for
    from binance_streamer.exchange import LocalExchange

    tmp = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    db, log_path = tmp / "soak.db", tmp / "recorder.log"
    symbols = [s.upper() for s in args.symbols]
    n_streams = len(streams_for(symbols, STREAMS))
    rng = random.Random(args.seed)
    injected: list[Injected] = []
    rss: list[tuple[float, float]] = []
    wal = WalSizes()
    async with LocalExchange(synthetic=symbols, rate=args.rate, seed=args.seed) as ex:
        ctx = mp.get_context("spawn")
        res_recv, res_send = ctx.Pipe(duplex=False)
        stop_recv, stop_send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=run_recorder, daemon=True, args=(
            ex.ws_url, ex.rest_url, symbols, str(db), args.streams_per_connection,
            args.wal_limit_mb, str(log_path), stop_recv, res_send))
        child.start()
        start = time.monotonic()
        assert child.pid is not None
        sampler = asyncio.create_task(_sample_rss(child.pid, start, rss))
        wal_sampler = asyncio.create_task(_sample_wal(db, start, wal))
        try:
            await asyncio.wait_for(ex.wait_subscribed(n_streams), 60)
            await asyncio.sleep(args.warmup)
            catalogue = fault_catalogue(ex, rng, symbols)
            bag: list[str] = []
            deadline = start + args.minutes * 60 - args.quiet
            while (wait := rng.uniform(0.5, 1.5) * args.fault_every) < deadline - time.monotonic():
                await asyncio.sleep(wait)
                if not bag:  # every fault once per round, in a random order
                    bag = sorted(catalogue)
                    rng.shuffle(bag)
                name = bag.pop()
                conns = ex.connections
                target = rng.choice(conns) if conns and rng.random() < 0.7 else None
                detail = catalogue[name](target)
                where = f"conn #{target.id}" if target is not None else "all conns"
                injected.append(Injected(time.monotonic() - start, time.time_ns() // 1_000_000,
                                         name, f"{detail} ({where})"))
            await asyncio.sleep(max(0.0, start + args.minutes * 60 - time.monotonic()))
            stop_send.send("stop")
            got = await asyncio.to_thread(res_recv.poll, 120)
            result: dict[str, Any] = res_recv.recv() if got else {"error": "no answer in 120 s"}
        finally:
            sampler.cancel()
            wal_sampler.cancel()
            child.join(10)
            if child.is_alive():
                child.terminate()
        wal.sample(db, time.monotonic() - start)  # after the recorder closed the database
        elapsed = time.monotonic() - start
        check = compare(db, ex, symbols)
        kinds = kind_checks(db, ex, symbols)
    return report(args, elapsed, result, check, kinds, injected, rss, wal, db, log_path)


async def _sample_rss(pid: int, start: float, out: list[tuple[float, float]]) -> None:
    while (mb := rss_mb(pid)) is not None:
        out.append((time.monotonic() - start, mb))
        await asyncio.sleep(1.0)


@dataclass
class WalSizes:
    """The SQLite write-ahead log (``<db>-wal``) as sampled: its largest size, and the last."""

    max_bytes: int = 0
    max_at_s: float = 0.0
    last_bytes: int = 0
    samples: int = 0

    def sample(self, db: Path, at_s: float) -> None:
        """Record the current size of ``db``'s WAL file (0 when there is none)."""
        try:
            size = Path(f"{db}-wal").stat().st_size
        except FileNotFoundError:
            size = 0
        self.samples += 1
        self.last_bytes = size
        if size > self.max_bytes:
            self.max_bytes, self.max_at_s = size, at_s


async def _sample_wal(db: Path, start: float, out: WalSizes) -> None:
    while True:
        out.sample(db, time.monotonic() - start)
        await asyncio.sleep(0.1)


@dataclass
class StreamCheck:
    """The database against the exchange's history for one id-sequenced stream."""

    stream: str
    published: int  # ids the exchange published in the stored range
    stored: int
    lost: list[int]
    duplicated: int
    unknown: int  # stored ids the exchange never published
    altered: int  # stored rows whose price or quantity differ from what was published
    first_published: int
    first_stored: int
    last_stored: int
    last_published: int
    lost_times: list[int]  # trade times (ms) of the lost ids


def compare(db: Path, ex: Any, symbols: list[str]) -> list[StreamCheck]:
    """Every id published within the stored range is stored exactly once, with its values."""
    checks = []
    with sqlite3.connect(db) as conn:
        for symbol in symbols:
            for kind, (table, column, key) in ID_STREAMS.items():
                stream = f"{symbol.lower()}@{kind}"
                sent = {e[key]: e for e in ex.history.events(stream)}
                rows = conn.execute(
                    f"SELECT {column}, price, quantity FROM {table} WHERE symbol = ? "
                    f"ORDER BY {column}", (symbol,)).fetchall()
                ids = [r[0] for r in rows]
                if not ids:
                    checks.append(StreamCheck(stream, 0, 0, [], 0, 0, 0, min(sent, default=0),
                                              0, 0, max(sent, default=0), []))
                    continue
                lo, hi = ids[0], ids[-1]
                expected = [i for i in sent if lo <= i <= hi]
                have = set(ids)
                lost = sorted(set(expected) - have)
                altered = sum(1 for i, p, q in rows
                              if i in sent and (sent[i]["p"], sent[i]["q"]) != (p, q))
                checks.append(StreamCheck(
                    stream, len(expected), len(ids), lost, len(ids) - len(have),
                    len(have - set(sent)), altered, min(sent), lo, hi, max(sent),
                    [sent[i]["T"] for i in lost]))
    return checks


def kind_checks(db: Path, ex: Any, symbols: list[str]) -> list[Any]:
    """The fault matrix's checks of klines, depth chain and gaps, per symbol (`Finding` each)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/
    from tests.test_fault_matrix import (
        check_depth_chain,
        check_gaps,
        check_klines,
        final_klines,
    )

    found = []
    with sqlite3.connect(db) as conn:
        for symbol in symbols:
            found.append(check_klines(conn, symbol, "1s", final_klines(ex, symbol, "1s")))
            found.append(check_depth_chain(conn, symbol))
            found.append(check_gaps(conn, symbol))
    return found


def kind_lines(kinds: list[Any]) -> tuple[list[str], int]:
    """One line per kind (klines, depth, gaps) summed over the symbols, and the problem count."""
    by_check: dict[str, list[Any]] = {}
    for f in kinds:
        by_check.setdefault(f.check, []).append(f)
    labels = {"kline_1s": ("klines", ("missing", "unclosed", "wrong", "off grid")),
              "depth chain": ("depth diffs", ("unbridged", "unrecorded")),
              "gaps": ("gap rows", ("open",))}
    lines, bad = [], 0
    for check, (label, problems) in labels.items():
        fs = by_check.get(check, [])
        total = sum(f.checked for f in fs)
        counts = {p: sum(f.problems[p] for f in fs) for p in problems}
        empty = sum(f.problems["no rows"] for f in fs)
        extra = "".join(f", {p} {sum(f.info[p] for f in fs)}" for p in ("breaks",)
                        if check == "depth chain")
        bad += sum(counts.values()) + empty
        lines.append(f"{check:<12} {label} {total:,}{extra}: "
                     + ", ".join(f"{p} {n}" for p, n in counts.items())
                     + (f", symbols with no rows {empty}" if empty else ""))
        lines += [f"    {f}" for f in fs if not f.ok]
    return lines, bad


def report(args: argparse.Namespace, elapsed: float, result: dict[str, Any],
           checks: list[StreamCheck], kinds: list[Any], injected: list[Injected],
           rss: list[tuple[float, float]], wal: WalSizes, db: Path, log_path: Path) -> int:
    print(f"soak: {elapsed / 60:.1f} min, symbols {' '.join(args.symbols)}, streams "
          f"{','.join(STREAMS)}, seed {args.seed}, a fault every ~{args.fault_every:g}s "
          f"({len(injected)} injected)")
    counts: dict[str, int] = {}
    for f in injected:
        counts[f.name] = counts.get(f.name, 0) + 1
    print("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if "error" in result:
        print(f"RECORDER FAILED: {result['error']} (log: {log_path})")
    print()
    print(f"{'stream':<16} {'published':>9} {'stored':>8} {'lost':>5} {'dup':>4} {'unknown':>7} "
          f"{'altered':>7}  stored id range (published range)")
    for c in checks:
        print(f"{c.stream:<16} {c.published:>9,} {c.stored:>8,} {len(c.lost):>5} "
              f"{c.duplicated:>4} {c.unknown:>7} {c.altered:>7}  {c.first_stored}..{c.last_stored}"
              f" ({c.first_published}..{c.last_published})")
    lost = sum(len(c.lost) for c in checks)
    dup = sum(c.duplicated for c in checks)
    bad = sum(c.unknown + c.altered for c in checks)
    lines, kind_bad = kind_lines(kinds)
    for line in lines:
        print(line)
    verdict = ("OK" if lost == dup == bad == kind_bad == 0 and all(c.stored for c in checks)
               else "FAILED")
    print(f"messages lost: {lost}   duplicated: {dup}   unknown/altered: {bad}   "
          f"kline/depth/gap problems: {kind_bad}   -> {verdict}")
    print()
    if "error" not in result:
        msgs = sum(result["messages"].values())
        print(f"messages received {msgs:,}; rows stored "
              + ", ".join(f"{k} {v:,}" for k, v in sorted(result["stored"].items())))
        print(f"connections: {result['connects']} connects, {result['reconnects']} reconnects, "
              f"{result['rollovers']} rollovers (serverShutdown)")
        print(f"gaps: {result['gaps']} detected, {result['gaps_filled']} filled, "
              f"{result['rows_backfilled']:,} rows backfilled over REST; backfill rate-limited "
              f"{result['backfill_rate_limited']}x, failed {result['backfill_failures']}x; "
              f"quarantined frames {result['quarantined']}")
    for line in gap_table(db):
        print(line)
    print(memory_line(rss))
    print(wal_line(wal, db, args.wal_limit_mb))
    if lost:
        print()
        print("LOST MESSAGES, with the faults injected in the 20 s before each:")
        for c in checks:
            for i, t in list(zip(c.lost, c.lost_times, strict=True))[:20]:
                near = [f for f in injected if t - 20_000 <= f.wall_ms <= t + 1_000]
                print(f"  {c.stream} id {i} (T={t}): "
                      + "; ".join(f"+{f.at_s:.1f}s {f.name}: {f.detail}" for f in near))
    print(f"\ndatabase {db}; recorder log {log_path}")
    if args.verbose:
        for f in injected:
            print(f"  +{f.at_s:6.1f}s {f.name:<15} {f.detail}")
    return 0 if verdict == "OK" else 1


def gap_table(db: Path) -> list[str]:
    """The ``gaps`` table summarised by stream kind and cause."""
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT substr(stream, instr(stream, '@') + 1) AS kind, cause, count(*), "
                "count(filled_ns), coalesce(sum(rows_filled), 0) FROM gaps "
                "GROUP BY kind, cause ORDER BY kind, cause").fetchall()
    except sqlite3.Error as exc:
        return [f"gaps table unreadable: {exc}"]
    return [f"  gaps {k:<12} {cause:<22} detected {n:>4}  filled {f:>4}  rows {r:,}"
            for k, cause, n, f, r in rows]


def memory_line(rss: list[tuple[float, float]]) -> str:
    """Recorder RSS at start (after warm-up), middle and end of the run, and its peak."""
    if not rss:
        return "recorder RSS: no samples"
    live = rss[min(len(rss) - 1, 5):]
    start, mid, end = live[0], live[len(live) // 2], live[-1]
    peak = max(rss, key=lambda s: s[1])
    return (f"recorder RSS: start {start[1]:.0f} MB (t={start[0]:.0f}s), middle {mid[1]:.0f} MB "
            f"(t={mid[0]:.0f}s), end {end[1]:.0f} MB (t={end[0]:.0f}s), peak {peak[1]:.0f} MB "
            f"(t={peak[0]:.0f}s), {len(rss)} samples")


def wal_line(wal: WalSizes, db: Path, limit_mb: float | None) -> str:
    """The largest WAL seen (sampled every 0.1 s), the WAL left after close, the database size."""
    mb = 1024 * 1024
    size = db.stat().st_size / mb if db.exists() else 0.0
    limit = f"limit {limit_mb:g} MB" if limit_mb is not None else "default limit"
    return (f"SQLite WAL ({limit}): max {wal.max_bytes / mb:.1f} MB (t={wal.max_at_s:.0f}s), "
            f"{wal.last_bytes / mb:.1f} MB after close; database {size:.1f} MB; "
            f"{wal.samples} samples")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-every", type=float, default=4.0,
                        help="mean seconds between faults")
    parser.add_argument("--symbols", nargs="+", default=["BTCUSDT", "ETHUSDT", "BNBUSDT"])
    parser.add_argument("--rate", type=float, default=20.0, help="synthetic trade steps/s/symbol")
    parser.add_argument("--streams-per-connection", type=int, default=8,
                        help="8 puts the 15 default streams on 2 connections")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the first fault")
    parser.add_argument("--quiet", type=float, default=15.0,
                        help="fault-free seconds at the end, for reconnects and backfill")
    parser.add_argument("--wal-limit-mb", type=float,
                        help="bound of the SQLite write-ahead log (default: the recorder's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every fault injected")
    args = parser.parse_args()
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
