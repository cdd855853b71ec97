"""``binance-streamer query`` reads recorded rows back in every output format."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from binance_streamer.cli import main
from binance_streamer.cli.query import TABLE_LIMIT
from binance_streamer.storage.base import Batch
from binance_streamer.storage.sqlite import SqliteSink
from tests.helpers import batch_of


@pytest.fixture
def filled_db(db_path: Path) -> Path:
    """A database holding 400 real aggTrades, one real ticker and one gap."""
    sink = SqliteSink(db_path)
    sink.write(batch_of("binance_spot_aggTrade.head400.jsonl", received_ns=7))
    sink.write(batch_of("binance_spot_24hrTicker.singletons.jsonl"))
    sink.write(Batch(gaps=[("btcusdt@aggTrade", 10, 12, "id gap", 5_000_000)]))
    sink.close()
    return db_path


def invoke(*args: str, columns: int = 80) -> Result:
    """``binance-streamer query ARGS`` on a terminal ``columns`` wide; stderr kept apart."""
    result = CliRunner(env={"COLUMNS": str(columns)}).invoke(
        main, ["query", *args], terminal_width=columns)
    assert result.exit_code == 0, result.output
    return result


def run(*args: str) -> str:
    return invoke(*args).stdout


def test_json_output_has_columns_as_keys(filled_db: Path) -> None:
    """--format json gives one object per row with the stored values."""
    out = json.loads(run("BTCUSDT", "--stream", "aggTrade", "--limit", "2", "--format", "json",
                         "--db", str(filled_db)))
    assert [r["agg_id"] for r in out] == [665076760, 665076761]
    assert out[0]["price"] == "58001.03000000" and out[0]["received_ns"] == 7


def test_csv_output_and_time_filters(filled_db: Path) -> None:
    """--since/--until bound the trade time of trades; CSV has a header row."""
    all_rows = json.loads(run("ETHUSDT", "--stream", "aggTrade", "--format", "json",
                              "--db", str(filled_db)))
    since, until = all_rows[3]["trade_time"], all_rows[6]["trade_time"]
    out = run("ETHUSDT", "--stream", "aggTrade", "--format", "csv", "--since", str(since),
              "--until", str(until), "--db", str(filled_db))
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert parsed and all(since <= int(r["trade_time"]) < until for r in parsed)
    assert {r["agg_id"] for r in parsed} == {
        str(r["agg_id"]) for r in all_rows if since <= r["trade_time"] < until}


def test_jsonl_and_iso_dates(filled_db: Path) -> None:
    """JSON lines output, and an ISO date-time as --since, select the 2020 ticker."""
    out = run("--stream", "ticker", "--format", "jsonl", "--since", "2020-06-19T00:00:00",
              "--db", str(filled_db))
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row["last_price"] == "9318.48000000"
    assert run("--stream", "ticker", "--since", "2021-01-01", "--format", "jsonl",
               "--db", str(filled_db)) == ""


def test_table_output_and_bookkeeping_tables(filled_db: Path) -> None:
    """The default table format prints the gaps table for a symbol."""
    out = run("BTCUSDT", "--stream", "gaps", "--db", str(filled_db))
    assert "btcusdt@aggTrade" in out and "id gap" in out


def test_missing_database_and_bad_kind_exit_2(filled_db: Path, tmp_path: Path) -> None:
    """A missing file or an unknown stream type is a clear error with exit code 2."""
    missing = CliRunner().invoke(main, ["query", "--db", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and "no database" in missing.output
    bad = CliRunner().invoke(main, ["query", "--stream", "tickers", "--db", str(filled_db)])
    assert bad.exit_code == 2 and "unknown stream type 'tickers'" in bad.output


def test_a_kline_interval_selects_only_its_candles(filled_db: Path) -> None:
    """--stream kline_5m gives the 5m candles and kline_1m the 1m ones, not every interval."""
    sink = SqliteSink(filled_db)
    sink.write(batch_of("binance_spot_kline_1m.0404.jsonl"))
    one_minute = sqlite3.connect(filled_db).execute("SELECT * FROM kline LIMIT 1").fetchone()
    five = (one_minute[1], "5m", *one_minute[3:])
    sink.write(Batch(rows={"kline": [five]}))
    sink.close()
    five_rows = json.loads(run("--stream", "kline_5m", "--format", "json", "--db", str(filled_db)))
    assert [(r["interval"], r["open_time"]) for r in five_rows] == [("5m", one_minute[3])]
    one_rows = json.loads(run("--stream", "kline_1m", "--format", "json", "--db", str(filled_db)))
    assert one_rows and {r["interval"] for r in one_rows} == {"1m"}
    assert run("--stream", "kline_1h", "--format", "jsonl", "--db", str(filled_db)) == ""


def test_the_table_view_shows_the_first_rows_and_says_more_match(filled_db: Path) -> None:
    """The table view shows 50 rows by default and says on stderr that more match."""
    result = invoke("BTCUSDT", "--stream", "aggTrade", "--db", str(filled_db))
    lines = result.stdout.splitlines()
    assert len(lines) == 2 + TABLE_LIMIT and lines[2].split()[:2] == ["665076760", "1617566591314"]
    assert "symbol" not in lines[0]  # the symbol asked for is not repeated on every line
    assert f"first {TABLE_LIMIT} rows shown, more match" in result.stderr
    assert "--limit 0 for all" in result.stderr


def test_limit_zero_shows_every_row_and_a_given_limit_says_nothing(filled_db: Path) -> None:
    """--limit 0 shows every matching row; with --limit N nothing is said about the rest."""
    every = invoke("--stream", "aggTrade", "--limit", "0", "--db", str(filled_db))
    assert len(every.stdout.splitlines()) == 2 + 400 and every.stderr == ""
    five = invoke("--stream", "aggTrade", "--limit", "5", "--db", str(filled_db))
    assert len(five.stdout.splitlines()) == 2 + 5 and five.stderr == ""
    assert len(run("--stream", "aggTrade", "--format", "jsonl", "--db", str(filled_db))
               .splitlines()) == 400


def test_columns_picks_and_orders_the_columns(filled_db: Path) -> None:
    """--columns gives exactly the named columns, in the order given, in any format."""
    out = run("BTCUSDT", "--stream", "aggTrade", "--columns", "price,agg_id", "--limit", "2",
              "--format", "csv", "--db", str(filled_db))
    assert out.splitlines() == ["price,agg_id", "58001.03000000,665076760",
                                "58001.04000000,665076761"]
    table = run("BTCUSDT", "--stream", "aggTrade", "--columns", "symbol,agg_id", "--limit", "1",
                "--db", str(filled_db))
    assert table.split() == ["symbol", "agg_id", "-------", "---------", "BTCUSDT", "665076760"]


def test_an_unknown_column_is_refused_with_the_known_ones(filled_db: Path) -> None:
    """An unknown --columns name exits 2 listing the table's columns."""
    result = CliRunner().invoke(main, ["query", "--stream", "aggTrade", "--columns", "prize",
                                       "--db", str(filled_db)])
    assert result.exit_code == 2
    assert "unknown column prize" in result.output and "buyer_is_maker" in result.output


