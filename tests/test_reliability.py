"""Nothing lost, nothing duplicated: the recorder under the local exchange's faults.

Each test ends by comparing the database with the exchange's full history of the id-sequenced
streams: over the recorded range, every id is stored exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from binance_streamer import Recorder, RecorderConfig, RecorderStats
from binance_streamer.core.backoff import ReconnectPolicy, full_jitter
from binance_streamer.exchange import LocalExchange
from binance_streamer.io.websocket import ConnectionSettings
from tests.helpers import TIMEOUT, wait_for_rows

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
ID_STREAMS = {"aggTrade": ("agg_trade", "agg_id", "a"), "trade": ("trade", "trade_id", "t")}


def fast_settings(**kw: Any) -> ConnectionSettings:
    """Connection timing for tests: reconnect within ~0.1 s; a silent connection is pinged
    after 0.5 s."""
    return ConnectionSettings(**{
        "ping_idle_s": 0.5, "pong_timeout_s": 0.5,
        "policy": lambda: ReconnectPolicy(delays=lambda: full_jitter(0.01, 0.1)),
        **kw})


def make_recorder(ex: LocalExchange, db: Path, **kw: Any) -> Recorder:
    settings = kw.pop("connection", None) or fast_settings()
    return Recorder(RecorderConfig(**{
        "symbols": SYMBOLS, "streams": ["aggTrade", "trade"], "database": db,
        "ws_url": ex.ws_url, "rest_url": ex.rest_url, "connection": settings, **kw}))


def stored_ids(db: Path, table: str, column: str, symbol: str) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute(
            f"SELECT {column} FROM {table} WHERE symbol = ? ORDER BY {column}", (symbol,))]


def assert_complete(db: Path, ex: LocalExchange) -> int:
    """Every id the exchange published within the stored range is stored, exactly once."""
    checked = 0
    for symbol in SYMBOLS:
        for kind, (table, column, key) in ID_STREAMS.items():
            sent = [e[key] for e in ex.history.events(f"{symbol.lower()}@{kind}")]
            stored = stored_ids(db, table, column, symbol)
            assert stored, (symbol, kind)
            lo, hi = stored[0], stored[-1]
            assert stored == [i for i in sent if lo <= i <= hi], (symbol, kind)
            assert len(stored) == hi - lo + 1
            checked += len(stored)
    return checked


def live_ids(recorder: Recorder) -> dict[str, int]:
    """The last id the recorder saw live, per id-sequenced stream."""
    found = {}
    for name in recorder.config.stream_names:
        tracker = recorder.sequencer.tracker(name)
        if tracker is not None and getattr(tracker, "last", None) is not None:
            found[name] = tracker.last
    return found


async def caught_up(recorder: Recorder, ex: LocalExchange, extra: int = 20) -> None:
    """Wait until the recorder saw ``extra`` more ids live on every stream and filled every gap."""
    names = recorder.config.stream_names
    await recorder.wait_until(lambda s: all(n in live_ids(recorder) for n in names), TIMEOUT)
    targets = {n: ex.history.events(n)[-1][ID_STREAMS[n.split("@")[1]][2]] + extra
               for n in recorder.config.stream_names}
    def done(s: RecorderStats) -> bool:
        seen = live_ids(recorder)
        return (all(seen.get(n, -1) >= t for n, t in targets.items())
                and s.gaps_filled == s.gaps and recorder.flushed)
    await recorder.wait_until(done, TIMEOUT)


async def run_with(ex: LocalExchange, recorder: Recorder,
                   inject: Callable[[], Any], rounds: int = 1) -> RecorderStats:
    """Record, inject a fault ``rounds`` times after data flows, catch up, stop."""
    task = asyncio.create_task(recorder.run())
    for _ in range(rounds):
        await caught_up(recorder, ex, extra=10)
        result = inject()
        if asyncio.iscoroutine(result):
            await result
    await caught_up(recorder, ex)
    recorder.stop()
    return await asyncio.wait_for(task, TIMEOUT)


async def test_dropped_connections_are_reconnected_and_backfilled(db_path: Path) -> None:
    """Abrupt drops at several points lose nothing: gaps are found and filled over REST."""
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        recorder = make_recorder(ex, db_path)
        def inject() -> None:
            ex.faults.refuse_connections(0.3)  # the reconnect cannot beat the next events
            ex.faults.drop_now()
        stats = await run_with(ex, recorder, inject, rounds=3)
    assert recorder.connections[0].reconnects >= 3
    assert stats.gaps >= 1 and stats.gaps_filled == stats.gaps and stats.rows_backfilled > 0
    assert assert_complete(db_path, ex) > 0
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM gaps WHERE filled_ns IS NULL").fetchone() == (0,)
        sources = dict(conn.execute("SELECT source, COUNT(*) FROM agg_trade GROUP BY source"))
    assert sources["ws"] > 0 and sources["rest"] > 0


async def test_a_stalled_connection_is_replaced(db_path: Path) -> None:
    """A socket that stays open but silent is found dead by an unanswered ping and reconnected."""
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        settings = fast_settings(ping_idle_s=0.3, pong_timeout_s=0.3)
        recorder = make_recorder(ex, db_path, connection=settings)
        await run_with(ex, recorder, lambda: ex.faults.stall(3.0))
    assert recorder.connections[0].reconnects >= 1
    assert_complete(db_path, ex)


async def test_skipped_messages_are_backfilled_exactly(db_path: Path) -> None:
    """Five aggTrades withheld by the server become one gap of five ids, filled with five rows."""
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        recorder = make_recorder(ex, db_path, streams=["aggTrade"])
        stats = await run_with(ex, recorder, lambda: ex.faults.skip(5, "btcusdt@aggTrade"))
    with sqlite3.connect(db_path) as conn:
        gaps = conn.execute("SELECT stream, last_missing - first_missing + 1, rows_filled "
                            "FROM gaps").fetchall()
    assert gaps == [("btcusdt@aggTrade", 5, 5)] and stats.rows_backfilled == 5
    for symbol in SYMBOLS:
        ids = stored_ids(db_path, "agg_trade", "agg_id", symbol)
        assert ids == list(range(ids[0], ids[-1] + 1))


async def test_rollover_before_the_lifetime_ends_loses_nothing(db_path: Path) -> None:
    """With a 1 s lifetime the connection is replaced repeatedly, overlap deduplicated, no gap."""
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        recorder = make_recorder(
            ex, db_path, connection=fast_settings(lifetime_s=1.0, ping_idle_s=10.0))
        task = asyncio.create_task(recorder.run())
        await asyncio.wait_for(recorder.ready.wait(), TIMEOUT)
        await recorder.wait_until(lambda s: recorder.connections[0].rollovers >= 3, TIMEOUT)
        await caught_up(recorder, ex)
        recorder.stop()
        stats = await asyncio.wait_for(task, TIMEOUT)
    assert recorder.connections[0].reconnects == 0
    assert stats.gaps_filled == stats.gaps
    assert_complete(db_path, ex)


async def test_server_shutdown_triggers_a_seamless_switch(db_path: Path) -> None:
    """On serverShutdown a new connection takes over before the old one is closed."""
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        recorder = make_recorder(ex, db_path)
        await run_with(ex, recorder, lambda: ex.faults.server_shutdown(close_after_s=1.0))
    assert recorder.connections[0].rollovers == 1
    assert_complete(db_path, ex)


async def test_rate_limited_backfill_waits_and_completes(db_path: Path) -> None:
    """HTTP 429 with Retry-After during backfill is waited out; the gap is still filled."""
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        recorder = make_recorder(ex, db_path, streams=["aggTrade"])
        def inject() -> None:
            ex.faults.rest_error(429, times=2, retry_after=1)
            ex.faults.skip(3, "ethusdt@aggTrade")
        stats = await run_with(ex, recorder, inject)
    assert stats.gaps == 1 and stats.rows_backfilled == 3
    assert recorder.backfiller is not None and recorder.backfiller.rate_limited >= 1
    for symbol in SYMBOLS:
        ids = stored_ids(db_path, "agg_trade", "agg_id", symbol)
        assert ids == list(range(ids[0], ids[-1] + 1))


async def test_malformed_frames_are_quarantined_not_fatal(db_path: Path) -> None:
    """A cut JSON frame is stored in quarantine with its reason; recording goes on."""
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        recorder = make_recorder(ex, db_path)
        stats = await run_with(ex, recorder, lambda: ex.faults.malformed())
    assert stats.quarantined == 1
    with sqlite3.connect(db_path) as conn:
        [(reason, raw)] = conn.execute("SELECT reason, raw FROM quarantine").fetchall()
    assert reason.startswith(("malformed", "invalid JSON")) and raw.startswith('{"stream"')
    assert_complete(db_path, ex)


async def test_fifty_connections_reconnect_at_once_without_a_1008(db_path: Path) -> None:
    """50 connections dropped together all come back, and none is closed for message rate."""
    symbols = [f"S{i:02d}USDT" for i in range(25)]
    async with LocalExchange(synthetic=symbols, rate=5) as ex:
        recorder = Recorder(RecorderConfig(
            symbols=symbols, streams=["aggTrade", "trade"], database=db_path,
            ws_url=ex.ws_url, rest_url=ex.rest_url, max_streams_per_connection=1,
            connection=fast_settings(ping_idle_s=10.0)))
        task = asyncio.create_task(recorder.run())
        await asyncio.wait_for(ex.wait_subscribed(50), TIMEOUT)
        ex.faults.drop_now()
        await recorder.wait_until(
            lambda s: sum(c.reconnects for c in recorder.connections) >= 50, TIMEOUT)
        await asyncio.wait_for(ex.wait_subscribed(50), TIMEOUT)
        recorder.stop()
        await asyncio.wait_for(task, TIMEOUT)
    assert len(recorder.connections) == 50
    assert all(c.reconnects == 1 for c in recorder.connections)
    assert not [code for c in recorder.connections for code in c.close_codes if code == 1008]


async def test_a_killed_recorder_resumes_without_a_hole(db_path: Path) -> None:
    """After SIGKILL mid-stream, a restart backfills from the last stored id to the first live."""
    async with LocalExchange(synthetic=SYMBOLS, rate=200) as ex:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "binance_streamer.cli", "record", *SYMBOLS,
            "--streams", "aggTrade,trade", "--db", str(db_path), "--ws-url", ex.ws_url,
            "--rest-url", ex.rest_url, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        await wait_for_rows(db_path, "agg_trade", 200)
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == -signal.SIGKILL
        killed_at = {s: stored_ids(db_path, "agg_trade", "agg_id", s)[-1] for s in SYMBOLS}
        ex.faults.refuse_connections(0.5)  # trades go on while the recorder is down
        recorder = make_recorder(ex, db_path)
        stats = await run_with(ex, recorder, lambda: None)
    assert stats.gaps >= len(SYMBOLS) and stats.gaps_filled == stats.gaps
    assert_complete(db_path, ex)
    for symbol, last in killed_at.items():
        assert stored_ids(db_path, "agg_trade", "agg_id", symbol)[-1] > last + 50


async def test_missed_klines_are_filled_from_rest(db_path: Path) -> None:
    """Candles missed while disconnected come back over REST: open times stay on the 1 s grid."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        recorder = make_recorder(ex, db_path, symbols=["BTCUSDT"], streams=["kline_1s"])
        task = asyncio.create_task(recorder.run())
        await recorder.wait_until(lambda s: s.stored["kline"] >= 2, TIMEOUT)
        ex.faults.refuse_connections(2.5)
        ex.faults.drop_now()
        await recorder.wait_until(lambda s: s.gaps >= 1 and s.gaps_filled == s.gaps, TIMEOUT)
        recorder.stop()
        await asyncio.wait_for(task, TIMEOUT)
    with sqlite3.connect(db_path) as conn:
        opens = [r[0] for r in conn.execute("SELECT open_time FROM kline ORDER BY open_time")]
        sources = {r[0] for r in conn.execute("SELECT source FROM kline")}
        gaps = conn.execute("SELECT first_missing, last_missing, rows_filled FROM gaps "
                            "WHERE cause NOT LIKE 'stale%'").fetchall()
        rest = [r[0] for r in conn.execute(
            "SELECT open_time FROM kline WHERE source = 'rest' ORDER BY open_time")]
    assert opens == list(range(opens[0], opens[-1] + 1000, 1000))
    assert sources == {"ws", "rest"}
    with sqlite3.connect(db_path) as conn:
        candles = conn.execute("SELECT open_time, is_closed, trade_count, close, high, low "
                               "FROM kline ORDER BY open_time").fetchall()
    assert all(closed for _, closed, *_ in candles[:-2])  # only the newest may still be open
    final = {e["k"]["t"]: e["k"] for e in ex.history.events("btcusdt@kline_1s") if e["k"]["x"]}
    compared = [(t, n, c, h, lo) for t, _, n, c, h, lo in candles if t in final]
    assert compared and compared == [
        (t, final[t]["n"], final[t]["c"], final[t]["h"], final[t]["l"]) for t, *_ in compared]
    assert rest == [t for lo, hi, _ in gaps for t in range(lo, hi + 1, 1000)]
    assert sum(n for _, _, n in gaps) == len(rest)


