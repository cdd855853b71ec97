"""The recorder against the local exchange replaying real Binance recordings."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from binance_streamer import Recorder, RecorderConfig, UnknownSymbolError
from binance_streamer.cli import main
from binance_streamer.exchange import LocalExchange
from binance_streamer.samples import bundled_session
from tests.helpers import KEYS, KLINE_KEYS, TIMEOUT

SYMBOLS = ["BTCUSDT", "ETHUSDT", "DOTUSDT"]
STREAMS = ["aggTrade", "depth@100ms", "kline_1m", "ticker"]


def config(ex: LocalExchange, db: Path, **kw: Any) -> RecorderConfig:
    """A recorder configuration pointed at ``ex``."""
    return RecorderConfig(**{"symbols": SYMBOLS, "streams": STREAMS, "database": db,
                             "ws_url": ex.ws_url, "rest_url": ex.rest_url, **kw})


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


async def record_until_complete(ex: LocalExchange, recorder: Recorder, streams: list[str]) -> None:
    """Run ``recorder`` until the replay ended and every published event reached the database."""
    task = asyncio.create_task(recorder.run())
    await asyncio.wait_for(ex.finished(), TIMEOUT)
    published = sum(ex.history.count(s) for s in streams)
    await recorder.wait_until(lambda s: s.total_messages >= published and recorder.flushed,
                              TIMEOUT)
    recorder.stop()
    await asyncio.wait_for(task, TIMEOUT)


async def test_every_replayed_message_is_stored_once_with_every_field(db_path: Path) -> None:
    """A replayed real session is stored: each aggTrade once, every field equal to the source."""
    async with LocalExchange(replay=[bundled_session("cf_2021-04-04")], speed=None) as ex:
        recorder = Recorder(config(ex, db_path))
        names = recorder.config.stream_names
        await record_until_complete(ex, recorder, names)
    for symbol in SYMBOLS:
        sent = ex.history.events(f"{symbol.lower()}@aggTrade")
        assert sent, symbol
        stored = rows(db_path, "SELECT agg_id, price, quantity, first_trade_id, last_trade_id, "
                      "trade_time, buyer_is_maker, best_match, event_time FROM agg_trade "
                      "WHERE symbol = ? ORDER BY agg_id", symbol)
        assert stored == [(e["a"], e["p"], e["q"], e["f"], e["l"], e["T"], e["m"], e["M"], e["E"])
                          for e in sent]
        depth = rows(db_path, "SELECT first_update_id, final_update_id, bids FROM depth_update "
                     "WHERE symbol = ? ORDER BY final_update_id", symbol)
        sent_depth = ex.history.events(f"{symbol.lower()}@depth@100ms")
        assert depth == [(e["U"], e["u"], json.dumps(e["b"], separators=(",", ":")))
                         for e in sent_depth]
        columns = list(KEYS["ticker"])
        tickers = rows(db_path, f"SELECT {', '.join(columns)} FROM ticker WHERE symbol = ? "
                       "ORDER BY event_time", symbol)
        assert tickers == [tuple(e[KEYS["ticker"][c]] for c in columns)
                           for e in ex.history.events(f"{symbol.lower()}@ticker")]
        latest = {e["k"]["t"]: e for e in ex.history.events(f"{symbol.lower()}@kline_1m")}
        columns = list(KLINE_KEYS)
        klines = rows(db_path, f"SELECT {', '.join(columns)}, event_time FROM kline "
                      "WHERE symbol = ? ORDER BY open_time", symbol)
        assert klines == [(*(e["k"][KLINE_KEYS[c]] for c in columns), e["E"])
                          for _, e in sorted(latest.items())]
    assert rows(db_path, "SELECT COUNT(*) FROM quarantine") == [(0,)]
    assert rows(db_path, "SELECT stream FROM gaps WHERE cause NOT LIKE 'stale%'") == []


async def test_unknown_symbols_are_named_before_connecting(db_path: Path) -> None:
    """Symbols exchangeInfo does not list raise UnknownSymbolError naming each; nothing connects."""
    async with LocalExchange(synthetic=["BTCUSDT"]) as ex:
        recorder = Recorder(config(ex, db_path, symbols=["BTCUSDT", "NOPEUSDT", "FAKEBTC"]))
        with pytest.raises(UnknownSymbolError, match="NOPEUSDT, FAKEBTC"):
            await recorder.run()
        assert recorder.connections == []


async def test_synthetic_streams_of_every_kind_are_recorded(db_path: Path) -> None:
    """Every spot stream type from the synthetic market reaches its table with valid rows."""
    kinds = ["trade", "aggTrade", "kline_1s", "miniTicker", "ticker", "ticker_1h", "bookTicker",
             "avgPrice", "depth5@100ms", "depth@100ms", "blockTrade", "referencePrice",
             "!miniTicker@arr", "!ticker_4h@arr"]
    async with LocalExchange(synthetic=["BTCUSDT", "ETHUSDT"], rate=50) as ex:
        recorder = Recorder(config(ex, db_path, symbols=["BTCUSDT", "ETHUSDT"], streams=kinds))
        task = asyncio.create_task(recorder.run())
        tables = ["trade", "agg_trade", "kline", "mini_ticker", "ticker", "window_ticker",
                  "book_ticker", "avg_price", "partial_depth", "depth_update", "block_trade",
                  "reference_price"]
        await recorder.wait_until(lambda s: all(s.stored[t] >= 2 for t in tables), TIMEOUT)
        recorder.stop()
        await asyncio.wait_for(task, TIMEOUT)
    for table in tables:
        symbols = rows(db_path, f"SELECT COUNT(DISTINCT symbol) FROM {table}")[0][0]
        # Block trades are rare: one of the two symbols may have none yet.
        assert symbols == 2 or (table == "block_trade" and symbols == 1), table
    windows = rows(db_path, "SELECT DISTINCT window FROM window_ticker ORDER BY window")
    assert windows == [("1h",), ("4h",)]
    trade_ids = [r[0] for r in rows(db_path, "SELECT trade_id FROM trade WHERE symbol='BTCUSDT' "
                                    "ORDER BY trade_id")]
    assert trade_ids == list(range(trade_ids[0], trade_ids[0] + len(trade_ids)))


async def test_raw_archive_keeps_every_frame_verbatim(db_path: Path) -> None:
    """With raw=True each received frame is also stored byte for byte, beside its decoded row."""
    async with LocalExchange(replay=[bundled_session("cf_2021-04-04")], speed=None) as ex:
        recorder = Recorder(config(ex, db_path, symbols=["DOTUSDT"], streams=["aggTrade"],
                                   raw=True))
        await record_until_complete(ex, recorder, ["dotusdt@aggTrade"])
    frames = [json.loads(r[0]) for r in rows(db_path, "SELECT frame FROM raw_frame ORDER BY id")]
    assert [f["data"] for f in frames] == ex.history.events("dotusdt@aggTrade")
    assert {f["stream"] for f in frames} == {"dotusdt@aggTrade"}


async def test_records_into_postgresql(db_path: Path, pg_url: str) -> None:
    """A postgresql:// database receives the same rows as SQLite would, and query reads them."""
    async with LocalExchange(replay=[bundled_session("cf_2021-04-04")], speed=None) as ex:
        recorder = Recorder(config(ex, db_path, symbols=["ETHUSDT"], streams=["aggTrade"],
                                   database=pg_url))
        await record_until_complete(ex, recorder, ["ethusdt@aggTrade"])
    out = CliRunner().invoke(main, ["query", "ETHUSDT", "--stream", "aggTrade", "--format",
                                    "jsonl", "--db", pg_url])
    stored = [json.loads(line)["agg_id"] for line in out.output.splitlines()]
    assert stored == [e["a"] for e in ex.history.events("ethusdt@aggTrade")]


