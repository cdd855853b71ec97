"""Every bad input a user can type ends in one clear line on stderr and the right exit code.

Exit code 2 is bad input, 1 a runtime failure; never a traceback, and nothing already stored is
lost. Bad input is rejected before anything connects, so these run in-process without a network.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from binance_streamer.cli import main
from binance_streamer.exchange import LocalExchange
from binance_streamer.storage.sqlite import SqliteSink
from tests.helpers import TIMEOUT, assert_one_clear_line, batch_of


def run(*args: str) -> tuple[int, str]:
    """Run the command in-process; its exit code and its stderr."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stderr


@pytest.fixture
def recorded(db_path: Path) -> Path:
    """A database that already holds 400 aggTrades."""
    sink = SqliteSink(db_path)
    sink.write(batch_of("binance_spot_aggTrade.head400.jsonl"))
    sink.close()
    return db_path


def agg_trades(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM agg_trade").fetchone()[0])


RECORD_BAD_INPUT = [
    (["--streams", ""], ["no stream type given", "aggTrade"]),
    (["--streams", " , "], ["no stream type given"]),
    (["--streams", "ticker,kline_7m"], ["kline_7m", "1m, 3m"]),
    (["--streams", "tickers"], ["tickers", "bookTicker"]),
    (["--duration", "0"], ["--duration", "positive"]),
    (["--duration", "-5"], ["--duration", "positive"]),
    (["--duration", "nan"], ["--duration", "positive"]),
    (["--duration", "inf"], ["--duration", "positive"]),
    (["--streams-per-connection", "2000"], ["--streams-per-connection"]),
    (["BTCUSDT ETHUSDT"], ["'BTCUSDT ETHUSDT'", "separate arguments"]),
    ([""], ["invalid symbol ''"]),
    (["BTC/USDT"], ["BTC/USDT"]),
    (["--ws-url", "garbage"], ["'garbage'", "ws://"]),
    (["--ws-url", "http://127.0.0.1:9443"], ["http://127.0.0.1:9443", "ws://"]),
    (["--rest-url", "ws://127.0.0.1:9443"], ["--rest-url", "http://"]),
    (["--nope"], ["--nope"]),
]


@pytest.mark.parametrize(("args", "words"), RECORD_BAD_INPUT)
def test_record_rejects_bad_input_with_exit_2(recorded: Path, args: list[str],
                                               words: list[str]) -> None:
    """Each bad record option is one clear line, exit 2, and the database keeps its rows."""
    if not args or not args[0] or not args[0].startswith("-") or args[0] in ("BTC/USDT",):
        args = [*args, "--db", str(recorded)]
    else:
        args = ["BTCUSDT", *args, "--db", str(recorded)]
    code, stderr = run("record", *args)
    assert code == 2, stderr
    assert_one_clear_line(stderr, *words)
    assert agg_trades(recorded) == 400


def test_a_database_url_of_another_kind_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    """--db mysql://... is refused (exit 2) and creates no file or folder."""
    monkeypatch.chdir(tmp_path)
    code, stderr = run("record", "BTCUSDT", "--db", "mysql://me@dbhost/market",
                       "--rest-url", "http://127.0.0.1:9", "--ws-url", "ws://127.0.0.1:9",
                       "--duration", "5")
    assert code == 2, stderr
    assert_one_clear_line(stderr, "mysql://me@dbhost/market", "postgresql://")
    assert list(tmp_path.iterdir()) == []


def test_a_database_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    """--db no/such/dir/x.db is refused (exit 2); no folder is created."""
    db = tmp_path / "no" / "such" / "x.db"
    code, stderr = run("record", "BTCUSDT", "--db", str(db), "--rest-url", "http://127.0.0.1:9",
                       "--ws-url", "ws://127.0.0.1:9", "--duration", "5")
    assert code == 2, stderr
    assert_one_clear_line(stderr, "does not exist")
    assert not (tmp_path / "no").exists()


QUERY_BAD_INPUT = [
    (["--since", "1617566591"], ["epoch seconds", "1617566591000"]),
    (["--until", "yesterday"], ["--until", "ISO"]),
    (["--stream", "nope"], ["'nope'", "aggTrade"]),
    (["--format", "xml"], ["--format"]),
    (["--limit", "-1"], ["--limit"]),
]


@pytest.mark.parametrize(("args", "words"), QUERY_BAD_INPUT)
def test_query_rejects_bad_input_with_exit_2(recorded: Path, args: list[str], words: list[str]
                                             ) -> None:
    """Each bad query option is one clear line and exit 2."""
    code, stderr = run("query", "--db", str(recorded), *args)
    assert code == 2, stderr
    assert_one_clear_line(stderr, *words)
    assert agg_trades(recorded) == 400


def test_query_reads_epoch_milliseconds_and_iso_times(recorded: Path) -> None:
    """--since in epoch ms and --until as an ISO date-time select the same rows as SQL does."""
    with sqlite3.connect(recorded) as conn:
        times = [r[0] for r in conn.execute("SELECT trade_time FROM agg_trade ORDER BY id")]
    since = times[100]
    result = CliRunner().invoke(main, ["query", "--db", str(recorded), "--stream", "aggTrade",
                                       "--since", str(since), "--until", "2100-01-01T00:00:00",
                                       "--format", "csv"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) - 1 == sum(t >= since for t in times)


def not_a_database(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\n" * 200)
    return path


def another_programs_database(tmp_path: Path) -> Path:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    return path


def empty_file(tmp_path: Path) -> Path:
    path = tmp_path / "empty.db"
    path.touch()
    return path


def missing_file(tmp_path: Path) -> Path:
    return tmp_path / "missing.db"


@pytest.mark.parametrize("make", [not_a_database, another_programs_database, empty_file,
                                  missing_file])
def test_query_on_something_that_is_not_a_recording_exits_2(tmp_path: Path, make: object
                                                            ) -> None:
    """query on an empty file, a text file, another program's SQLite file or no file at all is
    one clear line naming the file, exit 2, and the file is left as it was."""
    assert callable(make)
    path: Path = make(tmp_path)
    before = path.read_bytes() if path.exists() else None
    code, stderr = run("query", "--db", str(path))
    assert code == 2, stderr
    assert_one_clear_line(stderr, path.name)
    assert (path.read_bytes() if path.exists() else None) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ([path.name] if before is not None
                                                          else [])


@pytest.mark.parametrize("name", ["a#b.db", "what?.db", "100%.db", "sp ace.db"])
def test_database_paths_with_uri_characters_work(tmp_path: Path, name: str) -> None:
    """Paths containing '#', '?', '%' or a space are read as they are; no stray file appears."""
    db = tmp_path / name
    sink = SqliteSink(db)
    sink.write(batch_of("binance_spot_aggTrade.head400.jsonl"))
    sink.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(main, ["query", "--db", str(db), "--stream", "aggTrade",
                                       "--format", "csv"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 401
    assert sorted(p.name for p in tmp_path.iterdir()) == before


async def record_subprocess(*args: str) -> tuple[int, str, str]:
    """Run ``binance-streamer record`` in a subprocess (it installs signal handlers)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "binance_streamer", "record", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 2)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_handshake_refused_for_good_stops_with_exit_1(recorded: Path) -> None:
    """A WebSocket upgrade answered 404 is not retried: exit 1 naming the status, quickly,
    without a traceback, and the database keeps its rows."""
    async with LocalExchange(synthetic=["BTCUSDT"]) as ex:
        code, _, err = await record_subprocess(
            "BTCUSDT", "--db", str(recorded), "--ws-url", f"{ex.ws_url}/no/such/path",
            "--rest-url", ex.rest_url, "--duration", "60")
    assert code == 1, err
    assert "HTTP 404" in err and "Traceback" not in err and "retrying" not in err
    assert agg_trades(recorded) == 400


async def test_rest_down_at_start_records_anyway(db_path: Path) -> None:
    """With REST unreachable but the WebSocket up, the run records, warns that symbols are
    unchecked, and exits 0."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        code, _, err = await record_subprocess(
            "BTCUSDT", "--db", str(db_path), "--ws-url", ex.ws_url,
            "--rest-url", "http://127.0.0.1:9", "--duration", "3")
    assert code == 0, err
    assert "symbols unchecked" in err and "Traceback" not in err
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ticker").fetchone()[0] > 0


async def test_a_stream_that_sends_nothing_is_reported_with_exit_1(db_path: Path) -> None:
    """A run that heard nothing from a stream it asked for names the stream and exits 1,
    after storing what the other streams sent."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        code, out, err = await record_subprocess(
            "BTCUSDT", "ZZZUSDT", "--db", str(db_path), "--ws-url", ex.ws_url,
            "--rest-url", "http://127.0.0.1:9", "--duration", "3")
    assert code == 1, err
    assert "zzzusdt@ticker" in err and "btcusdt@ticker" not in err.split("received")[-1]
    assert "Recorded into" in out
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ticker").fetchone()[0] > 0


def test_replay_on_a_port_in_use_is_one_line_and_exit_1() -> None:
    """`replay --port` on a port another program holds says so in one line, exit 1."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, stderr = run("replay", "--port", str(port), "--synthetic", "BTCUSDT")
    assert code == 1, stderr
    assert_one_clear_line(stderr, "in use", str(port))
