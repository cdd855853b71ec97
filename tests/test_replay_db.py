"""Replaying a recorded database through the local exchange gives back what was recorded.

Record (the bundled real captures and a synthetic market, every stream kind) -> replay the
database -> record again: every stream table's rows are identical but for ``id`` and
``received_ns``, REST answers are the recorded rows, and the filters choose what is replayed.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from click.testing import CliRunner

from binance_streamer import Recorder, RecorderConfig
from binance_streamer.books import order_book
from binance_streamer.cli import main
from binance_streamer.core.tables import TABLES
from binance_streamer.errors import InvalidDatabase
from binance_streamer.exchange import LocalExchange
from binance_streamer.exchange.db_source import ReplayFilter
from binance_streamer.exchange.sources import load_source
from binance_streamer.recorder import RecorderStats
from binance_streamer.samples import bundled_session
from binance_streamer.storage.sqlite import SqliteSink
from tests.helpers import TIMEOUT

SAMPLE_STREAMS = {"cf_2021-04-04": ["aggTrade", "kline_1m", "depth@100ms"],
                  "cf_2021-04-05": ["aggTrade", "bookTicker", "depth@100ms"]}
# The kinds the captures lack, from the synthetic market; depth10 is the 1000 ms stream.
SYNTHETIC_STREAMS = ["trade", "aggTrade", "kline_1m", "ticker", "ticker_1h", "miniTicker",
                     "avgPrice", "bookTicker", "depth@100ms", "depth5@100ms", "depth10"]
SYNTHETIC_TABLES = ("trade", "agg_trade", "kline", "ticker", "window_ticker", "mini_ticker",
                    "avg_price", "book_ticker", "depth_update", "partial_depth")
# A REST depth snapshot is the exchange's book when the recorder asks: not a stream's rows.
STREAM_TABLES = [t for t in TABLES if t.name != "depth_snapshot"]


async def record(ex: LocalExchange, symbols: Sequence[str], streams: list[str],
                 db: Path | str, done: Callable[[RecorderStats], bool] | None = None) -> None:
    """Record ``streams`` of ``symbols`` from ``ex`` into ``db``: a replay to its end (every
    published event stored), or a synthetic market until ``done``."""
    config = RecorderConfig(symbols=list(symbols), streams=streams, database=db,
                            ws_url=ex.ws_url, rest_url=ex.rest_url)
    recorder = Recorder(config)
    task = asyncio.create_task(recorder.run())
    if done is None:
        await asyncio.wait_for(ex.finished(), TIMEOUT)
        published = sum(ex.history.count(s) for s in config.stream_names)
        await recorder.wait_until(lambda s: s.total_messages >= published and recorder.flushed,
                                  TIMEOUT)
    else:
        await recorder.wait_until(done, TIMEOUT)
    recorder.stop()
    await asyncio.wait_for(task, TIMEOUT)


def _symbols(ex: LocalExchange, streams: list[str]) -> list[str]:
    """The replayed trading symbols with a recorded stream of a kind in ``streams``."""
    return sorted(s for s, state in ex.market.symbols.items()
                  if any(n.partition("@")[2] in streams for n in state.recorded)
                  and ex.info.by_symbol[s]["status"] == "TRADING")


async def record_sample(db: Path | str) -> None:
    """The bundled captures' streams, then a synthetic market of every other kind, into ``db``."""
    for name, streams in SAMPLE_STREAMS.items():
        async with LocalExchange(replay=[bundled_session(name)], speed=None) as ex:
            await record(ex, _symbols(ex, streams), streams, db)
    async with LocalExchange(synthetic=["BNBUSDT"], rate=200) as ex:
        await record(ex, ["BNBUSDT"], SYNTHETIC_STREAMS, db,
                     lambda s: all(s.stored[t] >= 3 for t in SYNTHETIC_TABLES))


async def replay_into(source: Path | str, db: Path | str,
                      replay_filter: ReplayFilter | None = None) -> None:
    """Replay ``source`` (a database) and record every stream it replays into ``db``."""
    async with LocalExchange(replay=[source], speed=None, replay_filter=replay_filter) as ex:
        names = sorted({i.stream for src in ex.sources for i in src.items if i.stream})
        symbols = sorted({n.partition("@")[0].upper() for n in names})
        streams = sorted({n.partition("@")[2] for n in names})
        await record(ex, symbols, streams, db)


