"""``binance-streamer history``: the past over REST into the recorded tables, each row once."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from click.testing import CliRunner, Result

from binance_streamer.cli import main
from binance_streamer.core.rest_payloads import RestAggTrade, RestTrade
from binance_streamer.core.tables import KLINE, TRADE, agg_trade_rows, kline_rows, trade_rows
from binance_streamer.errors import ConfigError, RateLimited
from binance_streamer.exchange import BUNDLED_SESSIONS, Limits, LocalExchange
from binance_streamer.history import (
    HistoryProgress,
    Pacing,
    fetch_history,
    missing_spans,
)
from binance_streamer.io.rest import RestClient
from binance_streamer.recorder import Recorder, RecorderConfig
from binance_streamer.storage.sqlite import SqliteSink
from tests.helpers import TIMEOUT, wait_for_rows

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
AGG_COLUMNS = ("symbol, agg_id, price, quantity, first_trade_id, last_trade_id, trade_time, "
               "buyer_is_maker, best_match, event_time, received_ns, source")


@pytest.fixture
async def replayed() -> AsyncIterator[LocalExchange]:
    """The bundled sample, replayed to its end: its REST history is complete and fixed."""
    async with LocalExchange(replay=BUNDLED_SESSIONS, speed=None, start="manual") as ex:
        await ex.start()
        await asyncio.wait_for(ex.finished(), TIMEOUT)
        yield ex


def window(ex: LocalExchange, symbol: str) -> tuple[int, int]:
    """A range inside ``symbol``'s replayed trades: 10 s after the first, 10 s before the last."""
    times = ex.market.symbols[symbol].agg_times
    return times[0] + 10_000, times[-1] - 10_000


def expected_aggs(ex: LocalExchange, symbol: str, since: int, until: int) -> list[tuple[Any, ...]]:
    """The exchange's own aggregate trades of ``symbol`` in the range, as stored rows."""
    items = [r.rest_row() for r in ex.market.symbols[symbol].aggs if since <= r.time <= until]
    return agg_trade_rows(symbol, msgspec.convert(items, list[RestAggTrade]))


def stored(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]


def stored_aggs(db: Path, symbol: str) -> list[tuple[Any, ...]]:
    rows = stored(db, f"SELECT {AGG_COLUMNS} FROM agg_trade WHERE symbol = ? ORDER BY agg_id",
                  symbol)
    return [(*r[:7], bool(r[7]), bool(r[8]), *r[9:]) for r in rows]


async def rest_klines(ex: LocalExchange, symbol: str, since: int, until: int
                      ) -> list[tuple[Any, ...]]:
    """The exchange's REST klines of the range, as stored rows (closed: the sample is past)."""
    async with RestClient(ex.rest_url) as rest:
        items = await rest.klines(symbol, "1m", since, until)
    return kline_rows(symbol, "1m", items, 2**62)


def stored_klines(db: Path, symbol: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(f'"{c}"' for c in KLINE.column_names)
    rows = stored(db, f"SELECT {columns} FROM kline WHERE symbol = ? ORDER BY open_time", symbol)
    return [(*r[:12], bool(r[12]), *r[13:]) for r in rows]


async def traded(ex: LocalExchange, symbol: str, n: int) -> None:
    """Wait until the synthetic ``symbol`` has made ``n`` aggregate trades (polled: the
    synthetic market signals nothing per trade)."""
    async with asyncio.timeout(TIMEOUT):
        while len(ex.market.symbols[symbol].aggs) < n:  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.02)


async def invoke(*args: str) -> Result:
    """Run the CLI in a thread (it runs its own event loop) while the exchange serves here."""
    return await asyncio.to_thread(CliRunner().invoke, main, ["history", *args])


# -- what is stored --------------------------------------------------------------------------


async def test_agg_trades_and_klines_of_the_range_equal_the_exchanges_own(
        replayed: LocalExchange, db_path: Path) -> None:
    """Every aggregate trade of the range is stored once with the exchange's values, and the
    1m klines equal the exchange's REST klines of the range."""
    ex = replayed
    for symbol in SYMBOLS:
        since, until = window(ex, symbol)
        await fetch_history(db_path, [symbol], ["aggTrade", "kline_1m"], since, until,
                            rest_url=ex.rest_url)
        assert stored_aggs(db_path, symbol) == expected_aggs(ex, symbol, since, until)
        assert stored_klines(db_path, symbol) == await rest_klines(ex, symbol, since, until)
    assert stored(db_path, "SELECT DISTINCT source FROM agg_trade") == [("rest",)]


