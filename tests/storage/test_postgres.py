"""PostgreSQL storage against the real local server: same schema, same idempotency."""

from __future__ import annotations

import psycopg
import pytest

from binance_streamer.core.tables import AGG_TRADE
from binance_streamer.errors import SchemaTooNew
from binance_streamer.storage.base import Batch
from binance_streamer.storage.postgres import PostgresSink, _redact
from binance_streamer.storage.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    TIME_INDEXES,
    insert_sql,
)
from tests.helpers import batch_of
from tests.storage.helpers import EXPECTED_GAPS, GAPS_SQL, gaps_after_silences


def test_batches_are_idempotent_and_exact(pg_url: str) -> None:
    """Writing the same 400 aggTrades twice stores them once, prices byte-identical."""
    sink = PostgresSink(pg_url)
    assert sink.write(batch_of("binance_spot_aggTrade.head400.jsonl")).stored == {"agg_trade": 400}
    assert sink.write(batch_of("binance_spot_aggTrade.head400.jsonl")).stored == {"agg_trade": 0}
    sink.close()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT price, quantity, buyer_is_maker FROM agg_trade WHERE symbol = %s "
            "ORDER BY agg_id LIMIT 1", ("BTCUSDT",)
        ).fetchone()
    assert row == ("58001.03000000", "0.08620500", True)


def test_schema_migrates_once_and_has_the_tutorial_view(pg_url: str) -> None:
    """Opening twice migrates once; market_data gives (id, symbol, price, timestamp)."""
    PostgresSink(pg_url).close()
    sink = PostgresSink(pg_url)
    sink.write(batch_of("binance_spot_24hrTicker.singletons.jsonl"))
    sink.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == [
            (v,) for v in range(1, SCHEMA_VERSION + 1)]
        assert conn.execute("SELECT symbol, price, timestamp FROM market_data").fetchall() == [
            ("BTCUSDT", 9318.48, 1592593727005)]


def test_kline_upsert_and_gaps_work_in_postgres(pg_url: str) -> None:
    """The latest open-kline update wins; gap rows are stored once and marked filled."""
    sink = PostgresSink(pg_url)
    sink.write(batch_of("binance_spot_kline_1m.0404.jsonl"))
    sink.write(Batch(gaps=[("btcusdt@aggTrade", 5, 9, "id gap", 1)] * 2,
                     gap_fills=[(2, 5, "btcusdt@aggTrade", 5, 9)]))
    # Resume from the last stored candle, here one stored mid-candle (not closed).
    assert sink.last_ids(["ethusdt@kline_1m"]) == {"ethusdt@kline_1m": (1617566640000, False)}
    sink.close()
    with psycopg.connect(pg_url) as conn:
        closed = conn.execute(
            "SELECT is_closed, close FROM kline WHERE symbol='ETHUSDT' ORDER BY open_time"
        ).fetchall()
        gaps = conn.execute("SELECT first_missing, filled_ns, rows_filled FROM gaps").fetchall()
    assert closed[0][0] is True and gaps == [(5, 2, 5)]


def test_passwords_never_reach_messages() -> None:
    """A URL's password is masked wherever the sink prints it."""
    assert _redact("postgresql://bob:secret@h/db") == "postgresql://bob:***@h/db"
    assert _redact("postgresql://bob@h/db") == "postgresql://bob@h/db"


def test_a_silence_end_extends_only_its_stale_gap_in_postgres(pg_url: str) -> None:
    """In PostgreSQL too, a silence end sets last_missing of its 'stale' gap only, atomically."""
    def read() -> list[tuple[object, ...]]:
        with psycopg.connect(pg_url) as conn:
            return conn.execute(GAPS_SQL).fetchall()
    assert gaps_after_silences(PostgresSink(pg_url), read) == EXPECTED_GAPS


def test_a_newer_postgres_schema_is_refused(pg_url: str) -> None:
    """A PostgreSQL database of a newer binance-streamer raises SchemaTooNew when opened."""
    PostgresSink(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew):
        PostgresSink(pg_url)


def test_a_version_1_database_gains_the_read_indexes_on_open(pg_url: str) -> None:
    """Opening a schema-1 PostgreSQL database migrates it to the current version: the read
    indexes exist, ordered by id after time, and the stored rows are intact."""
    rows = batch_of("binance_spot_aggTrade.head400.jsonl").rows["agg_trade"]
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for sql in MIGRATIONS[1]("postgres"):
            conn.execute(sql)
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.cursor().executemany(insert_sql(AGG_TRADE, "postgres"), rows)
    PostgresSink(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone() == (
            SCHEMA_VERSION,)
        indexes = dict(conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE '%\\_by\\_time'"))
        assert set(indexes) == {f"{t}_by_time" for t in TIME_INDEXES}
        assert indexes["block_trade_by_time"].endswith("(symbol, trade_time, id)")
        stored = conn.execute(f"SELECT {', '.join(AGG_TRADE.column_names)} FROM agg_trade "
                              "ORDER BY id").fetchall()
    assert stored == [tuple(r) for r in rows]