async def test_a_fatal_storage_error_stops_cleanly_keeping_what_was_stored(db_path: Path) -> None:
    """When the disk fills up mid-recording, run() raises StorageFatal and earlier rows stay."""
    from binance_streamer.errors import StorageFatal
    from binance_streamer.storage.sqlite import SqliteSink

    def small_disk() -> SqliteSink:
        sink = SqliteSink(db_path)
        pages = sink._conn.execute("PRAGMA page_count").fetchone()[0]
        sink._conn.execute(f"PRAGMA max_page_count={pages + 40}")
        return sink

    async with LocalExchange(synthetic=["BTCUSDT"], rate=500) as ex:
        recorder = Recorder(config(ex, db_path, symbols=["BTCUSDT"], streams=["depth@100ms",
                                                                              "aggTrade"]),
                            sink_factory=small_disk)
        with pytest.raises(StorageFatal, match="full"):
            await asyncio.wait_for(recorder.run(), TIMEOUT)
    assert recorder.stats.stored["agg_trade"] > 0
    stored = recorder.stats.stored["agg_trade"]
    assert rows(db_path, "SELECT COUNT(*) FROM agg_trade") == [(stored,)]


async def test_microsecond_time_unit_is_recorded_and_kept(db_path: Path) -> None:
    """With microseconds=True exchange times are stored in µs (WebSocket and REST alike), and a
    later millisecond recording into the same database is refused."""
    from binance_streamer import ConfigError

    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        recorder = Recorder(config(ex, db_path, symbols=["BTCUSDT"],
                                   streams=["aggTrade", "kline_1s"], microseconds=True))
        task = asyncio.create_task(recorder.run())
        await recorder.wait_until(
            lambda s: s.stored["agg_trade"] >= 20 and s.stored["kline"] >= 3, TIMEOUT)
        recorder.stop()
        await asyncio.wait_for(task, TIMEOUT)
        assert recorder.stats.gaps == 0  # the kline grid is checked in µs too
        sent = {e["a"]: e["T"] for e in ex.history.events("btcusdt@aggTrade")}
        stored = rows(db_path, "SELECT agg_id, trade_time, event_time FROM agg_trade")
        assert all(t == sent[a] * 1000 and e > 10**15 for a, t, e in stored)
        opens = [r[0] for r in rows(db_path, "SELECT open_time FROM kline")]
        assert opens and all(t % 1_000_000 == 0 for t in opens)
        with pytest.raises(ConfigError, match="microseconds"):
            await Recorder(config(ex, db_path, symbols=["BTCUSDT"])).run()