async def test_a_second_run_stores_nothing_new(replayed: LocalExchange, db_path: Path) -> None:
    """Re-running the same range stores 0 rows and fetches no page it holds already."""
    since, until = window(replayed, "BTCUSDT")
    first = await fetch_history(db_path, ["BTCUSDT"], ["aggTrade", "kline_1m"], since, until,
                                rest_url=replayed.rest_url)
    again = await fetch_history(db_path, ["BTCUSDT"], ["aggTrade", "kline_1m"], since, until,
                                rest_url=replayed.rest_url)
    assert first.stored["btcusdt@aggTrade"] > 0 and first.stored["btcusdt@kline_1m"] > 0
    assert again.total_stored == 0
    assert again.fetched["btcusdt@aggTrade"] <= 1  # only the check past the stored end


async def test_trades_start_at_the_first_trade_of_the_agg_trade_at_since(db_path: Path) -> None:
    """historicalTrades pages from the aggregate trade at ``since``'s first trade id: every
    trade of the range is stored once, equal to the exchange's."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=1000) as ex:
        await traded(ex, "BTCUSDT", 1200)
        state = ex.market.symbols["BTCUSDT"]
        since, until = state.agg_times[100], state.agg_times[1150]
        stats = await fetch_history(db_path, ["BTCUSDT"], ["trade"], since, until,
                                    rest_url=ex.rest_url)
        first_trade = state.aggs[100].first_id
        wanted = [t for t in state.trades if t["id"] >= first_trade and t["time"] <= until]
    expected = trade_rows("BTCUSDT", msgspec.convert(wanted, list[RestTrade]))
    columns = ", ".join(TRADE.column_names)
    rows = stored(db_path, f"SELECT {columns} FROM trade ORDER BY trade_id")
    assert [(*r[:5], bool(r[5]), bool(r[6]), *r[7:]) for r in rows] == expected
    assert stats.stored["btcusdt@trade"] == len(expected) > 1000  # more than one page


async def test_a_cancelled_run_resumes_where_it_stopped(replayed: LocalExchange,
                                                         db_path: Path) -> None:
    """A run cancelled after its first page keeps that page; the rerun fetches only the rest
    and every id of the range ends up stored once."""
    symbol = "BTCUSDT"
    since, until = replayed.market.symbols[symbol].agg_times[0], 2**62
    task: asyncio.Task[Any] | None = None

    def cancel_after_first_page(p: HistoryProgress) -> None:
        if p.fetched and task is not None:
            task.cancel()

    task = asyncio.create_task(fetch_history(
        db_path, [symbol], ["aggTrade"], since, until, rest_url=replayed.rest_url,
        progress=cancel_after_first_page))
    with pytest.raises(asyncio.CancelledError):
        await task
    kept = len(stored_aggs(db_path, symbol))
    rerun = await fetch_history(db_path, [symbol], ["aggTrade"], since, until,
                                rest_url=replayed.rest_url)
    expected = expected_aggs(replayed, symbol, since, until)
    assert kept == 1000 < len(expected)
    assert rerun.fetched["btcusdt@aggTrade"] == len(expected) - kept
    assert stored_aggs(db_path, symbol) == expected


async def test_a_microsecond_database_gets_microsecond_history(replayed: LocalExchange,
                                                               db_path: Path) -> None:
    """Into a database recorded with --microseconds, history asks for and stores µs times."""
    sink = SqliteSink(db_path)
    assert sink.meta("time_unit", "microsecond") == "microsecond"
    sink.close()
    since, until = window(replayed, "ETHUSDT")
    await fetch_history(db_path, ["ETHUSDT"], ["aggTrade", "kline_1m"], since, until,
                        rest_url=replayed.rest_url)
    times = [r[6] for r in expected_aggs(replayed, "ETHUSDT", since, until)]
    assert [r[6] for r in stored_aggs(db_path, "ETHUSDT")] == [t * 1000 for t in times]
    klines = await rest_klines(replayed, "ETHUSDT", since, until)
    assert [r[2] for r in stored_klines(db_path, "ETHUSDT")] == [k[2] * 1000 for k in klines]


async def test_only_the_spans_around_stored_rows_are_fetched(replayed: LocalExchange,
                                                             db_path: Path) -> None:
    """With the middle of a range stored already, a run over the whole range fetches only the
    ids before and after it."""
    times = replayed.market.symbols["BTCUSDT"].agg_times
    await fetch_history(db_path, ["BTCUSDT"], ["aggTrade"], times[300], times[600],
                        rest_url=replayed.rest_url)
    stats = await fetch_history(db_path, ["BTCUSDT"], ["aggTrade"], times[0], times[-1],
                                rest_url=replayed.rest_url)
    expected = expected_aggs(replayed, "BTCUSDT", times[0], times[-1])
    middle = expected_aggs(replayed, "BTCUSDT", times[300], times[600])
    assert stats.fetched["btcusdt@aggTrade"] == len(expected) - len(middle)
    assert stored_aggs(db_path, "BTCUSDT") == expected


def test_missing_spans_are_the_complement_of_the_stored_runs() -> None:
    """Keys between, before and after stored runs are missing; the last span is open."""
    assert missing_spans([], 10, 1) == [(10, None)]
    assert missing_spans([(10, 19), (25, 30)], 10, 1) == [(20, 24), (31, None)]
    assert missing_spans([(12, 19)], 10, 1) == [(10, 11), (20, None)]
    assert missing_spans([(0, 60_000), (180_000, 180_000)], 0, 60_000) == [
        (120_000, 120_000), (240_000, None)]


# -- pacing and rate limits --------------------------------------------------------------------


async def test_429s_are_waited_out_and_the_run_completes(replayed: LocalExchange,
                                                          db_path: Path) -> None:
    """Two 429 answers (one on the symbol check) are waited out for their Retry-After and
    retried; the run completes with every row."""
    since, until = window(replayed, "ETHUSDT")
    replayed.faults.rest_error(429, times=2, retry_after=0)
    stats = await fetch_history(db_path, ["ETHUSDT"], ["aggTrade"], since, until,
                                rest_url=replayed.rest_url)
    assert stats.rate_limited == 2
    assert stored_aggs(db_path, "ETHUSDT") == expected_aggs(replayed, "ETHUSDT", since, until)


async def test_a_418_stops_the_run_saying_when_to_retry(replayed: LocalExchange,
                                                         db_path: Path) -> None:
    """A ban (418) after the first page stops the run with the time to retry; the page fetched
    before it stays stored."""
    since, until = replayed.market.symbols["BTCUSDT"].agg_times[0], 2**62

    def ban_after_first_page(p: HistoryProgress) -> None:
        if p.fetched and not replayed.faults.rest:
            replayed.faults.rest_error(418, times=5, retry_after=120)

    with pytest.raises(RateLimited) as caught:
        await fetch_history(db_path, ["BTCUSDT"], ["aggTrade"], since, until,
                            rest_url=replayed.rest_url, progress=ban_after_first_page)
    assert caught.value.status == 418
    assert "retry after" in str(caught.value) and "(in 120s)" in str(caught.value)
    assert len(stored_aggs(db_path, "BTCUSDT")) == 1000


async def test_the_weight_budget_waits_for_the_next_window_instead_of_a_429(
        db_path: Path) -> None:
    """With a small weight limit, requests wait for the next weight window and the exchange
    never answers 429."""
    limits = Limits(rest_weight_per_min=25, rest_window_s=0.5)
    async with LocalExchange(replay=BUNDLED_SESSIONS, speed=None, start="manual",
                             limits=limits) as ex:
        await ex.start()
        await asyncio.wait_for(ex.finished(), TIMEOUT)
        since = ex.market.symbols["BTCUSDT"].agg_times[0]
        stats = await fetch_history(db_path, ["BTCUSDT", "ETHUSDT", "DOTUSDT"], ["aggTrade"],
                                    since, 2**62, rest_url=ex.rest_url,
                                    pacing=Pacing(weight_limit=25, window_s=0.5))
    assert stats.weight_waits >= 1 and stats.rate_limited == 0
    assert stats.stored["btcusdt@aggTrade"] == len(expected_aggs(ex, "BTCUSDT", since, 2**62))


# -- beside live recording, and PostgreSQL -----------------------------------------------------


async def test_history_beside_a_live_recorder_joins_its_rows_without_a_gap(
        db_path: Path) -> None:
    """While a recorder writes the same SQLite file, history fills the ids before it: the ids
    from ``since`` on are stored once each and contiguous, the old ones from REST."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=200) as ex:
        await traded(ex, "BTCUSDT", 300)
        since = ex.market.symbols["BTCUSDT"].agg_times[0]
        recorder = Recorder(RecorderConfig(symbols=["BTCUSDT"], streams=["aggTrade"],
                                           database=db_path, ws_url=ex.ws_url,
                                           rest_url=ex.rest_url))
        task = asyncio.create_task(recorder.run())
        await recorder.wait_until(lambda s: s.total_messages >= 20 and recorder.flushed,
                                  TIMEOUT)
        await fetch_history(db_path, ["BTCUSDT"], ["aggTrade"], since, rest_url=ex.rest_url)
        recorder.stop()
        await asyncio.wait_for(task, TIMEOUT)
    ids = [r[0] for r in stored(db_path, "SELECT agg_id FROM agg_trade ORDER BY agg_id")]
    assert ids == list(range(ids[0], ids[-1] + 1))
    assert ids[0] == ex.market.symbols["BTCUSDT"].aggs[0].agg_id
    sources = dict(stored(db_path, "SELECT source, COUNT(*) FROM agg_trade GROUP BY source"))
    assert sources["rest"] >= 300 and sources["ws"] >= 20