@pytest.mark.parametrize("width", [80, 120])
def test_a_wide_stream_fits_the_terminal(filled_db: Path, width: int) -> None:
    """The 25-column ticker table fits an 80- or 120-column terminal, naming what it leaves out."""
    result = invoke("--stream", "ticker", "--db", str(filled_db), columns=width)
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["symbol", "event_time", "last_price"]
    assert "9318.48000000" in lines[2]
    assert max(len(line) for line in lines) <= width
    assert "not shown" in result.stderr or width == 120
    every = invoke("--stream", "ticker", "--all-columns", "--db", str(filled_db), columns=width)
    assert max(len(line) for line in every.stdout.splitlines()) <= width
    assert "weighted_avg_price" in every.stdout and "550340" in every.stdout


def test_iso_time_format_shows_exchange_and_receive_times_in_utc(filled_db: Path) -> None:
    """--time-format iso turns exchange ms and receive ns into UTC ISO date-times."""
    [row] = json.loads(run("BTCUSDT", "--stream", "aggTrade", "--limit", "1", "--format", "json",
                           "--time-format", "iso", "--db", str(filled_db)))
    assert row["trade_time"] == "2021-04-04T20:03:11.314Z"
    assert row["event_time"] == "2021-04-04T20:03:11.315Z"
    assert row["received_ns"] == "1970-01-01T00:00:00.000000007Z"
    assert row["agg_id"] == 665076760


def test_json_is_one_array_and_equals_json_lines(filled_db: Path) -> None:
    """The streamed --format json array holds the same objects as --format jsonl."""
    args = ("--stream", "aggTrade", "--db", str(filled_db))
    array = json.loads(run(*args, "--format", "json"))
    lines = [json.loads(line) for line in run(*args, "--format", "jsonl").splitlines()]
    assert array == lines and len(array) == 400
    assert json.loads(run(*args, "--format", "json", "--since", "2030-01-01")) == []


def test_a_table_with_no_matching_rows_says_so(filled_db: Path) -> None:
    """No rows in range: the table view prints its header and says on stderr that none match."""
    result = invoke("BTCUSDT", "--stream", "aggTrade", "--since", "2100-01-01T00:00:00",
                    "--db", str(filled_db))
    assert len(result.stdout.splitlines()) == 2 and result.stderr.strip() == "no rows match"
