"""Several recording processes, one database: `RecorderFleet` against the local exchange.

Every test ends by comparing the database with the exchange's history of the id-sequenced streams:
over the stored range, every id is stored exactly once, whichever process stored it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from binance_streamer.core.backoff import ReconnectPolicy, full_jitter
from binance_streamer.core.sharding import Shard, split
from binance_streamer.errors import ConfigError, DatabaseInUse, UnknownSymbolError
from binance_streamer.exchange import LocalExchange
from binance_streamer.io.websocket import ConnectionSettings
from binance_streamer.recorder import Recorder, RecorderConfig, RecorderStats
from binance_streamer.storage.open import open_sink
from binance_streamer.supervisor import RecorderFleet, auto_processes, resolve_processes
from tests.helpers import TIMEOUT, run_cli

# Split 3/3 between two shards: btcusdt@aggTrade, btcusdt@trade, solusdt@trade in shard 1.
SYMBOLS = ["BTCUSDT", "SOLUSDT", "ADAUSDT"]
STREAMS = ["aggTrade", "trade"]
ID_STREAMS = {"aggTrade": ("agg_trade", "agg_id", "a"), "trade": ("trade", "trade_id", "t")}


def quick_reconnects() -> ReconnectPolicy:
    """Module level (a child process unpickles it): reconnect within ~0.1 s."""
    return ReconnectPolicy(delays=lambda: full_jitter(0.01, 0.1))


def fleet_config(ex: LocalExchange, database: Path | str, **kw: Any) -> RecorderConfig:
    settings = ConnectionSettings(ping_idle_s=0.5, pong_timeout_s=0.5, policy=quick_reconnects)
    return RecorderConfig(**{"symbols": SYMBOLS, "streams": STREAMS, "database": database,
                             "ws_url": ex.ws_url, "rest_url": ex.rest_url,
                             "connection": settings, **kw})


def assert_complete(rows: dict[tuple[str, str], list[int]], ex: LocalExchange) -> int:
    """Every id the exchange published within each stream's stored range is stored once."""
    checked = 0
    for symbol in SYMBOLS:
        for kind, (table, _, key) in ID_STREAMS.items():
            sent = [e[key] for e in ex.history.events(f"{symbol.lower()}@{kind}")]
            stored = rows[(table, symbol)]
            assert stored, (symbol, kind)
            assert stored == [i for i in sent if stored[0] <= i <= stored[-1]], (symbol, kind)
            assert len(stored) == stored[-1] - stored[0] + 1
            checked += len(stored)
    return checked


def sqlite_ids(db: Path) -> dict[tuple[str, str], list[int]]:
    with sqlite3.connect(db) as conn:
        return {(table, symbol): [r[0] for r in conn.execute(
                    f"SELECT {column} FROM {table} WHERE symbol = ? ORDER BY {column}",
                    (symbol,))]
                for table, column, _ in ID_STREAMS.values() for symbol in SYMBOLS}


def stored(kind: str, stats: RecorderStats) -> int:
    return stats.stored[ID_STREAMS[kind][0]]


async def record_a_while(fleet: RecorderFleet, rows: int = 200) -> RecorderStats:
    """Run ``fleet`` until ``rows`` rows are stored and every gap is filled, then stop it."""
    task = asyncio.create_task(fleet.run())
    await fleet.wait_until(lambda s: s.total_stored >= rows and s.gaps_filled == s.gaps,
                           TIMEOUT)
    fleet.stop()
    return await asyncio.wait_for(task, TIMEOUT)


def test_the_shards_split_the_test_streams() -> None:
    """The fixture above: both shards hold streams (else a test would not test sharding)."""
    config = RecorderConfig(symbols=SYMBOLS, streams=STREAMS)
    assert [len(s) for s in split(config.stream_names, 2)] == [3, 3]


async def test_two_processes_record_disjoint_shards_exactly_once(db_path: Path) -> None:
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        fleet = RecorderFleet(fleet_config(ex, db_path), processes=2)
        stats = await record_a_while(fleet, rows=600)
        assert len(fleet.pids) == 1  # every child is gone
        assert {c.shard for c in fleet.connections} == {Shard(1, 2), Shard(2, 2)}
        assert_complete(sqlite_ids(db_path), ex)
    assert stats.total_stored == sum(len(v) for v in sqlite_ids(db_path).values())
    assert stats.gaps == 0 and stats.quarantined == 0 and stats.batches >= 2
    kinds, connections = stats.lag.run_summary()  # every child's lags, each connection apart
    assert {kind: lag.count for kind, lag in kinds.items()} == dict(stats.messages)
    assert sorted(connections) == [c.index for c in fleet.connections] == [0, 1]
    assert set(fleet.peak_rss_kb) == {"supervisor", "shard 1/2", "shard 2/2"}
    assert all(kb > 0 for kb in fleet.peak_rss_kb.values())
    assert not list(db_path.parent.glob("*.lock"))  # every lock released