async def test_a_silence_is_stored_spanning_the_whole_silence(db_path: Path) -> None:
    """A ticker stream silent for 7 s is one 'stale' gap row spanning the silence in receive
    time, from its last message to its next, not just up to the moment the silence was noticed;
    the connection is not replaced."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=20) as ex:
        recorder = Recorder(config(ex, db_path, symbols=["BTCUSDT"], streams=["ticker"]))
        task = asyncio.create_task(recorder.run())
        await recorder.wait_until(lambda s: s.stored["ticker"] >= 2, TIMEOUT)
        ex.faults.stall(7.0)  # past the 5 s silence bound, within the 10 s liveness bound
        await recorder.wait_until(lambda s: s.stale == 1, TIMEOUT)
        noticed = rows(db_path, "SELECT first_missing, last_missing FROM gaps")
        stored = recorder.stats.stored["ticker"]
        await recorder.wait_until(lambda s: s.stored["ticker"] > stored + 2, TIMEOUT)
        recorder.stop()
        await asyncio.wait_for(task, TIMEOUT)
    [(first, last, cause)] = rows(db_path, "SELECT first_missing, last_missing, cause FROM gaps")
    assert cause == "stale" and (first, last) != noticed[0]
    assert 6_000 <= last - first <= 9_000 and last - first > noticed[0][1] - noticed[0][0]
    assert recorder.connections[0].reconnects == 0


async def test_reading_paused_by_a_locked_database_is_not_a_silence(db_path: Path) -> None:
    """While a locked database holds the writer for 7 s, reading pauses; neither a 'stale' gap
    nor a reconnect follows, and every ticker received is stored once the lock is gone."""
    import threading

    from binance_streamer.storage.base import Batch, WriteResult
    from binance_streamer.storage.sqlite import SqliteSink

    locked = threading.Event()
    release = threading.Event()

    class LockedOnce(SqliteSink):
        """The third write waits for another process's lock to go away."""

        writes = 0

        def write(self, batch: Batch) -> WriteResult:
            LockedOnce.writes += 1
            if LockedOnce.writes == 3:
                locked.set()
                release.wait(TIMEOUT)
            return super().write(batch)

    async with LocalExchange(synthetic=["BTCUSDT"], rate=20) as ex:
        recorder = Recorder(config(ex, db_path, symbols=["BTCUSDT"], streams=["ticker"],
                                   max_pending_batches=2),
                            sink_factory=lambda: LockedOnce(db_path))
        task = asyncio.create_task(recorder.run())
        await asyncio.to_thread(locked.wait, TIMEOUT)
        await asyncio.sleep(7.0)  # longer than the ticker's 5 s silence bound
        assert recorder.stats.paused >= 1
        release.set()
        stored = recorder.stats.messages["ticker"]
        await recorder.wait_until(lambda s: s.stored["ticker"] > stored, TIMEOUT)
        recorder.stop()
        stats = await asyncio.wait_for(task, TIMEOUT)
    assert stats.stale == 0 and rows(db_path, "SELECT COUNT(*) FROM gaps") == [(0,)]
    assert recorder.connections[0].reconnects == 0
    assert rows(db_path, "SELECT COUNT(*) FROM ticker") == [(stats.messages["ticker"],)]


async def test_no_silence_is_recorded_before_a_stream_was_ever_subscribed(db_path: Path
                                                                          ) -> None:
    """While the connection never opens, its streams' silence clocks do not run: the run ends
    with no 'stale' gap, and the streams are listed as never heard from."""
    from binance_streamer.core.sequencing import Sequencer
    from binance_streamer.core.streams import StreamKind

    recorder = Recorder(RecorderConfig(symbols=["BTCUSDT"], streams=["ticker"], database=db_path,
                                       ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9"))
    recorder.sequencer = Sequencer(max_silence_ms={StreamKind.TICKER: 300})
    stats = await asyncio.wait_for(recorder.run(duration=2.0), TIMEOUT)
    assert stats.stale == 0 and stats.silent_streams == ["btcusdt@ticker"]
    assert rows(db_path, "SELECT COUNT(*) FROM gaps") == [(0,)]
