"""binance-streamer export: every format gives back the stored rows, typed, streamed, idempotent."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from binance_streamer import MissingExtra, Recorder, RecorderConfig, order_books
from binance_streamer.cli import main
from binance_streamer.core.tables import TABLES
from binance_streamer.errors import ConfigError
from binance_streamer.exchange import LocalExchange
from binance_streamer.export import export
from binance_streamer.samples import bundled_session
from tests.helpers import TIMEOUT, record_capture, store_agg_trades

SYMBOLS = ["BTCUSDT", "ETHUSDT", "DOTUSDT"]
STREAMS = ["aggTrade", "depth@100ms", "kline_1m", "ticker"]
SPECS = {t.name: t for t in TABLES}
History = dict[str, list[Any]]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, History]:
    """The bundled 2021-04-04 capture (trades, depth, klines, tickers) and the 2021-04-05 one
    (book tickers), recorded into one SQLite database; what the exchange published."""
    db = tmp_path_factory.mktemp("export") / "market.db"
    history = asyncio.run(record_capture(bundled_session("cf_2021-04-04"), db, STREAMS, SYMBOLS))
    history |= asyncio.run(record_capture(bundled_session("cf_2021-04-05"), db, ["bookTicker"],
                                          ["ZILUSDT", "ETHBRL"]))
    return db, history


def _stored(db: Path, table: str, where: str = "") -> list[tuple[Any, ...]]:
    cols = ", ".join(f'"{c}"' for c in SPECS[table].column_names)
    key = ", ".join(SPECS[table].key)
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT {cols} FROM {table} {where} ORDER BY {key}").fetchall()


def _as_stored(table: pa.Table) -> list[tuple[Any, ...]]:
    """Parquet rows with times as the stored integers and booleans as 0/1."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type) or pa.types.is_boolean(field.type):
            column = column.cast(pa.int64())
        columns.append(column.to_pylist())
    return list(zip(*columns, strict=True))


def _decimals_as_stored(rows: list[tuple[Any, ...]], stored: list[tuple[Any, ...]]
                        ) -> list[tuple[Any, ...]]:
    """``stored`` with each value that is a Decimal in ``rows`` turned into a Decimal."""
    return [tuple(Decimal(s) if isinstance(r, Decimal) else s for r, s in zip(a, b, strict=True))
            for a, b in zip(rows, stored, strict=True)]


@pytest.mark.parametrize(("stream", "table"), [("aggTrade", "agg_trade"), ("kline_1m", "kline"),
                                               ("ticker", "ticker"), ("depth", "depth_update"),
                                               ("bookTicker", "book_ticker")])
