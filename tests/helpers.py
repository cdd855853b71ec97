"""Test helpers shared by every test module (tests never import each other or conftest).

One timeout constant every wait scales from, the real-capture fixtures, and small readers.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from binance_streamer.core.decoding import Decoded, FrameDecoder
from binance_streamer.exchange import LocalExchange
from binance_streamer.recorder import Recorder, RecorderConfig
from binance_streamer.storage.base import Batch

FIXTURES = Path(__file__).parent / "fixtures"
TIMEOUT = 30.0  # seconds; every await in the tests is bounded by a multiple of this


def frames(name: str) -> list[bytes]:
    """The raw frames of fixture file ``name``, one per line, exactly as Binance sent them."""
    return [line.rstrip(b"\n") for line in (FIXTURES / name).read_bytes().splitlines() if line]


def payloads(name: str) -> list[dict[str, Any]]:
    """The ``data`` objects of the combined-stream frames in fixture ``name``."""
    return [json.loads(f)["data"] for f in frames(name)]


def batch_of(name: str, received_ns: int = 1) -> Batch:
    """A batch holding the decoded rows of fixture ``name``."""
    batch = Batch()
    decoder = FrameDecoder()
    for raw in frames(name):
        out = decoder.decode(raw)
        assert isinstance(out, Decoded)
        batch.add(out.route.table.name, out.route.rows(out.event, received_ns, "ws"))
    return batch


async def wait_for_rows(db: Path, table: str, n: int) -> None:
    """Poll another process's database until ``table`` holds ``n`` rows (no event crosses
    the process boundary, so this one wait polls)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            if db.exists():  # noqa: ASYNC240 - a cheap stat() of another process's file
                try:
                    with sqlite3.connect(db) as conn:
                        if conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] >= n:
                            return
                except sqlite3.OperationalError:
                    pass  # schema not created yet
            await asyncio.sleep(0.05)


# Column -> Binance key, per table, for comparing rows with the source payloads.
KEYS = {
    "agg_trade": {"symbol": "s", "agg_id": "a", "price": "p", "quantity": "q",
                  "first_trade_id": "f", "last_trade_id": "l", "trade_time": "T",
                  "buyer_is_maker": "m", "best_match": "M", "event_time": "E"},
    "trade": {"symbol": "s", "trade_id": "t", "price": "p", "quantity": "q", "trade_time": "T",
              "buyer_is_maker": "m", "best_match": "M", "event_time": "E"},
    "ticker": {"symbol": "s", "event_time": "E", "price_change": "p",
               "price_change_percent": "P", "weighted_avg_price": "w",
               "first_trade_before_window_price": "x", "last_price": "c", "last_quantity": "Q",
               "best_bid_price": "b", "best_bid_quantity": "B", "best_ask_price": "a",
               "best_ask_quantity": "A", "open": "o", "high": "h", "low": "l",
               "base_volume": "v", "quote_volume": "q", "open_time": "O", "close_time": "C",
               "first_trade_id": "F", "last_trade_id": "L", "trade_count": "n"},
    "mini_ticker": {"symbol": "s", "event_time": "E", "close": "c", "open": "o", "high": "h",
                    "low": "l", "base_volume": "v", "quote_volume": "q"},
    "book_ticker": {"symbol": "s", "update_id": "u", "best_bid_price": "b",
                    "best_bid_quantity": "B", "best_ask_price": "a", "best_ask_quantity": "A"},
    "depth_update": {"symbol": "s", "first_update_id": "U", "final_update_id": "u",
                     "event_time": "E", "bids": "b", "asks": "a"},
}
KLINE_KEYS = {"open_time": "t", "close_time": "T", "interval": "i", "first_trade_id": "f",
              "last_trade_id": "L", "open": "o", "close": "c", "high": "h", "low": "l",
              "base_volume": "v", "trade_count": "n", "is_closed": "x", "quote_volume": "q",
              "taker_buy_base_volume": "V", "taker_buy_quote_volume": "Q"}


async def record_until_replayed(ex: LocalExchange, config: RecorderConfig
                                ) -> dict[str, list[Any]]:
    """Run a `Recorder` with ``config`` until ``ex``'s replay has ended and every event it
    published on the recorded streams is stored; what it published, by stream."""
    recorder = Recorder(config)
    task = asyncio.create_task(recorder.run())
    await asyncio.wait_for(ex.finished(), TIMEOUT)
    published = sum(ex.history.count(s) for s in config.stream_names)
    await recorder.wait_until(lambda s: s.total_messages >= published and recorder.flushed,
                              TIMEOUT)
    recorder.stop()
    await asyncio.wait_for(task, TIMEOUT)
    return {s: ex.history.events(s) for s in config.stream_names}
