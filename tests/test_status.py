"""``binance-streamer status`` tells what a database holds, on SQLite and PostgreSQL, while a
recorder writes to it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from binance_streamer.cli import main
from binance_streamer.exchange import LocalExchange
from binance_streamer.recorder import Recorder, RecorderConfig
from binance_streamer.storage.base import Batch
from binance_streamer.storage.open import open_sink
from binance_streamer.storage.status import RATE_WINDOW_S, Status, StreamStatus, read_status
from tests.helpers import TIMEOUT, batch_of, payloads

NOW_NS = 1_700_000_000_000_000_000
OLD_NS = NOW_NS - (RATE_WINDOW_S + 60) * 1_000_000_000  # received before the last minute
RECENT_NS = NOW_NS - 5 * 1_000_000_000  # received in the last minute
AGG = "binance_spot_aggTrade.head400.jsonl"
DEPTH = "binance_spot_depthUpdate_100ms.head600.jsonl"
KLINE = "binance_spot_kline_1m.0404.jsonl"
REST_ROW = ("XRPUSDT", 7, "0.5", "10", 70, 71, 1617566600000, True, True, None, None, "rest")
# BTCUSDT candles of two more intervals, around the fixture's 1m ones in key order.
KLINES = [("BTCUSDT", interval, open_time, open_time + 1, 1, 2, "1", "1", "1", "1", "1", 2, True,
           "1", "1", "1", open_time + 5, OLD_NS, "ws")
          for interval, open_time in (("1h", 1617566400000), ("5m", 1617566400000),
                                      ("5m", 1617566700000))]


def fill(database: str | Path) -> None:
    """aggTrades and klines received long ago, diff depth in the last minute, REST aggTrades
    (no receive time) after them, gaps of each kind and a quarantined frame."""
    sink = open_sink(database)
    try:
        sink.write(batch_of(AGG, received_ns=OLD_NS))
        sink.write(batch_of(KLINE, received_ns=OLD_NS))
        sink.write(batch_of(DEPTH, received_ns=RECENT_NS))
        rest = Batch()  # fetched over REST: no receive time
        rest.add("agg_trade", [REST_ROW])
        rest.add("kline", KLINES)
        sink.write(rest)
        sink.write(Batch(
            gaps=[("btcusdt@aggTrade", 10, 12, "id gap", 1), ("btcusdt@aggTrade", 20, 21,
                                                              "id gap", 2),
                  ("ethusdt@depth@100ms", 5, 9, "depth chain broken", 3),
                  ("dotusdt@aggTrade", 1, 5000, "stale", 4)],
            gap_fills=[(9, 3, "btcusdt@aggTrade", 10, 12)],
            quarantine=[(RECENT_NS, "ethusdt@aggTrade", "bad json", "{")]))
    finally:
        sink.close()


def expected_streams() -> dict[tuple[str, str, str | None], dict[str, Any]]:
    """The figures of each stream, from the fixtures' payloads: keys, times, receive time."""
    found: dict[tuple[str, str, str | None], dict[str, Any]] = {
        ("agg_trade", "XRPUSDT", None): {"keys": {7}, "times": [REST_ROW[6]], "received": None}}
    for k in KLINES:
        entry = found.setdefault(("kline", k[0], k[1]), {"keys": set(), "times": [],
                                                        "received": OLD_NS})
        entry["keys"].add(k[2])
        entry["times"].append(k[2])
    for name, table, detail, key, time, received in (
            (AGG, "agg_trade", None, "a", "T", OLD_NS),
            (DEPTH, "depth_update", None, "u", "E", RECENT_NS),
            (KLINE, "kline", "i", "t", "t", OLD_NS)):
        for p in payloads(name):
            data = p["k"] if table == "kline" else p
            ident = (table, p["s"], None if detail is None else data[detail])
            entry = found.setdefault(ident, {"keys": set(), "times": [], "received": received})
            entry["keys"].add(data[key])
            entry["times"].append(data[time])
    return found


def by_stream(status: Status) -> dict[tuple[str, str, str | None], StreamStatus]:
    return {(s.table, s.symbol, s.detail): s for s in status.streams}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, db_path: Path) -> str:
    """A filled database on each backend."""
    target = str(db_path) if request.param == "sqlite" else request.getfixturevalue("pg_url")
    fill(target)
    return target


