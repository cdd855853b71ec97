"""Well-known clients work against the local exchange with only their base URL changed: the
tutorial's websocket-client code and the official connector (binance-sdk-spot). python-binance,
ccxt.pro, cryptofeed and unicorn-binance-websocket-api have their own test_fidelity_*.py."""

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

from binance_streamer.exchange import LocalExchange
from tests.exchange.helpers import APRIL_4, TIMEOUT


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


async def test_official_connector_streams_and_rest_models() -> None:
    """binance-sdk-spot, with its stream URL and REST base path set to the exchange, subscribes
    with UUID ids, receives every replayed aggregate trade and parses the REST answers into its
    models with the replayed values and no undocumented fields."""
    from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketStreams
    from binance_sdk_spot.spot import Spot

    async with LocalExchange(replay=[APRIL_4], speed=None, start="manual") as ex:
        recorded = [i.payload for i in ex.sources[0].items if i.stream == "btcusdt@aggTrade"]
        client = Spot(config_ws_streams=ConfigurationWebSocketStreams(stream_url=ex.ws_url),
                      config_rest_api=ConfigurationRestAPI(base_path=ex.rest_url,
                                                           timeout=int(TIMEOUT * 1000)))
        conn = await client.websocket_streams.create_connection()
        got: list[Any] = []
        complete = asyncio.Event()

        def on_message(msg: Any) -> None:
            got.append(msg)
            if len(got) == len(recorded):
                complete.set()
        try:
            async with asyncio.timeout(TIMEOUT):
                stream = await conn.agg_trade(symbol="btcusdt")
                stream.on("message", on_message)
                await ex.wait_subscribed(1)
                listed = await conn.list_subscribe()
                await ex.start()
                await complete.wait()
        finally:
            await conn.close_connection(close_session=True)
        assert listed["result"] == ["btcusdt@aggTrade"] and len(listed["id"]) == 36
        fields = ("a", "p", "q", "f", "l", "T", "m")
        assert [tuple(getattr(m, k) for k in fields) for m in got] == [
            tuple(a[k] for k in fields) for a in ex.history.events("btcusdt@aggTrade")]
        assert [m.a for m in got] == list(range(recorded[0]["a"], recorded[0]["a"] + len(got)))

        api = client.rest_api

        async def call(name: str, **kwargs: Any) -> Any:
            data = (await asyncio.to_thread(getattr(api, name), **kwargs)).data()
            data = getattr(data, "actual_instance", data)  # oneOf: one object or a list
            for model in data if isinstance(data, list) else [data]:
                assert model.additional_properties == {}, (name, model)
            return data

        last = recorded[-1]
        rows = await call("agg_trades", symbol="BTCUSDT", limit=3)
        assert [(r.a, r.p, r.q, r.T) for r in rows] == [
            (a["a"], a["p"], a["q"], a["T"]) for a in recorded[-3:]]
        price = await call("ticker_price", symbol="BTCUSDT")
        assert (price.symbol, price.price) == ("BTCUSDT", last["p"])
        prices = await call("ticker_price", symbols=["ETHUSDT", "BTCUSDT"])
        assert [p.symbol for p in prices] == ["ETHUSDT", "BTCUSDT"]
        depth = await call("depth", symbol="BTCUSDT", limit=5)
        book = await call("ticker_book_ticker", symbol="BTCUSDT")
        assert [book.bid_price, book.bid_qty, book.ask_price, book.ask_qty] == (
            depth.bids[0] + depth.asks[0])
        avg = await call("avg_price", symbol="BTCUSDT")
        assert (avg.mins, avg.close_time) == (5, last["T"])
        rolling = await call("ticker", symbol="BTCUSDT", window_size="1h")
        assert (rolling.last_price, rolling.first_id, rolling.last_id, rolling.close_time) == (
            last["p"], recorded[0]["f"], last["l"], last["T"])
        daily = await call("ticker24hr", symbols=["BTCUSDT"], type="MINI")
        assert (daily[0].last_price, daily[0].count) == (
            last["p"], last["l"] - recorded[0]["f"] + 1)