async def test_history_after_a_stopped_recording_leaves_its_hole_to_the_next_run(
        db_path: Path) -> None:
    """History of a range starting after a stopped recording's last id records the ids in
    between as an open gap, and the next recorder run fills it: every id once, no hole."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=200) as ex:
        config = RecorderConfig(symbols=["BTCUSDT"], streams=["aggTrade"], database=db_path,
                                ws_url=ex.ws_url, rest_url=ex.rest_url)
        recorder = Recorder(config)
        task = asyncio.create_task(recorder.run())
        await recorder.wait_until(lambda s: s.total_messages >= 20 and recorder.flushed,
                                  TIMEOUT)
        recorder.stop()
        await asyncio.wait_for(task, TIMEOUT)
        [(last,)] = stored(db_path, "SELECT MAX(agg_id) FROM agg_trade")
        await traded(ex, "BTCUSDT", len(ex.market.symbols["BTCUSDT"].aggs) + 100)
        since = ex.market.symbols["BTCUSDT"].agg_times[-1]
        await fetch_history(db_path, ["BTCUSDT"], ["aggTrade"], since, rest_url=ex.rest_url)
        [(first_after,)] = stored(db_path, "SELECT MIN(agg_id) FROM agg_trade WHERE agg_id > ?",
                                  last)
        assert stored(db_path, "SELECT stream, first_missing, last_missing FROM gaps") == [
            ("btcusdt@aggTrade", last + 1, first_after - 1)]
        again = Recorder(config)
        task = asyncio.create_task(again.run())
        await again.wait_until(lambda s: s.gaps_filled >= 1 and again.flushed, TIMEOUT)
        again.stop()
        await asyncio.wait_for(task, TIMEOUT)
    ids = [r[0] for r in stored(db_path, "SELECT agg_id FROM agg_trade ORDER BY agg_id")]
    assert ids == list(range(ids[0], ids[-1] + 1))


async def test_recent_candles_are_stored_open_for_the_live_stream_to_close(
        db_path: Path) -> None:
    """Candles that closed less than a margin before the request are stored open, so a local
    clock ahead of the exchange's never seals a candle the live stream still updates."""
    from binance_streamer.history import CLOSED_MARGIN_MS

    async with LocalExchange(synthetic=["BTCUSDT"], rate=200) as ex:
        await traded(ex, "BTCUSDT", 600)
        since = ex.market.symbols["BTCUSDT"].agg_times[0]
        await fetch_history(db_path, ["BTCUSDT"], ["kline_1s"], since, rest_url=ex.rest_url)
    rows = stored(db_path, "SELECT close_time, is_closed FROM kline")
    assert len(rows) >= 2 and CLOSED_MARGIN_MS >= 10_000
    assert not [close for close, is_closed in rows if is_closed]  # all within the margin


