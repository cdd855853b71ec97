"""The recorder against the local exchange replaying real Binance recordings."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from binance_streamer import Recorder, RecorderConfig, UnknownSymbolError
from binance_streamer.exchange import LocalExchange
from binance_streamer.samples import bundled_session
from tests.conftest import TIMEOUT

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
    await recorder.wait_until(lambda s: s.total_messages >= published and not len(recorder._batch)
                              and recorder._writer is not None and not recorder._writer.pending,
                              TIMEOUT)
    recorder.stop()
    await asyncio.wait_for(task, TIMEOUT)


async def test_every_replayed_message_is_stored_once_with_every_field(db_path: Path) -> None:
    """A replayed real session lands in the database: each aggTrade once, fields equal to the source."""
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
        tickers = rows(db_path, "SELECT event_time, last_price FROM ticker WHERE symbol = ? "
                       "ORDER BY event_time", symbol)
        assert tickers == [(e["E"], e["c"]) for e in ex.history.events(f"{symbol.lower()}@ticker")]
    assert rows(db_path, "SELECT COUNT(*) FROM quarantine") == [(0,)]
    assert rows(db_path, "SELECT stream FROM gaps WHERE cause NOT LIKE 'stale%'") == []


async def test_unknown_symbols_are_named_before_connecting(db_path: Path) -> None:
    """Symbols exchangeInfo does not list raise UnknownSymbolError naming each, and nothing connects."""
    async with LocalExchange(synthetic=["BTCUSDT"]) as ex:
        recorder = Recorder(config(ex, db_path, symbols=["BTCUSDT", "NOPEUSDT", "FAKEBTC"]))
        with pytest.raises(UnknownSymbolError, match="NOPEUSDT, FAKEBTC"):
            await recorder.run()
        assert recorder.connections == []


async def test_synthetic_streams_of_every_kind_are_recorded(db_path: Path) -> None:
    """Every spot stream type from the synthetic market reaches its table with valid rows."""
    kinds = ["trade", "aggTrade", "kline_1s", "miniTicker", "ticker", "ticker_1h", "bookTicker",
             "avgPrice", "depth5@100ms", "depth@100ms"]
    async with LocalExchange(synthetic=["BTCUSDT", "ETHUSDT"], rate=50) as ex:
        recorder = Recorder(config(ex, db_path, symbols=["BTCUSDT", "ETHUSDT"], streams=kinds))
        task = asyncio.create_task(recorder.run())
        tables = ["trade", "agg_trade", "kline", "mini_ticker", "ticker", "window_ticker",
                  "book_ticker", "avg_price", "partial_depth", "depth_update"]
        await recorder.wait_until(lambda s: all(s.stored[t] >= 2 for t in tables), TIMEOUT)
        recorder.stop()
        await asyncio.wait_for(task, TIMEOUT)
    for table in tables:
        assert rows(db_path, f"SELECT COUNT(DISTINCT symbol) FROM {table}") == [(2,)], table
    trade_ids = [r[0] for r in rows(db_path, "SELECT trade_id FROM trade WHERE symbol='BTCUSDT' "
                                    "ORDER BY trade_id")]
    assert trade_ids == list(range(trade_ids[0], trade_ids[0] + len(trade_ids)))
