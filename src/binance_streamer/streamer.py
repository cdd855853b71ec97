"""`BinanceStreamer`: the tutorial's class, kept call-compatible, on top of the `Recorder`.

``BinanceStreamer(symbols).start_stream()`` records ``<symbol>@ticker`` into ``binance_data.db``
as the tutorial does, without per-row commits, uuid keys or lost data on disconnect;
``get_market_data(symbol=None)`` returns the tutorial's ``(id, symbol, price, timestamp)`` rows and
may be called from any thread while streaming. The WebSocket URL is the tutorial's ``ws_url``
attribute (or keyword); REST, when it does not answer, is done without.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Any

from binance_streamer.io.rest import BINANCE_REST_URL
from binance_streamer.recorder import BINANCE_WS_URL, Recorder, RecorderConfig, RecorderStats
from binance_streamer.storage.sqlite import SqliteSink

__all__ = ["BinanceStreamer"]


class BinanceStreamer:
    """Streams ``symbols`` (default stream ``ticker``) into the SQLite database ``db_path``."""

    def __init__(
        self,
        symbols: list[str],
        db_path: str | Path = "binance_data.db",
        *,
        ws_url: str = f"{BINANCE_WS_URL}/ws",
        streams: list[str] | None = None,
        rest_url: str = BINANCE_REST_URL,
        **options: Any,
    ) -> None:
        self.symbols = list(symbols)
        self.ws_url = ws_url  # the tutorial's attribute: a base URL to change
        self.rest_url = rest_url
        self.db_path = str(db_path)
        self.streams = streams or ["ticker"]
        self._options = options
        self._recorder: Recorder | None = None
        self._started = threading.Event()
        self.initialize_db()

    def __repr__(self) -> str:
        return f"<BinanceStreamer symbols={self.symbols} db={self.db_path!r}>"

    def initialize_db(self) -> None:
        """Create or migrate the database, so `get_market_data` works before streaming."""
        SqliteSink(self.db_path).close()

    def start_stream(self, duration: float | None = None) -> RecorderStats:
        """Record until `stop` (from another thread), Ctrl-C, or ``duration`` seconds; returns
        the run's stats in each case, with everything received stored."""
        config = RecorderConfig(
            symbols=self.symbols, streams=self.streams, database=self.db_path,
            ws_url=self.ws_url, rest_url=self.rest_url, **self._options,
        )
        self._recorder = recorder = Recorder(config)
        try:
            return asyncio.run(self._run(recorder, duration))
        except KeyboardInterrupt:  # Ctrl-C reached us before the recorder's own handler
            return recorder.stats

    async def _run(self, recorder: Recorder, duration: float | None) -> RecorderStats:
        self._started.set()
        if threading.current_thread() is threading.main_thread():  # Ctrl-C: stop and flush
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGINT, recorder.stop)
        return await recorder.run(duration)

    def stop(self) -> None:
        """Stop a running `start_stream` after flushing everything (thread-safe)."""
        self._started.wait(timeout=30)
        if self._recorder is not None:
            self._recorder.stop()

    def get_market_data(self, symbol: str | None = None) -> list[tuple[Any, ...]]:
        """The tutorial's rows ``(id, symbol, price, timestamp)``, optionally for one symbol."""
        conn = sqlite3.connect(self.db_path, timeout=5.0)
        try:
            if symbol:
                cur = conn.execute(
                    "SELECT id, symbol, price, timestamp FROM market_data WHERE symbol = ? "
                    "ORDER BY timestamp, id", (symbol.upper(),))
            else:
                cur = conn.execute(
                    "SELECT id, symbol, price, timestamp FROM market_data ORDER BY timestamp, id")
            return cur.fetchall()
        finally:
            conn.close()
