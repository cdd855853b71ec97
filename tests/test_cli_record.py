"""``binance-streamer record`` end to end, in a subprocess, against the local exchange."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

from binance_streamer.exchange import LocalExchange
from tests.helpers import TIMEOUT, wait_for_rows


async def cli(*args: str, stop_after_rows: Path | None = None) -> tuple[int, str, str]:
    """Run the command; with ``stop_after_rows`` send SIGTERM once that database has tickers."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "binance_streamer.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    if stop_after_rows is not None:
        await wait_for_rows(stop_after_rows, "ticker", 3)
        proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 2)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_record_with_duration_exits_0_and_summarises(db_path: Path) -> None:
    """--duration stops the recorder by itself: exit 0, a summary, tickers in the database."""
    async with LocalExchange(synthetic=["BTCUSDT", "ETHUSDT"], rate=20) as ex:
        code, out, err = await cli("record", "BTCUSDT", "ETHUSDT", "--streams", "ticker,aggTrade",
                                   "--duration", "2", "--db", str(db_path),
                                   "--ws-url", ex.ws_url, "--rest-url", ex.rest_url)
    assert code == 0, err
    assert "Recorded into" in out and "agg_trade" in out and "ticker" in out
    with sqlite3.connect(db_path) as conn:
        symbols = {r[0] for r in conn.execute("SELECT symbol FROM market_data")}
    assert symbols == {"BTCUSDT", "ETHUSDT"}


async def test_sigterm_flushes_everything_received(db_path: Path) -> None:
    """SIGTERM stops cleanly: exit 0, and every ticker counted in the summary is in the file."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        code, out, _ = await cli("record", "BTCUSDT", "--db", str(db_path), "--ws-url", ex.ws_url,
                                 "--rest-url", ex.rest_url, stop_after_rows=db_path)
    assert code == 0
    line = next(line for line in out.splitlines() if line.strip().startswith("ticker"))
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ticker").fetchone()[0] == int(
            line.split()[-1].replace(",", ""))


async def test_unknown_symbol_exits_2_naming_it(db_path: Path) -> None:
    """A symbol exchangeInfo does not list is named in the error; exit code 2."""
    async with LocalExchange(synthetic=["BTCUSDT"]) as ex:
        code, _, err = await cli("record", "BTCUSDT", "DOGEXYZ", "--db", str(db_path),
                                 "--ws-url", ex.ws_url, "--rest-url", ex.rest_url)
    assert code == 2 and "DOGEXYZ" in err and "BTCUSDT" not in err.split("DOGEXYZ")[1]


async def test_malformed_stream_name_exits_2() -> None:
    """A bad --streams item is rejected before anything connects, with the known types listed."""
    code, _, err = await cli("record", "--streams", "ticker,kline_7m")
    assert code == 2 and "kline_7m" in err and "bookTicker" in err


async def test_a_database_path_under_a_file_exits_2(tmp_path: Path) -> None:
    """A database path whose 'folder' is a file is bad input: one line naming it, exit 2."""
    (tmp_path / "file").write_text("not a directory")
    async with LocalExchange(synthetic=["BTCUSDT"]) as ex:
        code, _, err = await cli("record", "BTCUSDT", "--db", str(tmp_path / "file" / "x.db"),
                                 "--ws-url", ex.ws_url, "--rest-url", ex.rest_url)
    assert code == 2 and "file" in err and len(err.strip().splitlines()) == 1, err


async def test_unreachable_exchange_is_retried_until_the_duration_then_reported(
        tmp_path: Path) -> None:
    """An address nobody listens on is retried within --duration; the run then says it received
    nothing and exits 1, without a traceback."""
    code, _, err = await cli("record", "BTCUSDT", "--ws-url", "ws://127.0.0.1:9",
                             "--rest-url", "http://127.0.0.1:9", "--duration", "3",
                             "--db", str(tmp_path / "unreachable.db"))
    assert code == 1, err
    assert "cannot reach ws://127.0.0.1:9" in err and "retrying in" in err
    assert "received nothing at all: btcusdt@ticker" in err and "Traceback" not in err


async def test_replay_command_serves_until_interrupted() -> None:
    """`replay` prints its URLs once ready, serves Binance REST and streams, and stops on SIGINT."""
    import json

    import aiohttp

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "binance_streamer.cli", "replay", "--port", "0",
        "--synthetic", "BTCUSDT", "--rate", "50", "--served-only",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    ws_line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
    rest_line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
    ws_url, rest_url = ws_line.split()[1], rest_line.split()[1]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{rest_url}/api/v3/exchangeInfo?symbol=BTCUSDT") as resp:
            assert [s["symbol"] for s in (await resp.json())["symbols"]] == ["BTCUSDT"]
        async with http.get(f"{rest_url}/api/v3/exchangeInfo") as resp:  # --served-only
            assert [s["symbol"] for s in (await resp.json())["symbols"]] == ["BTCUSDT"]
        async with http.ws_connect(f"{ws_url}/ws/btcusdt@trade") as ws:
            trade = json.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)
    assert trade["e"] == "trade" and trade["s"] == "BTCUSDT"
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0


async def test_demo_records_the_bundled_session(tmp_path: Path) -> None:
    """`demo` replays the bundled real session into a database and shows its first tickers."""
    db = tmp_path / "demo.db"
    code, out, err = await cli("demo", "--speed", "max", "--db", str(db))
    assert code == 0, err
    assert "First tickers" in out and "58001.04000000" in out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM agg_trade").fetchone() == (1910,)


async def test_a_run_ending_with_gaps_open_says_so_and_exits_3(db_path: Path) -> None:
    """Gaps not filled by the stop are counted in the summary and make the exit code 3."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "binance_streamer", "record", "BTCUSDT", "--streams",
            "aggTrade", "--no-backfill", "--duration", "4", "--db", str(db_path),
            "--ws-url", ex.ws_url, "--rest-url", ex.rest_url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await wait_for_rows(db_path, "agg_trade", 10)
        ex.faults.skip(3, "btcusdt@aggTrade")
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 3, err.decode()
    assert "open 1" in out.decode() and "1 gap(s) could not be filled" in err.decode()