def test_every_stream_has_its_rows_times_and_last_minute(database: str) -> None:
    """Rows, first and last time and last receive time of each stream are those written; only
    the rows stored since the last minute's first one count as recent."""
    status = read_status(database, now_ns=NOW_NS)
    streams = by_stream(status)
    expected = expected_streams()
    assert set(streams) == set(expected)
    for ident, want in expected.items():
        got = streams[ident]
        assert got.rows == len(want["keys"]) and got.rows_exact, ident
        assert (got.first_time, got.last_time) == (min(want["times"]), max(want["times"]))
        assert got.last_received_ns == want["received"]
        assert got.rows_last_minute == (got.rows if want["received"] == RECENT_NS else 0)
    assert streams[("kline", "BTCUSDT", "1m")].time_column == "open_time"
    assert streams[("depth_update", "ETHUSDT", None)].time_unit == "ms"


def test_gaps_quarantine_and_database_facts(database: str) -> None:
    """Gaps are open, filled or silences per stream and cause; the quarantine is counted; the
    size, unit and schema version are the database's."""
    status = read_status(database, now_ns=NOW_NS)
    assert (status.gaps_open, status.gaps_filled, status.silences) == (2, 1, 1)
    assert [(g.stream, g.cause, g.open, g.filled, g.silences) for g in status.gaps] == [
        ("btcusdt@aggTrade", "id gap", 1, 1, 0), ("dotusdt@aggTrade", "stale", 0, 0, 1),
        ("ethusdt@depth@100ms", "depth chain broken", 1, 0, 0)]
    assert (status.quarantined, status.listing_changes) == (1, 0)
    assert (status.schema_version, status.time_unit) == (4, "millisecond")
    assert status.size_bytes > 100_000
    assert {t.table: t.rows for t in status.tables} == {"agg_trade": 401, "kline": 9,
                                                        "depth_update": 600}


def test_one_symbol_only(database: str) -> None:
    """--symbol keeps that symbol's streams, gaps and quarantined frames, and no table totals."""
    status = read_status(database, symbol="ethusdt", now_ns=NOW_NS)
    assert {s.symbol for s in status.streams} == {"ETHUSDT"}
    btc = read_status(database, symbol="BTCUSDT", now_ns=NOW_NS)
    assert [s.detail for s in btc.streams if s.table == "kline"] == ["1h", "1m", "5m"]
    assert [g.stream for g in status.gaps] == ["ethusdt@depth@100ms"]
    assert (status.quarantined, status.tables) == (1, [])


def test_big_tables_are_estimated_from_their_ids_and_exact_counts_them(database: str) -> None:
    """Past the counting limit a table's rows are its id span and a trade stream's its
    aggregate id span, both marked estimated; other streams are not counted; exact counts."""
    streams = by_stream(read_status(database, now_ns=NOW_NS, exact_limit=10))
    agg = payloads(AGG)
    btc = [p["a"] for p in agg if p["s"] == "BTCUSDT"]
    got = streams[("agg_trade", "BTCUSDT", None)]
    assert (got.rows, got.rows_exact) == (max(btc) - min(btc) + 1, False)
    assert streams[("depth_update", "ETHUSDT", None)].rows is None
    exact = read_status(database, now_ns=NOW_NS, exact_limit=10, exact=True)
    assert by_stream(exact)[("agg_trade", "BTCUSDT", None)].rows == len(btc)
    assert all(t.exact for t in exact.tables)


# -- the command -------------------------------------------------------------------------------


def invoke(*args: str, columns: int = 80) -> Result:
    return CliRunner(env={"COLUMNS": str(columns)}).invoke(main, ["status", *args],
                                                           terminal_width=columns)


def test_json_has_the_documented_keys(database: str) -> None:
    """--format json is one object with the documented keys, on both backends."""
    result = invoke("--db", database, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"database", "backend", "schema_version", "time_unit", "size_bytes",
                        "read_ns", "symbol", "rate_window_s", "streams", "tables", "gaps",
                        "quarantined", "listing_changes"}
    assert set(doc["streams"][0]) == {"table", "symbol", "detail", "rows", "rows_exact",
                                      "time_column", "time_unit", "first_time", "last_time",
                                      "last_received_ns", "rows_last_minute"}
    assert set(doc["gaps"]) == {"open", "filled", "silences", "by_stream"}
    assert set(doc["gaps"]["by_stream"][0]) == {"stream", "cause", "open", "filled", "silences"}
    assert doc["backend"] == ("sqlite" if database.endswith(".db") else "postgresql")
    klines = [(s["symbol"], s["detail"], s["rows"]) for s in doc["streams"]
              if s["table"] == "kline"]
    assert klines == [("BTCUSDT", "1h", 1), ("BTCUSDT", "1m", 2), ("BTCUSDT", "5m", 2),
                      ("DOTUSDT", "1m", 2), ("ETHUSDT", "1m", 2)]


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_the_terminal(db_path: Path, width: int) -> None:
    """The table view is no wider than the terminal; a narrow one names the columns left out."""
    fill(db_path)
    result = invoke("--db", str(db_path), columns=width)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= width
    assert any(line.split()[:3] == ["kline", "1m", "BTCUSDT"] for line in lines)
    assert "gaps: 2 open, 1 filled; silences (stale streams): 1" in result.stdout
    assert ("first (UTC)" in result.stdout) == (width == 120)
    assert ("not shown, too narrow: first" in result.stdout) == (width == 80)


