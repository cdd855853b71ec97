"""Lag (receive time minus event time) is measured per stream kind and per connection, and the
record command prints it; a replay of old data is not reported as hours of lag."""

from __future__ import annotations

import asyncio
from pathlib import Path

from binance_streamer import Recorder, RecorderConfig
from binance_streamer.exchange import LocalExchange
from binance_streamer.samples import bundled_sessions
from tests.helpers import TIMEOUT, run_cli


async def test_lag_per_kind_and_connection_on_a_live_market(db_path: Path) -> None:
    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        recorder = Recorder(RecorderConfig(
            symbols=["BTCUSDT"], streams=["aggTrade", "depth@100ms", "bookTicker"],
            database=db_path, ws_url=ex.ws_url, rest_url=ex.rest_url,
            max_streams_per_connection=1))
        task = asyncio.create_task(recorder.run())
        await recorder.wait_until(
            lambda s: min(s.messages["aggTrade"], s.messages["depth"]) >= 20, TIMEOUT)
        recorder.stop()
        stats = await asyncio.wait_for(task, TIMEOUT)
    kinds, connections = stats.lag.run_summary()
    assert set(kinds) == {"aggTrade", "depth"}  # book tickers carry no event time
    assert kinds["aggTrade"].count == stats.messages["aggTrade"]
    assert kinds["depth"].count == stats.messages["depth"]
    assert all(0 <= lag.p50_ms <= lag.p99_ms <= lag.max_ms < 10_000 for lag in kinds.values())
    # aggTrade on connection 0, depth on 1, bookTicker (untimed) on 2: by the default order.
    assert set(connections) == {0, 1}
    assert sum(c.count for c in connections.values()) == sum(k.count for k in kinds.values())


async def test_the_record_command_prints_the_lag(db_path: Path) -> None:
    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        code, out, err = await run_cli(
            "record", "BTCUSDT", "--streams", "aggTrade", "--duration", "2", "--db",
            str(db_path), "--ws-url", ex.ws_url, "--rest-url", ex.rest_url)
    assert code == 0, err
    assert "lag (receive time - event time): aggTrade p50 " in out


async def test_old_event_times_are_not_reported_as_lag(db_path: Path) -> None:
    """A replay of a 2021 capture: the summary says so instead of printing years of lag."""
    async with LocalExchange(replay=bundled_sessions()) as ex:
        code, out, err = await run_cli(
            "record", "BTCUSDT", "--streams", "ticker", "--duration", "3", "--db",
            str(db_path), "--ws-url", ex.ws_url, "--rest-url", ex.rest_url)
    assert code == 0, err
    assert "lag: not measured, the event times are hours old" in out, err
