"""Well-known clients work against the local exchange with only their base URL changed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import websocket  # websocket-client, the tutorial's library

from binance_streamer.exchange import BUNDLED_SESSIONS, LocalExchange
from tests.exchange.helpers import TIMEOUT

APRIL_4 = next(p for p in BUNDLED_SESSIONS if "04-04" in p.name)


class BinanceStreamer:
    """The tutorial's client (``../shared/seed/binance-streamer-tutorial.txt``), unchanged except
    for ``ws_url`` and a hook that records the running socket so the test can see it."""

    def __init__(self, symbols: list[str], ws_url: str) -> None:
        self.symbols = symbols
        self.ws_url = ws_url
        self.initialize_db()

    def initialize_db(self) -> None:
        self.conn = sqlite3.connect("binance_data.db")
        self.cursor = self.conn.cursor()
        self.cursor.execute("""CREATE TABLE IF NOT EXISTS market_data
(id TEXT PRIMARY KEY,
symbol TEXT,
price REAL,
timestamp INTEGER)""")
        self.conn.commit()

    def start_stream(self) -> None:
        multi_stream = "/".join([f"{s.lower()}@ticker" for s in self.symbols])
        ws_url = f"{self.ws_url}/{multi_stream}"

        def on_message(ws: Any, message: str) -> None:
            data = json.loads(message)
            self.process_message(data)
        ws = websocket.WebSocketApp(ws_url, on_message=on_message)
        ws.run_forever()

    def process_message(self, data: dict[str, Any]) -> None:
        trade_id = uuid4().hex
        symbol = data["s"]  # Symbol
        price = float(data["c"])  # Current price
        timestamp = data["E"]  # Event time
        self.cursor.execute("INSERT INTO market_data VALUES (?, ?, ?, ?)",
                            (trade_id, symbol, price, timestamp))
        self.conn.commit()


async def test_tutorial_client_stores_real_recorded_prices(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tutorial's websocket-client code stores every derived ticker with recorded prices."""
    monkeypatch.chdir(tmp_path)
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex:
        def run() -> None:
            BinanceStreamer(["BTCUSDT", "ETHUSDT"], ex.ws_url + "/ws").start_stream()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        async with asyncio.timeout(TIMEOUT):
            await ex.finished()
            ex.faults.drop_now(code=1000)
            await asyncio.to_thread(thread.join)
        expected = sorted((t["s"], float(t["c"]), t["E"])
                          for s in ("btcusdt@ticker", "ethusdt@ticker")
                          for t in ex.history.events(s))
    rows = sorted(sqlite3.connect(tmp_path / "binance_data.db").execute(
        "SELECT symbol, price, timestamp FROM market_data"))
    assert rows == expected
    assert {r[0] for r in rows} == {"BTCUSDT", "ETHUSDT"}
    assert all(57_000 < r[1] < 59_000 for r in rows if r[0] == "BTCUSDT")


async def test_python_binance_socket_manager_and_rest_client() -> None:
    """python-binance's BinanceSocketManager (STREAM_URL overridden) and REST client work."""
    from binance import AsyncClient, BinanceSocketManager

    async with LocalExchange(synthetic=["BTCUSDT"], rate=100) as ex:
        client = AsyncClient()
        client.API_URL = ex.rest_url + "/api"
        try:
            bm = BinanceSocketManager(client)
            bm.STREAM_URL = ex.ws_url + "/"
            async with asyncio.timeout(TIMEOUT), bm.multiplex_socket(
                    ["btcusdt@aggTrade", "btcusdt@depth@100ms"]) as socket:
                got = {}
                while len(got) < 2:
                    msg = await socket.recv()
                    got[msg["stream"]] = msg["data"]
            assert got["btcusdt@aggTrade"]["e"] == "aggTrade"
            assert got["btcusdt@depth@100ms"]["e"] == "depthUpdate"
            rows = await client.get_aggregate_trades(symbol="BTCUSDT", limit=5)
            assert rows[-1]["a"] >= got["btcusdt@aggTrade"]["a"]
            info = await client.get_symbol_info("BTCUSDT")
            assert info is not None and info["symbol"] == "BTCUSDT"
        finally:
            await client.close_connection()