async def test_a_killed_child_is_restarted_and_its_hole_filled(db_path: Path) -> None:
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        fleet = RecorderFleet(fleet_config(ex, db_path), processes=2)
        task = asyncio.create_task(fleet.run())
        await fleet.wait_until(lambda s: s.total_stored >= 200, TIMEOUT)
        victim = fleet.pids[1]
        os.kill(victim, signal.SIGKILL)
        await fleet.wait_until(lambda s: fleet.restarts == 1 and victim not in fleet.pids
                               and len(fleet.pids) == 3, TIMEOUT)
        before = fleet.stats.total_stored
        await fleet.wait_until(lambda s: s.gaps >= 1 and s.gaps_filled == s.gaps
                               and s.total_stored >= before + 200, TIMEOUT)
        fleet.stop()
        stats = await asyncio.wait_for(task, TIMEOUT)
        assert_complete(sqlite_ids(db_path), ex)
    assert stats.rows_backfilled > 0
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM gaps WHERE filled_ns IS NULL").fetchone() == (0,)


async def exited(pidfd: int) -> None:
    """Wait until the process behind ``pidfd`` has ended (the descriptor turns readable)."""
    loop = asyncio.get_running_loop()
    ended = loop.create_future()
    loop.add_reader(pidfd, lambda: None if ended.done() else ended.set_result(None))
    try:
        await ended
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


PARENT = """
import asyncio, sys
from pathlib import Path
from tests.test_supervisor import RecorderFleet, fleet_config
class Urls:
    ws_url, rest_url = sys.argv[1], sys.argv[2]
async def main():
    fleet = RecorderFleet(fleet_config(Urls, Path(sys.argv[3])), processes=2)
    task = asyncio.create_task(fleet.run())
    await fleet.wait_until(lambda s: s.total_stored >= 200, 30)
    print(*fleet.pids[1:], flush=True)
    await task
asyncio.run(main())
"""


async def test_children_of_a_killed_parent_flush_and_exit(db_path: Path) -> None:
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        parent = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PARENT, ex.ws_url, ex.rest_url, str(db_path),
            stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parent.parent)
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), TIMEOUT)
        children = [os.pidfd_open(int(pid)) for pid in line.split()]
        assert len(children) == 2
        parent.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(parent.wait(), TIMEOUT) == -signal.SIGKILL
        for pidfd in children:
            await asyncio.wait_for(exited(pidfd), TIMEOUT)
        assert_complete(sqlite_ids(db_path), ex)
    open_sink(db_path).close()  # no shard lock is left: every child released its own
    wal = Path(f"{db_path}-wal")
    assert not wal.exists() or not wal.stat().st_size  # noqa: ASYNC240 - folded in


async def test_a_stop_under_load_writes_everything_received(db_path: Path) -> None:
    async with LocalExchange(synthetic=SYMBOLS, rate=2000) as ex:
        fleet = RecorderFleet(fleet_config(ex, db_path, backfill=False), processes=2)
        task = asyncio.create_task(fleet.run())
        await fleet.wait_until(lambda s: s.total_messages >= 3000, TIMEOUT)
        fleet.stop()  # messages keep arriving until each child stops reading
        stats = await asyncio.wait_for(task, TIMEOUT)
    rows = sum(len(v) for v in sqlite_ids(db_path).values())
    assert stats.gaps == 0
    assert rows == stats.total_messages == stats.total_stored


async def test_back_pressure_still_pauses_each_process(db_path: Path) -> None:
    """A connection holding the write lock stalls every writer: the children pause reading
    (bounded memory), then store everything once the lock is released."""
    async with LocalExchange(synthetic=SYMBOLS, rate=1000) as ex:
        config = fleet_config(ex, db_path, backfill=False, batch_rows=50, batch_age_s=0.01,
                              max_pending_batches=1)
        fleet = RecorderFleet(config, processes=2)
        task = asyncio.create_task(fleet.run())
        await fleet.wait_until(lambda s: s.total_stored >= 100, TIMEOUT)
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            await fleet.wait_until(lambda s: s.paused >= 2, TIMEOUT)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        fleet.stop()
        stats = await asyncio.wait_for(task, TIMEOUT)
    assert stats.paused >= 2
    assert sum(len(v) for v in sqlite_ids(db_path).values()) == stats.total_messages


async def test_two_processes_into_postgresql(pg_url: str) -> None:
    import psycopg

    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        fleet = RecorderFleet(fleet_config(ex, pg_url), processes=2)
        stats = await record_a_while(fleet, rows=400)
        with psycopg.connect(pg_url) as conn:
            rows = {(table, symbol): [r[0] for r in conn.execute(
                        f"SELECT {column} FROM {table} WHERE symbol = %s ORDER BY {column}",
                        (symbol,))]
                    for table, column, _ in ID_STREAMS.values() for symbol in SYMBOLS}
        assert_complete(rows, ex)
    assert stats.total_stored == sum(len(v) for v in rows.values())