async def test_history_into_postgresql_is_stored_once(replayed: LocalExchange,
                                                      pg_url: str) -> None:
    """Into PostgreSQL, the range is stored as from the exchange and a rerun stores 0 rows."""
    since, until = window(replayed, "ETHUSDT")
    first = await fetch_history(pg_url, ["ETHUSDT"], ["aggTrade", "kline_1m"], since, until,
                                rest_url=replayed.rest_url)
    again = await fetch_history(pg_url, ["ETHUSDT"], ["aggTrade", "kline_1m"], since, until,
                                rest_url=replayed.rest_url)
    with psycopg.connect(pg_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT agg_id FROM agg_trade ORDER BY agg_id")]
    assert ids == [r[1] for r in expected_aggs(replayed, "ETHUSDT", since, until)]
    assert first.total_stored > 0 and again.total_stored == 0


# -- the command ------------------------------------------------------------------------------


async def test_the_command_reports_each_stream_and_the_rows_stored(replayed: LocalExchange,
                                                                   db_path: Path) -> None:
    """``history`` prints a line per finished stream and a summary, and exits 0."""
    since, until = window(replayed, "BTCUSDT")
    result = await invoke("BTCUSDT", "--streams", "aggTrade,kline_1m", "--since", str(since),
                          "--until", str(until), "--db", str(db_path),
                          "--rest-url", replayed.rest_url)
    assert result.exit_code == 0, result.output
    n = len(expected_aggs(replayed, "BTCUSDT", since, until))
    assert f"btcusdt@aggTrade: {n:,} rows fetched, {n:,} new" in result.stderr
    assert "btcusdt@kline_1m:" in result.stderr
    assert result.stdout.startswith("Stored ") and f"into {db_path}" in result.stdout


async def test_the_command_exits_1_on_a_ban_with_the_time_to_retry(replayed: LocalExchange,
                                                                   db_path: Path) -> None:
    """A 418 ends the command with exit 1 and one line saying when to retry."""
    replayed.faults.rest_error(418, times=3, retry_after=300)
    result = await invoke("BTCUSDT", "--since", "2021-04-04T20:00:00", "--db", str(db_path),
                          "--rest-url", replayed.rest_url)
    assert result.exit_code == 1
    assert "banned" in result.stderr and "retry after" in result.stderr
    assert "Traceback" not in result.output


async def test_ctrl_c_keeps_every_page_and_the_rerun_completes(replayed: LocalExchange,
                                                                db_path: Path) -> None:
    """SIGINT during a run exits 130 saying how to resume, with the pages fetched stored; the
    same command again stores the rest, each row once."""
    replayed.faults.rest_slow(0.5, times=50)
    args = ["BTCUSDT", "--since", str(replayed.market.symbols["BTCUSDT"].agg_times[0]),
            "--db", str(db_path), "--rest-url", replayed.rest_url]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "binance_streamer", "history", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await wait_for_rows(db_path, "agg_trade", 1000)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 130 and "run the same command again" in err.decode()
    assert len(stored_aggs(db_path, "BTCUSDT")) == 1000
    replayed.faults.rest.clear()
    assert (await invoke(*args)).exit_code == 0
    assert stored_aggs(db_path, "BTCUSDT") == expected_aggs(
        replayed, "BTCUSDT", replayed.market.symbols["BTCUSDT"].agg_times[0], 2**62)


@pytest.mark.parametrize("args", [["BTCUSDT", "--streams", "ticker"],
                                  ["BTCUSDT", "--streams", "kline_7x"],
                                  ["BTC/USDT"]])
async def test_a_stream_history_cannot_fetch_exits_2_in_one_line(args: list[str],
                                                                 db_path: Path) -> None:
    """Stream kinds REST has no history of, bad intervals and bad symbols exit 2 with one
    line, before any request."""
    result = await invoke(*args, "--since", "2021-04-04", "--db", str(db_path),
                          "--rest-url", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error:")


async def test_an_unknown_symbol_exits_2(replayed: LocalExchange, db_path: Path) -> None:
    """A symbol the exchange does not list exits 2, naming it, and creates no database."""
    result = await invoke("NOPEUSDT", "--since", "2021-04-04", "--db", str(db_path),
                          "--rest-url", replayed.rest_url)
    assert result.exit_code == 2 and "NOPEUSDT" in result.stderr
    assert not db_path.exists()  # noqa: ASYNC240 - one stat() after the run


def test_since_must_be_before_until(db_path: Path) -> None:
    """A range that ends before it starts is a `ConfigError`."""
    with pytest.raises(ConfigError, match="before"):
        asyncio.run(fetch_history(db_path, ["BTCUSDT"], ["aggTrade"], 2_000, 1_000))
