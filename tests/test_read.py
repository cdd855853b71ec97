"""binance_streamer.read: recorded rows as pandas, polars or Arrow, typed as the Parquet export."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import binance_streamer
from binance_streamer import MissingExtra
from binance_streamer.errors import ConfigError, InvalidStreamName
from binance_streamer.export import export
from binance_streamer.samples import bundled_session
from tests.helpers import record_capture


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite recording of the bundled capture's trades and klines."""
    path = tmp_path_factory.mktemp("read") / "market.db"
    asyncio.run(record_capture(bundled_session("cf_2021-04-04"), path, ["aggTrade", "kline_1m"],
                               ["BTCUSDT", "DOTUSDT"]))
    return path


def _stored(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def test_arrow_has_the_parquet_exports_types_and_rows(db: Path, tmp_path: Path) -> None:
    """read(..., as_='arrow') is the table the Parquet export writes, row for row."""
    table = binance_streamer.read(db, "aggTrade", as_="arrow")
    export(db, "aggTrade", tmp_path / "a.parquet")
    assert table == pq.read_table(tmp_path / "a.parquet")
    assert table.schema.field("price").type == pa.decimal128(38, 8)
    assert table.schema.field("trade_time").type == pa.timestamp("ms", "UTC")
    assert table.schema.field("received_ns").type == pa.timestamp("ns", "UTC")
    prices = _stored(db, "SELECT price FROM agg_trade ORDER BY symbol, agg_id")
    assert table.column("price").to_pylist() == [Decimal(str(p[0])) for p in prices]


def test_pandas_frame_keeps_decimals_utc_times_and_booleans(db: Path) -> None:
    """The pandas DataFrame holds exact Decimals, UTC datetimes and booleans."""
    frame = binance_streamer.read(db, "aggTrade", symbol="DOTUSDT")
    stored = _stored(db, "SELECT agg_id, price, trade_time, buyer_is_maker FROM agg_trade "
                         "WHERE symbol = 'DOTUSDT' ORDER BY agg_id")
    assert isinstance(frame, pd.DataFrame) and set(frame["symbol"]) == {"DOTUSDT"}
    assert list(frame["agg_id"]) == [r[0] for r in stored]
    assert list(frame["price"]) == [Decimal(str(r[1])) for r in stored]
    assert str(frame["trade_time"].dt.tz) == "UTC"
    assert [int(t.value // 1_000_000) for t in frame["trade_time"]] == [r[2] for r in stored]
    assert list(frame["buyer_is_maker"]) == [bool(r[3]) for r in stored]


def test_polars_frame_filters_by_kline_interval_symbol_and_time(db: Path) -> None:
    """kline_1m reads only 1m candles of the symbol whose open time is in [since, until)."""
    opens = [r[0] for r in _stored(db, "SELECT open_time FROM kline WHERE symbol = 'BTCUSDT' "
                                       "AND interval = '1m' ORDER BY open_time")]
    assert len(opens) >= 2
    frame = binance_streamer.read(db, "kline_1m", "BTCUSDT", since=opens[1], until=opens[-1] + 1,
                                  as_="polars")
    assert isinstance(frame, pl.DataFrame)
    assert frame["interval"].to_list() == ["1m"] * (len(opens) - 1)
    assert frame["open_time"].dtype == pl.Datetime("ms", "UTC")
    assert [int(t.timestamp() * 1000) for t in frame["open_time"].to_list()] == opens[1:]


def test_no_rows_give_an_empty_typed_frame(db: Path) -> None:
    """A selection without rows is an empty table with the same columns and types."""
    table = binance_streamer.read(db, "aggTrade", symbol="NOPEUSDT", as_="arrow")
    assert table.num_rows == 0
    assert table.schema.field("quantity").type == pa.decimal128(38, 8)


def test_bad_arguments_and_missing_libraries_are_named(db: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown stream, an unknown as_ and a missing pyarrow or polars each raise a clear
    error."""
    with pytest.raises(InvalidStreamName, match="nonsense"):
        binance_streamer.read(db, "nonsense")
    with pytest.raises(ConfigError, match="as_"):
        binance_streamer.read(db, "aggTrade", as_="excel")  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(MissingExtra, match=r"\[polars\]"):
        binance_streamer.read(db, "aggTrade", as_="polars")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingExtra, match=r"\[parquet\]"):
        binance_streamer.read(db, "aggTrade", as_="arrow")


def test_read_is_public_api() -> None:
    """read is exported from the package."""
    assert "read" in binance_streamer.__all__