async def test_the_cli_status_line_reads_a_fleet(db_path: Path) -> None:
    from binance_streamer.cli import _StatusLine

    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        fleet = RecorderFleet(fleet_config(ex, db_path), processes=2)
        task = asyncio.create_task(fleet.run())
        await fleet.wait_until(lambda s: s.total_stored >= 100 and fleet.ready.is_set()
                               and all(c.is_open for c in fleet.connections), TIMEOUT)
        line = _StatusLine(cast(Any, fleet))()
        fleet.stop()
        await asyncio.wait_for(task, TIMEOUT)
    assert line.startswith("connections 2/2 | aggTrade ") and " trade " in line, line
    assert " | lag p99 " in line, line
    assert " | REST " in line and " snapshots, " in line, line  # the shards' budgets as one


async def test_the_duration_ends_the_fleet_flushed(db_path: Path) -> None:
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        fleet = RecorderFleet(fleet_config(ex, db_path), processes=2)
        stats = await asyncio.wait_for(fleet.run(duration=3.0), TIMEOUT)
    assert len(fleet.pids) == 1
    assert stats.total_stored == sum(len(v) for v in sqlite_ids(db_path).values())


async def test_a_child_failure_stops_the_fleet_with_its_error(db_path: Path) -> None:
    async with LocalExchange(synthetic=SYMBOLS, rate=10) as ex:
        config = fleet_config(ex, db_path, symbols=[*SYMBOLS, "NOPEUSDT"])
        fleet = RecorderFleet(config, processes=2)
        with pytest.raises(UnknownSymbolError, match="NOPEUSDT") as caught:
            await asyncio.wait_for(fleet.run(), TIMEOUT)
    assert caught.value.symbols == ["NOPEUSDT"]
    assert len(fleet.pids) == 1 and fleet.restarts == 0


async def test_a_fleet_beside_a_whole_recorder_is_refused_before_any_child(
        db_path: Path) -> None:
    whole = open_sink(db_path)
    try:
        fleet = RecorderFleet(RecorderConfig(symbols=SYMBOLS, streams=STREAMS,
                                             database=db_path), processes=2)
        with pytest.raises(DatabaseInUse, match="every stream"):
            await asyncio.wait_for(fleet.run(), TIMEOUT)
    finally:
        whole.close()
    assert fleet.pids == [os.getpid()] and fleet.restarts == 0


async def test_one_process_is_the_plain_recorder(db_path: Path) -> None:
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        fleet = RecorderFleet(fleet_config(ex, db_path), processes=1)
        assert isinstance(fleet.recorder, Recorder)
        stats = await record_a_while(fleet)
        assert stats is fleet.recorder.stats and fleet.ready.is_set()
        assert fleet.pids == [os.getpid()]
        assert_complete(sqlite_ids(db_path), ex)


def test_auto_is_one_process_for_a_few_streams() -> None:
    few = RecorderConfig(symbols=SYMBOLS, streams=STREAMS)
    many = RecorderConfig(symbols=[f"S{i}USDT" for i in range(100)], streams=STREAMS)
    assert auto_processes(few, cpu_count=8) == 1
    assert auto_processes(many, cpu_count=8) == 4  # capped
    assert auto_processes(many, cpu_count=2) == 2  # one per core
    assert auto_processes(many, cpu_count=1) == 1
    assert resolve_processes(few, 3) == 3
    with pytest.raises(ConfigError, match="at least 1"):
        resolve_processes(few, 0)


async def test_the_record_command_runs_a_fleet(db_path: Path) -> None:
    """record --processes 2: both shards' streams stored exactly once, one summary."""
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        code, out, err = await run_cli(
            "record", *SYMBOLS, "--streams", ",".join(STREAMS), "--processes", "2",
            "--duration", "4", "--db", str(db_path), "--ws-url", ex.ws_url,
            "--rest-url", ex.rest_url)
        assert code == 0, err
        assert_complete(sqlite_ids(db_path), ex)
    assert out.count("Recorded into") == 1 and "agg_trade" in out and "lag (receive" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--processes", "0"], "give a number of processes (1 or more) or auto"),
    (["--processes", "many"], "give a number of processes (1 or more) or auto"),
    (["--shard", "1/2", "--processes", "2"], "--shard records one shard in this process"),
])
async def test_the_process_count_is_checked(args: list[str], message: str) -> None:
    code, _, err = await run_cli("record", *args, "--ws-url", "ws://127.0.0.1:9",
                              "--rest-url", "http://127.0.0.1:9")
    assert code == 2 and message in err, err