async def test_server_errors_during_backfill_are_retried(db_path: Path) -> None:
    """HTTP 503 answers to the backfill are retried with back-off until the gap is filled."""
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        recorder = make_recorder(ex, db_path, streams=["aggTrade"])
        def inject() -> None:
            ex.faults.rest_error(503, times=2)
            ex.faults.skip(4, "btcusdt@aggTrade")
        stats = await run_with(ex, recorder, inject)
    assert stats.gaps == 1 and stats.rows_backfilled == 4
    assert recorder.backfiller is not None and recorder.backfiller.failures == 0


async def test_a_gap_left_unfilled_is_filled_by_the_next_run(db_path: Path) -> None:
    """A gap the REST server could not fill before the stop is queued again at the next start."""
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        first = make_recorder(ex, db_path, streams=["aggTrade"], backfill_drain_s=0.2)
        task = asyncio.create_task(first.run())
        await caught_up(first, ex, extra=10)
        ex.faults.rest_error(500, times=10_000)
        ex.faults.skip(6, "ethusdt@aggTrade")
        await first.wait_until(lambda s: s.gaps == 1, TIMEOUT)
        first.stop()
        await asyncio.wait_for(task, TIMEOUT)
        with sqlite3.connect(db_path) as conn:
            unfilled = conn.execute("SELECT COUNT(*) FROM gaps WHERE filled_ns IS NULL")
            assert unfilled.fetchone() == (1,)
        ex.faults.rest.clear()
        second = make_recorder(ex, db_path, streams=["aggTrade"])
        await run_with(ex, second, lambda: None)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT rows_filled FROM gaps WHERE stream = 'ethusdt@aggTrade' "
                            "AND cause NOT LIKE 'stale%' ORDER BY id LIMIT 1").fetchone() == (6,)
    for symbol in SYMBOLS:
        ids = stored_ids(db_path, "agg_trade", "agg_id", symbol)
        assert ids == list(range(ids[0], ids[-1] + 1))


