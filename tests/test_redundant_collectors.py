"""Redundant collectors: recorders of the same streams into one PostgreSQL database store every
event exactly once, without deadlocking each other (issue 13, part 2)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from binance_streamer import Recorder, RecorderConfig
from binance_streamer.exchange import LocalExchange
from tests.helpers import TIMEOUT

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "ADAUSDT", "XRPUSDT"]
STREAMS = ["aggTrade", "trade", "depth@100ms", "kline_1s"]


def _config(ex: LocalExchange, url: str) -> RecorderConfig:
    # Small batches: many transactions, each touching every table and symbol, so two
    # collectors' inserts interleave (in different orders, before the fix) all the time.
    return RecorderConfig(symbols=SYMBOLS, streams=STREAMS, database=url, ws_url=ex.ws_url,
                          rest_url=ex.rest_url, batch_rows=50, batch_age_s=0.005,
                          max_streams_per_connection=5)


async def test_three_collectors_store_every_event_once_without_deadlocks(pg_url: str) -> None:
    async with LocalExchange(synthetic=SYMBOLS, rate=400) as ex:
        recorders = [Recorder(_config(ex, pg_url)) for _ in range(3)]
        tasks = [asyncio.create_task(r.run()) for r in recorders]
        await asyncio.wait_for(asyncio.gather(*(r.ready.wait() for r in recorders)), TIMEOUT)
        for recorder in recorders:  # many transactions each, or a failure (a deadlock)
            await recorder.wait_until(
                lambda s, r=recorder: s.batches >= 60 or r.error is not None, TIMEOUT)
        for recorder in recorders:
            recorder.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)  # no recorder failed
    with psycopg.connect(pg_url) as conn:
        for table, key in (("agg_trade", "agg_id"), ("trade", "trade_id"),
                           ("depth_update", "final_update_id")):
            rows, keys = conn.execute(
                f"SELECT COUNT(*), COUNT(DISTINCT (symbol, {key})) FROM {table}").fetchone()
            assert rows == keys > 0, table  # each event once
        for table, key in (("agg_trade", "agg_id"), ("trade", "trade_id")):
            for symbol, low, high, n in conn.execute(
                    f"SELECT symbol, MIN({key}), MAX({key}), COUNT(*) FROM {table} "
                    "GROUP BY symbol"):
                assert high - low + 1 == n, (table, symbol)  # and none missing in between




@pytest.mark.parametrize("error", [psycopg.errors.DeadlockDetected,
                                   psycopg.errors.SerializationFailure])
def test_a_deadlock_or_serialization_failure_is_retried_not_fatal(
        pg_url: str, error: type[psycopg.Error]) -> None:
    """Whatever ordering does not prevent (another program's locks) is rolled back and retried
    by the writer (StorageBusy), as a locked SQLite file is, instead of ending the recording."""
    from binance_streamer.errors import StorageBusy
    from binance_streamer.storage.postgres import PostgresSink

    def fails() -> None:
        raise error("the other transaction won")

    sink = PostgresSink(pg_url)
    try:
        with pytest.raises(StorageBusy, match="the other transaction won"):
            sink._transaction(fails)
    finally:
        sink.close()