def test_a_missing_or_foreign_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """No file, a text file, another program's SQLite file or a bad scheme: exit 2, one line."""
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE things (x)")
    cases = {str(tmp_path / "nope.db"): "no database", str(text): "not a SQLite database",
             str(foreign): "another program", "mysql://x/y": "not supported"}
    for db, message in cases.items():
        result = invoke("--db", db)
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_an_empty_database_says_so(db_path: Path) -> None:
    """A database with no rows yet is a status, not an error."""
    open_sink(db_path).close()
    result = invoke("--db", str(db_path))
    assert result.exit_code == 0 and "no rows recorded\n" in result.stdout
    one = invoke("--db", str(db_path), "--symbol", "btcusdt")
    assert one.exit_code == 0 and "no rows recorded for BTCUSDT\n" in one.stdout


# -- while recording ---------------------------------------------------------------------------


def _exact_figures(database: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(table, symbol) -> rows, first and last time, read with plain SQL."""
    sql = ("SELECT '{t}', symbol, COUNT(*), MIN({c}), MAX({c}) FROM {t} GROUP BY symbol")
    queries = [sql.format(t="agg_trade", c="trade_time"),
               sql.format(t="depth_update", c="event_time")]
    if database.startswith("postgresql://"):
        with psycopg.connect(database) as pg:
            rows = [r for q in queries for r in pg.execute(q).fetchall()]
    else:
        with sqlite3.connect(database) as lite:
            rows = [r for q in queries for r in lite.execute(q).fetchall()]
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_status_while_recording_never_stalls_the_recorder(
        backend: str, request: pytest.FixtureRequest, db_path: Path) -> None:
    """Status read over and over while a recorder writes: the recorder keeps storing, every
    status is consistent (all rows just received), and the last one equals plain SQL."""
    database = str(db_path) if backend == "sqlite" else request.getfixturevalue("pg_url")
    seen: list[Status] = []
    stop = threading.Event()

    def keep_reading() -> None:
        while not stop.is_set():
            try:
                seen.append(read_status(database))
            except Exception:
                if seen:
                    raise

    async def record() -> None:
        async with LocalExchange(synthetic=["BTCUSDT", "ETHUSDT"], rate=100) as ex:
            config = RecorderConfig(symbols=["BTCUSDT", "ETHUSDT"],
                                    streams=["aggTrade", "depth@100ms"], database=database,
                                    ws_url=ex.ws_url, rest_url=ex.rest_url)
            recorder = Recorder(config)
            task = asyncio.create_task(recorder.run())
            await recorder.wait_until(lambda s: s.stored["agg_trade"] >= 20, TIMEOUT)
            reader = threading.Thread(target=keep_reading)
            reader.start()
            try:
                stored = recorder.stats.stored["agg_trade"]
                # Batches keep committing while the reader reads.
                await recorder.wait_until(lambda s: s.stored["agg_trade"] >= stored + 200
                                          and len(seen) >= 3, TIMEOUT)
            finally:
                stop.set()
                await asyncio.to_thread(reader.join)
            recorder.stop()
            await asyncio.wait_for(task, TIMEOUT)

    asyncio.run(record())
    assert len(seen) >= 3
    for status in seen:
        for s in status.streams:
            assert s.rows == s.rows_last_minute and s.rows_exact  # one snapshot, all recent
    final = read_status(database)
    got = {(s.table, s.symbol): (s.rows, s.first_time, s.last_time) for s in final.streams
           if s.table in ("agg_trade", "depth_update")}
    assert got == _exact_figures(database)
    assert seen[-1].streams[0].rows is not None
    assert seen[-1].streams[0].rows <= final.streams[0].rows  # type: ignore[operator]