async def test_a_failed_rollover_keeps_the_old_connection_and_tries_again(db_path: Path) -> None:
    """serverShutdown while new connections are refused: the old connection keeps delivering,
    the switch is retried, and it happens once connections are accepted again."""
    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        recorder = make_recorder(ex, db_path, connection=fast_settings(ping_idle_s=10.0))
        task = asyncio.create_task(recorder.run())
        await caught_up(recorder, ex, extra=10)
        ex.faults.refuse_connections(1.5)
        ex.faults.server_shutdown()
        await recorder.wait_until(lambda s: recorder.connections[0].rollovers == 1, TIMEOUT)
        await caught_up(recorder, ex)
        recorder.stop()
        stats = await asyncio.wait_for(task, TIMEOUT)
    conn = recorder.connections[0]
    assert conn.reconnects == 0 and conn.connects >= 3  # first, refused attempt(s), replacement
    assert stats.gaps == stats.gaps_filled
    assert_complete(db_path, ex)


async def test_a_fill_that_could_not_be_stored_is_not_reported_filled(db_path: Path) -> None:
    """A restart on a still-full disk fetches the gap an earlier run left, cannot store it, and
    neither counts it filled nor marks it filled: the next run still finds it open."""
    from binance_streamer.errors import StorageFatal
    from binance_streamer.storage.base import Batch
    from binance_streamer.storage.sqlite import SqliteSink

    class FullForBackfill(SqliteSink):
        """A disk that fills up just as the backfilled rows arrive."""

        def write(self, batch: Batch) -> Any:
            if any(r[-1] == "rest" for rows in batch.rows.values() for r in rows):
                raise StorageFatal(f"cannot write {self.path}: database or disk is full")
            return super().write(batch)

    async with LocalExchange(synthetic=SYMBOLS, rate=100) as ex:
        first = make_recorder(ex, db_path, streams=["aggTrade"], backfill=False)
        task = asyncio.create_task(first.run())
        await caught_up(first, ex, extra=10)
        ex.faults.skip(4, "btcusdt@aggTrade")
        await first.wait_until(lambda s: s.gaps == 1 and first.flushed, TIMEOUT)
        first.stop()
        await asyncio.wait_for(task, TIMEOUT)
        second = Recorder(make_recorder(ex, db_path, streams=["aggTrade"]).config,
                          sink_factory=lambda: FullForBackfill(db_path))
        with pytest.raises(StorageFatal, match="full"):
            await asyncio.wait_for(second.run(), TIMEOUT)
    assert second.stats.gaps == 1 and second.stats.gaps_filled == 0
    assert second.stats.rows_backfilled == 0
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM gaps WHERE filled_ns IS NULL "
                            "AND cause NOT LIKE 'stale%'").fetchone() == (1,)


