"""Test helpers shared by every test module (tests never import each other or conftest).

One timeout constant every wait scales from, the real-capture fixtures, and small readers.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from binance_streamer.core.decoding import Decoded, FrameDecoder
from binance_streamer.exchange import LocalExchange
from binance_streamer.recorder import Recorder, RecorderConfig
from binance_streamer.storage.base import Batch

FIXTURES = Path(__file__).parent / "fixtures"
TIMEOUT = 30.0  # seconds; every await in the tests is bounded by a multiple of this


class Signal:
    """Something tests can await: `until` returns once a condition holds, re-checked whenever
    `changed` is called."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def changed(self) -> None:
        self._event.set()

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not done():
                self._event.clear()
                await self._event.wait()


async def run_cli(*args: str) -> tuple[int, str, str]:
    """Run ``binance-streamer ARGS`` in a child process: its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "binance_streamer", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 2)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


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


async def record_capture(session: Path, db: Path | str, streams: list[str],
                         symbols: list[str] | None = None, speed: float | None = None,
                         raw: bool = False) -> dict[str, list[Any]]:
    """Record capture ``session`` replayed by the local exchange into ``db``: ``streams`` of
    ``symbols`` (every TRADING symbol it holds when None), as fast as read or paced at
    ``speed`` times real time (paced, a recorder's first depth snapshot comes early in the
    recording); what the exchange published, by stream."""
    async with LocalExchange(replay=[session], speed=speed) as ex:
        if symbols is None:
            symbols = sorted(s for s in ex.market.symbols
                             if ex.info.by_symbol[s]["status"] == "TRADING")
        config = RecorderConfig(symbols=symbols, streams=streams, database=db,
                                ws_url=ex.ws_url, rest_url=ex.rest_url, raw=raw)
        return await record_until_replayed(ex, config)


def assert_one_clear_line(stderr: str, *words: str) -> None:
    """stderr is one line starting with 'error:' and naming each of ``words``."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    for word in words:
        assert word in lines[0], (word, stderr)


def store_agg_trades(db: Path, trades: list[tuple[int, int]]) -> None:
    """A recording holding BTCUSDT aggregate trades ``(agg_id, trade_time)`` (price 1,
    quantity 2, one trade each), stored in the order given."""
    from binance_streamer.storage.open import open_sink

    open_sink(db).close()
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO agg_trade (symbol, agg_id, price, quantity, first_trade_id, "
            "last_trade_id, trade_time, buyer_is_maker, best_match, event_time, received_ns, "
            "source) VALUES ('BTCUSDT', ?, '1.00000000', '2.00000000', ?, ?, ?, 0, 1, ?, 1, "
            "'ws')", [(a, a, a, t, t) for a, t in trades])