def test_parquet_holds_every_stored_value_with_real_types(
        recorded: tuple[Path, History], tmp_path: Path, stream: str, table: str) -> None:
    """Parquet rows equal the stored rows: decimal128 equal to the stored strings, exchange times
    in ms and receive times in ns as UTC timestamps, booleans as booleans."""
    db, _ = recorded
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(main, ["export", "--db", str(db), "--stream", stream,
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    parquet = pq.read_table(out)
    types = dict(zip(parquet.schema.names, parquet.schema.types, strict=True))
    assert types["symbol"] == pa.string() and types["received_ns"] == pa.timestamp("ns", "UTC")
    if table == "agg_trade":
        assert types["price"] == pa.decimal128(38, 8)
        assert types["trade_time"] == pa.timestamp("ms", "UTC")
        assert types["buyer_is_maker"] == pa.bool_()
    if table == "depth_update":
        assert types["bids"] == pa.string()
    stored = _stored(db, table)
    rows = _as_stored(parquet)
    assert rows == _decimals_as_stored(rows, stored)
    assert len(rows) == len(stored) > 0


def test_float_option_writes_float64_prices(recorded: tuple[Path, History],
                                            tmp_path: Path) -> None:
    """With --float, prices and quantities are float64 equal to the stored decimal strings."""
    db, _ = recorded
    out = tmp_path / "f.parquet"
    export(db, "aggTrade", out, symbols=["DOTUSDT"], as_float=True)
    parquet = pq.read_table(out)
    assert parquet.schema.field("price").type == pa.float64()
    stored = _stored(db, "agg_trade", "WHERE symbol = 'DOTUSDT'")
    assert parquet.column("price").to_pylist() == [float(r[2]) for r in stored]


def test_the_columnar_reader_and_the_row_reader_write_the_same_parquet(
        recorded: tuple[Path, History], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the ADBC SQLite driver, the row-by-row path writes the same Parquet rows."""
    db, _ = recorded
    export(db, "kline_1m", tmp_path / "fast.parquet")
    monkeypatch.setitem(sys.modules, "adbc_driver_sqlite", None)
    export(db, "kline_1m", tmp_path / "rows.parquet")
    assert pq.read_table(tmp_path / "fast.parquet") == pq.read_table(tmp_path / "rows.parquet")


@pytest.mark.parametrize(("fmt", "compression", "opener"),
                         [("csv", "none", open), ("csv", "gzip", gzip.open),
                          ("jsonl", "zstd", None), ("jsonl", "none", open)])
def test_csv_and_json_lines_hold_the_stored_values(
        recorded: tuple[Path, History], tmp_path: Path, fmt: str, compression: str,
        opener: Any) -> None:
    """CSV and JSON lines carry each stored value exactly (decimal strings untouched), plain,
    gzip or zstd compressed."""
    db, _ = recorded
    out = tmp_path / f"t.{fmt}"
    export(db, "aggTrade", out, fmt=fmt, compression=compression)
    if opener is None:
        with pa.CompressedInputStream(pa.OSFile(str(out)), "zstd") as stream:
            text = stream.read().decode()
    else:
        with opener(out, "rt") as f:
            text = f.read()
    stored = _stored(db, "agg_trade")
    names = SPECS["agg_trade"].column_names
    bools = {"buyer_is_maker", "best_match"}
    if fmt == "csv":
        reader = csv.reader(io.StringIO(text))
        assert next(reader) == list(names)
        expected = [[("true" if v else "false") if c in bools else ("" if v is None else str(v))
                     for c, v in zip(names, r, strict=True)] for r in stored]
        assert list(reader) == expected
    else:
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines == [{c: (bool(v) if c in bools else v) for c, v in zip(names, r,
                                                                              strict=True)}
                         for r in stored]


def test_a_folder_is_partitioned_by_symbol_and_day_for_duckdb_and_polars(
        recorded: tuple[Path, History], tmp_path: Path) -> None:
    """-o DIR/ writes symbol=<S>/date=<D>/part-0.parquet files that DuckDB and polars read with
    hive partitioning, every stored row once."""
    db, _ = recorded
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", "--db", str(db), "--stream", "aggTrade",
                                       "-o", f"{out}/"])
    assert result.exit_code == 0, result.output
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet"))
    assert files == [f"symbol={s}/date=2021-04-04/part-0.parquet" for s in sorted(SYMBOLS)]
    glob = f"{out}/**/*.parquet"
    count = duckdb.sql(f"SELECT count(*), count(DISTINCT symbol) FROM "
                       f"read_parquet('{glob}', hive_partitioning=true)").fetchall()[0]
    assert count == (len(_stored(db, "agg_trade")), 3)
    frame = pl.read_parquet(glob, hive_partitioning=True)
    per_symbol = frame.group_by("symbol").len().sort("symbol").rows()
    with sqlite3.connect(db) as conn:
        assert per_symbol == conn.execute("SELECT symbol, COUNT(*) FROM agg_trade "
                                          "GROUP BY symbol ORDER BY symbol").fetchall()


def test_running_twice_replaces_exactly_its_own_files(recorded: tuple[Path, History],
                                                      tmp_path: Path) -> None:
    """A second run leaves the same files with the same rows (no duplicates, no temporary
    files) and keeps files it did not write."""
    db, _ = recorded
    out = tmp_path / "out"
    (out / "notes.txt").parent.mkdir()
    (out / "notes.txt").write_text("mine")
    first = export(db, "ticker", f"{out}/", fmt="csv")
    contents = {p: p.read_bytes() for p in first.files}
    second = export(db, "ticker", f"{out}/", fmt="csv")
    assert second.files == first.files and second.rows == first.rows
    assert {p: p.read_bytes() for p in second.files} == contents
    assert sorted(p for p in out.rglob("*") if p.is_file()) == sorted([*first.files,
                                                                      out / "notes.txt"])


def test_feed_frames_equal_what_the_exchange_published(recorded: tuple[Path, History],
                                                       tmp_path: Path) -> None:
    """The feed's frames, rebuilt from rows, equal Binance's frames for aggTrade, kline (the
    last update of each candle), depth@100ms, ticker and bookTicker, in receive order."""
    db, history = recorded
    out = tmp_path / "feed.txt.gz"
    result = CliRunner().invoke(main, ["export", "--db", str(db), "--format", "feed",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = gzip.decompress(out.read_bytes()).splitlines()
    times = [int(line.split(b" ", 1)[0]) for line in lines]
    assert times == sorted(times)
    by_stream: dict[str, list[Any]] = {}
    for line in lines:
        frame = json.loads(line.split(b" ", 1)[1])
        assert list(frame) == ["stream", "data"]
        by_stream.setdefault(frame["stream"], []).append(frame["data"])
    for stream, published in history.items():
        if "@kline" in stream:
            published = list({e["k"]["t"]: e for e in published}.values())
        assert by_stream[stream] == published, stream
        assert [list(e) for e in by_stream[stream]] == [list(e) for e in published], stream
    assert set(by_stream) == set(history)


def test_feed_of_a_raw_recording_is_the_archived_frames(tmp_path: Path) -> None:
    """With from_raw the feed holds each archived market frame verbatim, filtered by stream and
    symbol, control replies left out; by default it is rebuilt from the rows, the same frames,
    also for streams the archive lacks."""
    db = tmp_path / "raw.db"
    history = asyncio.run(record_capture(bundled_session("cf_2021-04-04"), db,
                                         ["aggTrade", "ticker"], ["DOTUSDT", "ETHUSDT"],
                                         raw=True))
    with sqlite3.connect(db) as conn:  # the archive keeps control replies too
        conn.execute("INSERT INTO raw_frame (received_ns, connection, frame) VALUES "
                     "(1, 0, '{\"result\":null,\"id\":1}')")
        archived = conn.execute("SELECT received_ns, frame FROM raw_frame ORDER BY id").fetchall()
    out = tmp_path / "feed.gz"
    export(db, "aggTrade", out, fmt="feed", symbols=["DOTUSDT"], from_raw=True)
    lines = gzip.decompress(out.read_bytes()).splitlines()
    assert lines == [b"%d %s" % (ns, f.encode()) for ns, f in archived
                     if '"stream":"dotusdt@aggTrade"' in f]
    assert [json.loads(line.split(b" ", 1)[1])["data"] for line in lines] == \
        history["dotusdt@aggTrade"]
    with sqlite3.connect(db) as conn:  # as if DOTUSDT had been recorded without --raw
        conn.execute("DELETE FROM raw_frame WHERE frame LIKE '%dotusdt@%'")
    export(db, "aggTrade", out, fmt="feed", symbols=["DOTUSDT"])  # rebuilt from the rows
    assert gzip.decompress(out.read_bytes()).splitlines() == lines


def test_book_snapshots_are_the_rebuilt_books_at_each_tick(tmp_path: Path) -> None:
    """book_snapshot_5 rows are order_books' books every --every: time, ids and 5 levels."""
    db = tmp_path / "depth.db"  # paced, so that the first snapshot comes early in the recording
    asyncio.run(record_capture(bundled_session("cf_2021-04-04"), db, ["depth@100ms"],
                               ["BTCUSDT"], speed=25))
    out = tmp_path / "books.parquet"
    result = CliRunner().invoke(main, ["export", "--db", str(db), "--stream", "book_snapshot_5",
                                       "--symbol", "BTCUSDT", "--every", "5s", "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    rows = table.to_pylist()
    first, last = (int(t.timestamp() * 1000) for t in (rows[0]["time"], rows[-1]["time"]))
    books = list(order_books(db, "BTCUSDT", first, last, depth=5, every="5s"))
    assert len(rows) == len(books) > 3
    for row, book in zip(rows, books, strict=True):
        assert row["last_update_id"] == book.last_update_id
        assert [(str(row[f"bid_price_{i}"]), str(row[f"bid_quantity_{i}"]))
                for i in range(5)] == list(book.bids)
        assert [(str(row[f"ask_price_{i}"]), str(row[f"ask_quantity_{i}"]))
                for i in range(5)] == list(book.asks)


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--stream", "nonsense"], 2, "unknown stream type 'nonsense'"),
    (["--stream", "aggTrade", "--symbol", "NOPEUSDT"], 2, "no agg_trade rows match"),
    (["--stream", "aggTrade", "--format", "csv", "--compression", "bogus"], 2, "bogus"),
])
def test_bad_input_gives_one_line_and_exit_2(recorded: tuple[Path, History], tmp_path: Path,
                                             args: list[str], code: int, message: str) -> None:
    """An unknown stream, a selection without rows or a bad option is one line on stderr."""
    db, _ = recorded
    out = tmp_path / "x.parquet"
    result = CliRunner().invoke(main, ["export", "--db", str(db), "-o", str(out), *args])
    assert result.exit_code == code
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_an_unwritable_output_gives_one_line_and_exit_2(recorded: tuple[Path, History],
                                                        tmp_path: Path) -> None:
    """-o under a regular file cannot be written: one line naming the path, exit 2."""
    db, _ = recorded
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(main, ["export", "--db", str(db), "--stream", "ticker",
                                       "--format", "csv", "-o", str(tmp_path / "file" / "x")])
    assert result.exit_code == 2
    assert result.output.startswith("error: cannot write") and len(result.output.splitlines()) == 1


def test_parquet_without_pyarrow_names_the_extra(recorded: tuple[Path, History], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pyarrow, a Parquet export raises MissingExtra naming the 'parquet' extra."""
    db, _ = recorded
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingExtra, match=r"binance-streamer\[parquet\]"):
        export(db, "aggTrade", tmp_path / "x.parquet")
    assert list(tmp_path.iterdir()) == []


def test_csv_needs_no_pyarrow(recorded: tuple[Path, History], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """CSV export works without pyarrow installed."""
    db, _ = recorded
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert export(db, "ticker", tmp_path / "t.csv", fmt="csv").rows == len(_stored(db, "ticker"))


def test_tabular_formats_take_one_stream(recorded: tuple[Path, History], tmp_path: Path) -> None:
    """Asking a tabular format for two streams, or a feed into a folder, is a ConfigError."""
    db, _ = recorded
    with pytest.raises(ConfigError, match="one stream at a time"):
        export(db, ["aggTrade", "ticker"], tmp_path / "x.csv", fmt="csv")
    with pytest.raises(ConfigError, match="one file"):
        export(db, None, f"{tmp_path}/", fmt="feed")


def test_a_postgresql_recording_exports_the_same_rows(pg_url: str, tmp_path: Path) -> None:
    """Recorded into PostgreSQL, export writes the rows SQLite would: Parquet, hive folders and
    the feed (read through server-side cursors)."""
    sqlite_db = tmp_path / "same.db"
    capture, streams = bundled_session("cf_2021-04-04"), ["aggTrade", "kline_1m"]
    asyncio.run(record_capture(capture, pg_url, streams, ["ETHUSDT"]))
    history = asyncio.run(record_capture(capture, sqlite_db, streams, ["ETHUSDT"]))
    for db, name in ((pg_url, "pg"), (sqlite_db, "lite")):
        export(db, "aggTrade", tmp_path / f"{name}.parquet")
        export(db, "kline_1m", f"{tmp_path / name}/", fmt="jsonl")
        export(db, None, tmp_path / f"{name}.feed.gz", fmt="feed")
    pg, lite = pq.read_table(tmp_path / "pg.parquet"), pq.read_table(tmp_path / "lite.parquet")
    assert pg.drop_columns(["received_ns"]) == lite.drop_columns(["received_ns"])
    assert pg.num_rows == len(history["ethusdt@aggTrade"])
    part = "symbol=ETHUSDT/date=2021-04-04/part-0.jsonl"
    drop = {"received_ns", "source"}

    def klines(name: str) -> list[dict[str, Any]]:
        lines = (tmp_path / name / part).read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]

    assert klines("pg") == klines("lite")
    frames = [[msgspec.json.decode(line.split(b" ", 1)[1])
               for line in gzip.decompress((tmp_path / f"{n}.feed.gz").read_bytes()).splitlines()]
              for n in ("pg", "lite")]
    assert sorted(frames[0], key=json.dumps) == sorted(frames[1], key=json.dumps)


def test_a_partition_met_again_gets_a_part_of_its_own(tmp_path: Path) -> None:
    """Rows leaving a day and coming back to it (ids out of time order) land in a second part
    file of that day: one partition is open at a time, and no row is lost."""
    db, day = tmp_path / "days.db", 86_400_000
    store_agg_trades(db, [(1, day), (2, 2 * day), (3, day + 5)])
    export(db, "aggTrade", f"{tmp_path / 'out'}/", fmt="csv")
    files = sorted(p.relative_to(tmp_path / "out").as_posix()
                   for p in (tmp_path / "out").rglob("*.csv"))
    assert files == ["symbol=BTCUSDT/date=1970-01-02/part-0.csv",
                     "symbol=BTCUSDT/date=1970-01-02/part-1.csv",
                     "symbol=BTCUSDT/date=1970-01-03/part-0.csv"]
    ids = sorted(int(line.split(",")[1]) for f in files
                 for line in (tmp_path / "out" / f).read_text().splitlines()[1:])
    assert ids == [1, 2, 3]


def test_the_format_follows_the_output_suffix(tmp_path: Path) -> None:
    """Without --format, -o trades.csv.gz writes gzipped CSV, not Parquet in a .csv file."""
    db = tmp_path / "one.db"
    store_agg_trades(db, [(1, 1000)])
    out = tmp_path / "trades.csv.gz"
    result = CliRunner().invoke(main, ["export", "--db", str(db), "--stream", "aggTrade",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert gzip.decompress(out.read_bytes()).decode().splitlines()[1].startswith("BTCUSDT,1,")


def test_feed_depth_streams_get_their_recorded_speeds(tmp_path: Path) -> None:
    """Speeds are not stored: the feed names each depth stream by how often its rows came,
    per symbol and level count (depth10 at 1000 ms beside depth5@100ms and depth@100ms)."""
    db = tmp_path / "depth.db"
    streams = ["depth10", "depth5@100ms", "depth@100ms"]

    async def record() -> None:
        async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
            config = RecorderConfig(symbols=["BTCUSDT"], streams=streams, database=db,
                                    ws_url=ex.ws_url, rest_url=ex.rest_url)
            recorder = Recorder(config)
            task = asyncio.create_task(recorder.run())
            await recorder.wait_until(lambda s: s.stored["partial_depth"] >= 40, TIMEOUT)
            recorder.stop()
            await asyncio.wait_for(task, TIMEOUT)

    asyncio.run(record())
    out = tmp_path / "feed.gz"
    export(db, None, out, fmt="feed")
    names = {json.loads(line.split(b" ", 1)[1])["stream"]
             for line in gzip.decompress(out.read_bytes()).splitlines()}
    assert names == {f"btcusdt@{s}" for s in streams}


def test_from_raw_without_an_archive_says_how_to_get_frames(tmp_path: Path) -> None:
    """--from-raw on a recording made without --raw is one line naming both ways out, exit 2."""
    from binance_streamer.storage.open import open_sink

    db = tmp_path / "plain.db"
    open_sink(db).close()
    result = CliRunner().invoke(main, ["export", "--db", str(db), "--format", "feed",
                                       "--from-raw", "-o", str(tmp_path / "f.gz")])
    assert result.exit_code == 2 and "record --raw" in result.output
    assert "leave out --from-raw" in result.output