async def test_a_restart_after_a_run_shorter_than_one_candle_leaves_no_hole(
        db_path: Path) -> None:
    """A first run that stored only an unfinished candle, then a pause across candle
    boundaries: the restart completes that candle and fills the ones missed, over REST."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        first = make_recorder(ex, db_path, symbols=["BTCUSDT"], streams=["kline_1s"])
        task = asyncio.create_task(first.run())
        await first.wait_until(lambda s: s.stored["kline"] >= 1, TIMEOUT)
        first.stop()
        await asyncio.wait_for(task, TIMEOUT)
        with sqlite3.connect(db_path) as conn:
            [(stored_open, closed)] = conn.execute(
                "SELECT open_time, is_closed FROM kline").fetchall()
        assert not closed  # the first run ended inside its only candle
        await asyncio.sleep(2.5)  # candles pass while nothing records: what is tested
        second = make_recorder(ex, db_path, symbols=["BTCUSDT"], streams=["kline_1s"])
        task = asyncio.create_task(second.run())
        await second.wait_until(lambda s: s.gaps >= 1 and s.gaps_filled == s.gaps
                                and s.stored["kline"] >= 2, TIMEOUT)
        second.stop()
        await asyncio.wait_for(task, TIMEOUT)
    with sqlite3.connect(db_path) as conn:
        candles = conn.execute("SELECT open_time, is_closed FROM kline ORDER BY open_time"
                               ).fetchall()
        [(first_missing, cause)] = conn.execute("SELECT first_missing, cause FROM gaps").fetchall()
    opens = [t for t, _ in candles]
    assert opens[0] == stored_open == first_missing and cause == "gap since restart"
    assert opens == list(range(opens[0], opens[-1] + 1000, 1000))
    assert all(closed for _, closed in candles[:-2])


def bridged_snapshots(db: Path, symbol: str) -> list[int]:
    """lastUpdateIds of stored snapshots that a stored diff bridges (U <= L + 1 <= u)."""
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute(
            "SELECT s.last_update_id FROM depth_snapshot s WHERE s.symbol = ? AND EXISTS "
            "(SELECT 1 FROM depth_update d WHERE d.symbol = s.symbol AND "
            "d.first_update_id <= s.last_update_id + 1 "
            "AND s.last_update_id + 1 <= d.final_update_id)", (symbol,))]


async def test_the_depth_chain_broken_by_a_restart_is_recorded_and_reanchored(
        db_path: Path) -> None:
    """After a stop, the first live diff of the next run reveals the updates missed: a gap
    since restart, filled once a fresh snapshot is bridged by a stored diff."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        first = make_recorder(ex, db_path, symbols=["BTCUSDT"], streams=["depth@100ms"])
        task = asyncio.create_task(first.run())
        await first.wait_until(lambda s: s.stored["depth_update"] >= 5
                               and s.stored["depth_snapshot"] >= 1, TIMEOUT)
        first.stop()
        await asyncio.wait_for(task, TIMEOUT)
        anchors = bridged_snapshots(db_path, "BTCUSDT")
        ex.faults.refuse_connections(0.5)  # the book moves on while nothing records
        second = make_recorder(ex, db_path, symbols=["BTCUSDT"], streams=["depth@100ms"])
        task = asyncio.create_task(second.run())
        await second.wait_until(lambda s: s.gaps >= 1 and s.gaps_filled == s.gaps, TIMEOUT)
        second.stop()
        await asyncio.wait_for(task, TIMEOUT)
    with sqlite3.connect(db_path) as conn:
        [(cause, first_missing, filled)] = conn.execute(
            "SELECT cause, first_missing, filled_ns FROM gaps").fetchall()
    assert cause == "gap since restart" and filled is not None
    assert len(bridged_snapshots(db_path, "BTCUSDT")) > len(anchors) >= 1
    assert max(bridged_snapshots(db_path, "BTCUSDT")) >= first_missing