async def replay_each_into(source: Path, db: Path) -> None:
    """`replay_into` once per group of symbols recorded with the same stream kinds (a
    recorder records each kind of every symbol it is given)."""
    with sqlite3.connect(source) as conn:
        kinds: dict[str, set[str]] = {}
        for table in STREAM_TABLES:
            for (symbol,) in conn.execute(f"SELECT DISTINCT symbol FROM {table.name}"):
                kinds.setdefault(symbol, set()).add(table.name)
    groups: dict[frozenset[str], list[str]] = {}
    for symbol, tables in sorted(kinds.items()):
        groups.setdefault(frozenset(tables), []).append(symbol)
    for symbols in groups.values():
        await replay_into(source, db, ReplayFilter(symbols=tuple(symbols)))


def rows(db: Path, table: str, where: str = "") -> list[tuple[Any, ...]]:
    """``table``'s rows without ``id`` and ``received_ns``, sorted."""
    spec = next(t for t in TABLES if t.name == table)
    cols = ", ".join(f'"{c}"' for c in spec.column_names if c != "received_ns")
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute(f"SELECT {cols} FROM {table} {where}").fetchall(),
                      key=repr)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sample recording and the recording of its replay."""
    folder = tmp_path_factory.mktemp("replay_db")
    first, second = folder / "first.db", folder / "second.db"
    asyncio.run(record_sample(first))
    asyncio.run(replay_each_into(first, second))
    return first, second


def test_every_stream_kind_is_recorded_in_the_sample(recorded: tuple[Path, Path]) -> None:
    """The first recording holds rows of every stream table the sample and market offer."""
    first, _ = recorded
    for table in SYNTHETIC_TABLES:
        assert rows(first, table), table
    assert {r[1] for r in rows(first, "partial_depth")} == {5, 10}


@pytest.mark.parametrize("table", SYNTHETIC_TABLES)
def test_record_replay_record_gives_back_identical_rows(recorded: tuple[Path, Path],
                                                       table: str) -> None:
    """Recording a replayed database stores exactly the rows it was replayed from."""
    first, second = recorded
    assert rows(second, table) == rows(first, table) != []


def test_no_stream_table_gains_rows_in_the_round_trip(recorded: tuple[Path, Path]) -> None:
    """Tables the first recording left empty stay empty in the second."""
    first, second = recorded
    for table in STREAM_TABLES:
        assert bool(rows(second, table.name)) == bool(rows(first, table.name)), table.name


def test_replay_is_paced_by_the_recorded_receive_times(recorded: tuple[Path, Path]) -> None:
    """Items are offset from one another by the difference of their rows' receive times."""
    first, _ = recorded
    with sqlite3.connect(first) as conn:
        received = [ns for (ns,) in conn.execute(
            "SELECT received_ns FROM agg_trade WHERE symbol = 'BTCUSDT' AND source = 'ws' "
            "ORDER BY received_ns, id")]
    src = load_source(first, ReplayFilter(symbols=("BTCUSDT",)))
    offsets = [i.offset_ms for i in src.items if i.stream == "btcusdt@aggTrade"]
    assert offsets == pytest.approx([offsets[0] + (ns - received[0]) / 1e6 for ns in received])


async def test_a_recorded_partial_depth_stream_is_sent_once(recorded: tuple[Path, Path]) -> None:
    """A subscriber to a replayed @depth5@100ms gets the recorded frames, none derived again
    from the replayed book."""
    flt = ReplayFilter(symbols=("BNBUSDT",))
    src = load_source(recorded[0], flt)
    expected = [i.payload for i in src.items if i.stream == "bnbusdt@depth5@100ms"]
    async with LocalExchange(replay=[recorded[0]], speed=None, replay_filter=flt) as ex:
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(f"{ex.ws_url}/ws/bnbusdt@depth5@100ms") as ws:
            got = [(await asyncio.wait_for(ws.receive_json(), TIMEOUT)) for _ in expected]
            await asyncio.wait_for(ex.finished(), TIMEOUT)
        published = ex.history.events("bnbusdt@depth5@100ms")
    assert got == expected and published == expected


