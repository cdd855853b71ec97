"""The tutorial's API, ``BinanceStreamer``, works as the tutorial shows on the local exchange."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from binance_streamer import BinanceStreamer, RecorderStats, StreamKind
from binance_streamer.exchange import LocalExchange
from binance_streamer.samples import bundled_session
from tests.helpers import TIMEOUT, wait_for_rows


async def test_tutorial_api_streams_and_reads_from_another_thread(db_path: Path) -> None:
    """start_stream() records @ticker; get_market_data() answers (id, symbol, price, timestamp)
    rows from another thread while streaming; stop() ends it with everything stored."""
    async with LocalExchange(replay=[bundled_session("cf_2021-04-04")], speed=8) as ex:
        streamer = BinanceStreamer(["BTCUSDT", "ETHUSDT"], db_path, rest_url=ex.rest_url)
        assert streamer.ws_url == "wss://stream.binance.com:9443/ws"
        assert streamer.get_market_data() == []  # the database exists before streaming
        streamer.ws_url = f"{ex.ws_url}/ws"  # the only change from the tutorial
        results: list[RecorderStats] = []
        thread = threading.Thread(target=lambda: results.append(streamer.start_stream()),
                                  daemon=True)
        thread.start()
        async with asyncio.timeout(TIMEOUT):
            # Polling on purpose: the data is in a database another thread writes.
            while len(streamer.get_market_data("BTCUSDT")) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        streamer.stop()
        await asyncio.to_thread(thread.join, TIMEOUT)
        assert not thread.is_alive()
    rows = streamer.get_market_data()
    [stats] = results
    assert len(rows) == stats.messages[StreamKind.TICKER]  # stop() kept every ticker received
    sent = {(e["s"], float(e["c"]), e["E"]) for s in ("btcusdt@ticker", "ethusdt@ticker")
            for e in ex.history.events(s)}
    assert {(sym, price, ts) for _, sym, price, ts in rows} <= sent
    btc = streamer.get_market_data("BTCUSDT")
    assert btc and all(r[1] == "BTCUSDT" for r in btc)
    assert isinstance(btc[0][0], int) and isinstance(btc[0][2], float)


STREAMER_SCRIPT = """
import sys, threading
from binance_streamer import BinanceStreamer
streamer = BinanceStreamer(["BTCUSDT"], sys.argv[1], ws_url=sys.argv[2])
stats = streamer.start_stream()
print("stopped", stats.messages["ticker"], flush=True)
"""


async def test_tutorial_api_with_only_ws_url_records_and_ctrl_c_returns_stats(
        db_path: Path) -> None:
    """With only ws_url set (Binance's REST unreachable) the tutorial API still records, and
    Ctrl-C makes start_stream() return its stats with every ticker stored."""
    import signal
    import sqlite3
    import sys


    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", STREAMER_SCRIPT, str(db_path), f"{ex.ws_url}/ws",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await wait_for_rows(db_path, "ticker", 3)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"symbols unchecked" in err
    received = int(out.decode().split()[-1])
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ticker").fetchone()[0] == received >= 3
