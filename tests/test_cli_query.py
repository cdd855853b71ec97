"""``binance-streamer query`` reads recorded rows back in every output format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from binance_streamer.cli import main
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


def run(*args: str) -> str:
    result = CliRunner().invoke(main, ["query", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_json_output_has_columns_as_keys(filled_db: Path) -> None:
    """--format json gives one object per row with the stored values."""
    out = json.loads(run("BTCUSDT", "--stream", "aggTrade", "--limit", "2", "--format", "json",
                         "--db", str(filled_db)))
    assert [r["agg_id"] for r in out] == [665076760, 665076761]
    assert out[0]["price"] == "58001.03000000" and out[0]["received_ns"] == 7


def test_csv_output_and_time_filters(filled_db: Path) -> None:
    """--since/--until bound the event time; CSV has a header row."""
    all_rows = json.loads(run("ETHUSDT", "--stream", "aggTrade", "--format", "json",
                              "--db", str(filled_db)))
    since, until = all_rows[3]["event_time"], all_rows[6]["event_time"]
    out = run("ETHUSDT", "--stream", "aggTrade", "--format", "csv", "--since", str(since),
              "--until", str(until), "--db", str(filled_db))
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert parsed and all(since <= int(r["event_time"]) < until for r in parsed)
    assert {r["agg_id"] for r in parsed} == {
        str(r["agg_id"]) for r in all_rows if since <= r["event_time"] < until}


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