def test_partial_depth_streams_are_replayed_at_their_recorded_speed(
        recorded: tuple[Path, Path]) -> None:
    """A recorded @depth5@100ms is replayed as @depth5@100ms and a @depth10 as @depth10."""
    src = load_source(recorded[0])
    names = {i.stream for i in src.items if i.stream.startswith("bnbusdt@depth")}
    assert names == {"bnbusdt@depth@100ms", "bnbusdt@depth5@100ms", "bnbusdt@depth10"}


def test_symbol_and_since_filters_choose_what_is_replayed(recorded: tuple[Path, Path]) -> None:
    """`ReplayFilter` replays the chosen symbols' rows received in the chosen range only."""
    first, _ = recorded
    with sqlite3.connect(first) as conn:
        received = [ns for (ns,) in conn.execute(
            "SELECT received_ns FROM agg_trade WHERE symbol = 'BTCUSDT' AND source = 'ws' "
            "ORDER BY received_ns")]
        since = received[len(received) // 2] // 1_000_000
        expected = [a for (a,) in conn.execute(
            "SELECT agg_id FROM agg_trade WHERE symbol = 'BTCUSDT' AND source = 'ws' "
            "AND received_ns >= ? ORDER BY received_ns, id", (since * 1_000_000,))]
    src = load_source(first, ReplayFilter(symbols=("btcusdt",), since_ms=since))
    assert {i.stream.partition("@")[0] for i in src.items if i.stream} == {"btcusdt"}
    assert [i.payload["a"] for i in src.items if i.stream == "btcusdt@aggTrade"] == expected
    assert src.base_ms >= since


def test_a_filter_that_chooses_nothing_is_an_invalid_database(
        recorded: tuple[Path, Path]) -> None:
    """Asking for a symbol the database does not hold says so instead of replaying nothing."""
    with pytest.raises(InvalidDatabase, match="ZZZUSDT"):
        load_source(recorded[0], ReplayFilter(symbols=("ZZZUSDT",)))


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_rest_answers_are_the_recorded_rows(recorded: tuple[Path, Path]) -> None:
    """Once replayed, REST aggTrades, klines and depth equal the recorded rows and book."""
    first, _ = recorded
    aggs = [{"a": a, "p": p, "q": q, "f": f, "l": last, "T": t, "m": bool(m), "M": bool(mm)}
            for _, a, p, q, f, last, t, m, mm, _, _ in rows(
                first, "agg_trade", "WHERE symbol = 'ETHUSDT' ORDER BY agg_id")]
    klines = [[t, o, h, low, c, v, tt, qv, n, vv, qq, "0"]
              for _, _, t, tt, _, _, o, c, h, low, v, n, _, qv, vv, qq, _, _ in rows(
                  first, "kline", "WHERE symbol = 'ETHUSDT' AND interval = '1m'")]
    with sqlite3.connect(first) as conn:
        (end,) = conn.execute("SELECT MAX(event_time) FROM depth_update "
                              "WHERE symbol = 'ETHUSDT'").fetchone()
    book = order_book(first, "ETHUSDT", end, depth=5000)
    async with LocalExchange(replay=[first], speed=None, start="manual",
                             replay_filter=ReplayFilter(symbols=("ETHUSDT",))) as ex:
        await ex.start()
        await asyncio.wait_for(ex.finished(), TIMEOUT)
        api = f"{ex.rest_url}/api/v3"
        async with aiohttp.ClientSession() as http:
            got_aggs = await _get(http, f"{api}/aggTrades?symbol=ETHUSDT&fromId={aggs[0]['a']}"
                                        f"&limit=1000")
            got_klines = await _get(http, f"{api}/klines?symbol=ETHUSDT&interval=1m")
            depth = await _get(http, f"{api}/depth?symbol=ETHUSDT&limit=5000")
    assert got_aggs == aggs[:1000] and len(aggs) > 100
    assert sorted(got_klines) == sorted(klines) and klines
    assert depth["lastUpdateId"] == book.last_update_id
    assert depth["bids"] == [[p, q] for p, q in book.bids]
    assert depth["asks"] == [[p, q] for p, q in book.asks]


async def test_backfilled_trades_reach_rest_but_no_stream(recorded: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    """Rows fetched over REST are answered by REST aggTrades in id order, never sent on
    @aggTrade: they were never received on a stream."""
    db = tmp_path / "backfilled.db"
    shutil.copy(recorded[0], db)
    with sqlite3.connect(db) as conn:
        ids = [a for (a,) in conn.execute(
            "SELECT agg_id FROM agg_trade WHERE symbol = 'DOTUSDT' ORDER BY agg_id")]
        middle = ids[len(ids) // 3: len(ids) // 3 + 5]
        conn.execute("UPDATE agg_trade SET source = 'rest', received_ns = NULL, "
                     f"event_time = NULL WHERE symbol = 'DOTUSDT' AND agg_id IN "
                     f"({', '.join('?' for _ in middle)})", middle)
    src = load_source(db, ReplayFilter(symbols=("DOTUSDT",)))
    sent = [i.payload["a"] for i in src.items if i.stream == "dotusdt@aggTrade"]
    assert sent == [a for a in ids if a not in middle]
    async with LocalExchange(replay=[db], speed=None, start="manual",
                             replay_filter=ReplayFilter(symbols=("DOTUSDT",))) as ex:
        await ex.start()
        await asyncio.wait_for(ex.finished(), TIMEOUT)
        async with aiohttp.ClientSession() as http:
            got = await _get(http, f"{ex.rest_url}/api/v3/aggTrades?symbol=DOTUSDT"
                                   f"&fromId={ids[0]}&limit=1000")
    assert [r["a"] for r in got] == ids[:1000]


async def test_a_postgresql_recording_is_replayed(recorded: tuple[Path, Path], pg_url: str,
                                                  tmp_path: Path) -> None:
    """A recording in PostgreSQL replays like a SQLite one: re-recorded, the same rows."""
    async with LocalExchange(replay=[bundled_session("cf_2021-04-04")], speed=None) as ex:
        await record(ex, ["BTCUSDT", "ETHUSDT"], ["aggTrade"], pg_url)
    again = tmp_path / "again.db"
    await replay_into(pg_url, again)
    with psycopg.connect(pg_url) as conn:
        stored = sorted(conn.execute(
            "SELECT symbol, agg_id, price, quantity, first_trade_id, last_trade_id, trade_time, "
            "buyer_is_maker, best_match, event_time, source FROM agg_trade").fetchall())
    assert rows(again, "agg_trade") == [(*r[:7], int(r[7]), int(r[8]), *r[9:]) for r in stored]
    assert len(stored) > 100


async def test_replay_command_serves_a_database(recorded: tuple[Path, Path]) -> None:
    """`replay --data x.db --symbol S --port 0` serves S's recorded book (and not the other
    symbols') until interrupted."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "binance_streamer.cli", "replay", "--data", str(recorded[0]),
        "--symbol", "BNBUSDT", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        ws_line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        rest_line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        assert ws_line.startswith("WebSocket: ws://127.0.0.1:"), ws_line
        api = f"{rest_line.split()[1]}/api/v3"
        async with aiohttp.ClientSession() as http:
            chosen = await _get(http, f"{api}/depth?symbol=BNBUSDT")
            other = await _get(http, f"{api}/depth?symbol=BTCUSDT")
        assert chosen["lastUpdateId"] > 0 and chosen["bids"] and chosen["asks"]
        assert other["lastUpdateId"] == 0 and other["bids"] == []
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0


@pytest.mark.parametrize(("name", "make", "words"), [
    ("x.db", lambda p: p.write_text("not a database\n"), ["x.db", "not a SQLite database"]),
    ("x.db", lambda p: SqliteSink(p).close(), ["x.db", "holds no recorded market data"]),
    ("x.jsonl", lambda p: p.write_text("not json\n"), ["x.jsonl", "is not a recording"]),
])
def test_replay_of_bad_data_is_one_line_and_exit_2(tmp_path: Path, name: str,
                                                   make: Callable[[Path], Any],
                                                   words: list[str]) -> None:
    """`replay --data` with a file that is not a database, a database holding no recording,
    or a file that is no recording at all fails before serving: one line on stderr, exit 2."""
    path = tmp_path / name
    make(path)
    result = CliRunner().invoke(main, ["replay", "--data", str(path), "--port", "0"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(w in lines[0] for w in words), result.stderr


def test_replay_filters_with_a_capture_file_are_bad_input() -> None:
    """--symbol chooses from a database; with the bundled capture it is refused, exit 2."""
    result = CliRunner().invoke(main, ["replay", "--symbol", "BTCUSDT", "--port", "0"])
    assert result.exit_code == 2, result.stderr
    assert "recorded database" in result.stderr.strip().splitlines()[0]
