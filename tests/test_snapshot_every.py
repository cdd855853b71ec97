"""Periodic depth snapshots (--snapshot-every): stored like the others, each bridged by a stored
diff, never opening or closing a gap; none with an interval of 0."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from binance_streamer import ConfigError, Recorder, RecorderConfig, RecorderStats
from binance_streamer.cli import main
from binance_streamer.exchange import LocalExchange
from tests.helpers import TIMEOUT, wait_for_rows

STREAM = "btcusdt@depth@100ms"


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def bridged(db: Path) -> list[int]:
    """lastUpdateIds of stored snapshots that a stored diff bridges (U <= L + 1 <= u)."""
    return [r[0] for r in rows(
        db, "SELECT s.last_update_id FROM depth_snapshot s WHERE EXISTS (SELECT 1 FROM "
            "depth_update d WHERE d.symbol = s.symbol AND d.first_update_id <= "
            "s.last_update_id + 1 AND s.last_update_id + 1 <= d.final_update_id) "
            "ORDER BY s.last_update_id")]


def diff_span_ms(db: Path) -> int:
    """Exchange time covered by the stored diffs, first to last event (ms)."""
    [(span,)] = rows(db, "SELECT COALESCE(MAX(event_time) - MIN(event_time), 0) "
                         "FROM depth_update")
    return int(span)


async def record_until(ex: LocalExchange, db: Path, every_s: float,
                       done: Callable[[RecorderStats], bool]) -> RecorderStats:
    """Record BTCUSDT diff depth from ``ex`` with snapshots every ``every_s`` until
    ``done(stats)``."""
    recorder = Recorder(RecorderConfig(symbols=["BTCUSDT"], streams=["depth@100ms"],
                                       database=db, ws_url=ex.ws_url, rest_url=ex.rest_url,
                                       snapshot_every_s=every_s))
    task = asyncio.create_task(recorder.run())
    await recorder.wait_until(done, TIMEOUT)
    recorder.stop()
    return await asyncio.wait_for(task, TIMEOUT)


async def test_periodic_snapshots_are_stored_and_each_is_bridged_by_a_stored_diff(
        db_path: Path) -> None:
    """With a 0.5 s interval, several snapshots are stored over a few seconds of diffs; every
    one a later stored diff could bridge is bridged, and no gap is recorded."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=20) as ex:
        stats = await record_until(ex, db_path, 0.5,
                                   lambda s: s.stored["depth_snapshot"] >= 4
                                   and diff_span_ms(db_path) >= 3000)
    snapshots = [r[0] for r in rows(db_path, "SELECT last_update_id FROM depth_snapshot "
                                             "ORDER BY last_update_id")]
    [(last_diff,)] = rows(db_path, "SELECT MAX(final_update_id) FROM depth_update")
    bridgeable = [lid for lid in snapshots if lid < last_diff]  # a later diff is stored
    assert len(snapshots) >= 4 and len(bridgeable) >= 3
    assert set(bridgeable) <= set(bridged(db_path))
    assert stats.gaps == 0 and rows(db_path, "SELECT COUNT(*) FROM gaps") == [(0,)]


async def test_an_interval_of_0_stores_only_the_initial_snapshot(db_path: Path) -> None:
    """With --snapshot-every 0, three seconds of diffs come with the initial snapshot only,
    and it is bridged."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=20) as ex:
        stats = await record_until(ex, db_path, 0.0,
                                   lambda s: s.stored["depth_snapshot"] >= 1
                                   and diff_span_ms(db_path) >= 3000)
    snapshots = rows(db_path, "SELECT last_update_id FROM depth_snapshot")
    assert len(snapshots) == 1 and bridged(db_path) == [snapshots[0][0]]
    assert stats.gaps == 0


@pytest.mark.parametrize("every", [-1.0, float("nan")])
async def test_a_negative_interval_is_refused_before_recording(db_path: Path,
                                                               every: float) -> None:
    """A negative or NaN snapshot interval is a ConfigError naming the option."""
    recorder = Recorder(RecorderConfig(symbols=["BTCUSDT"], streams=["depth@100ms"],
                                       database=db_path, snapshot_every_s=every))
    with pytest.raises(ConfigError, match="--snapshot-every"):
        await recorder.run()


@pytest.mark.parametrize("value", ["5x", "1 day", "-1h", "1.5h"])
def test_the_record_command_refuses_an_interval_without_a_unit(value: str) -> None:
    """--snapshot-every takes a number and a unit (or 0): anything else exits 2 with one line
    naming the option."""
    result = CliRunner().invoke(main, ["record", "--snapshot-every", value])
    assert result.exit_code == 2 and "--snapshot-every" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_the_record_command_stores_snapshots_that_often(db_path: Path) -> None:
    """``record --snapshot-every 300ms`` stores further snapshots of a depth stream beside the
    initial one."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=20) as ex:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "binance_streamer.cli", "record", "BTCUSDT",
            "--streams", "depth@100ms", "--snapshot-every", "300ms", "--db", str(db_path),
            "--ws-url", ex.ws_url, "--rest-url", ex.rest_url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await wait_for_rows(db_path, "depth_snapshot", 3)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0, err.decode()
    assert len(rows(db_path, "SELECT last_update_id FROM depth_snapshot")) >= 3
