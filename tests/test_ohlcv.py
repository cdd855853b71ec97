"""Candles from recordings equal Binance's own klines wherever every trade was recorded; the CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from binance_streamer import Candle, ConfigError, Recorder, RecorderConfig, ohlcv
from binance_streamer.candles import candles_of, stored_bars
from binance_streamer.cli import main
from binance_streamer.core.candles import Bar
from binance_streamer.exchange import LocalExchange
from binance_streamer.samples import bundled_session
from tests.helpers import TIMEOUT, store_agg_trades

CAPTURE_SYMBOLS = ["BTCUSDT", "ETHUSDT", "DOTUSDT"]
MINUTE = 60_000


def kline_candle(k: dict[str, Any]) -> Candle:
    """Binance's kline payload ``k`` as a `Candle`, field by field."""
    return Candle(k["t"], k["T"], k["o"], k["h"], k["l"], k["c"], k["v"], k["q"], k["n"], k["V"],
                  k["Q"], k["f"], k["L"])


def covered(bars: list[Bar], k: dict[str, Any], interval_ms: int) -> Candle | None:
    """The candle of the stored trades with ids ``f``..``L`` of kline ``k``, or None unless
    those trades cover every id from ``f`` to ``L`` exactly once."""
    inside = [b for b in bars if k["f"] <= b.first_trade_id and b.last_trade_id <= k["L"]]
    ids = [(b.first_trade_id, b.last_trade_id) for b in inside]
    if not ids or ids[0][0] != k["f"] or ids[-1][1] != k["L"]:
        return None
    if any(nxt[0] != prev[1] + 1 for prev, nxt in pairwise(ids)):
        return None
    [candle] = candles_of(inside, interval_ms)
    return candle


def bars(db: Path, symbol: str, source: str) -> list[Bar]:
    """Every stored ``source`` row of ``symbol`` as bars, read by the library's page-wise reader."""
    with sqlite3.connect(db) as conn:
        return list(stored_bars(conn, symbol, source))


def compare(db: Path, symbol: str, source: str, klines: list[dict[str, Any]],
            interval_ms: int) -> int:
    """Assert each kline update whose trades were all recorded equals the candle built from
    them; the number of updates compared."""
    stored = bars(db, symbol, source)
    compared = 0
    for event in klines:
        candle = covered(stored, event["k"], interval_ms)
        if candle is not None:
            assert candle == kline_candle(event["k"]), event
            compared += 1
    return compared


async def record(ex: LocalExchange, db: Path | str, symbols: list[str], streams: list[str]) -> None:
    """Record ``streams`` from ``ex`` until the replay ended and every event was stored."""
    recorder = Recorder(RecorderConfig(symbols=symbols, streams=streams, database=db,
                                       ws_url=ex.ws_url, rest_url=ex.rest_url))
    task = asyncio.create_task(recorder.run())
    await asyncio.wait_for(ex.finished(), TIMEOUT)
    published = sum(ex.history.count(s) for s in recorder.config.stream_names)
    await recorder.wait_until(lambda s: s.total_messages >= published and recorder.flushed,
                              TIMEOUT)
    recorder.stop()
    await asyncio.wait_for(task, TIMEOUT)


@pytest.fixture(scope="module")
def capture() -> Iterator[tuple[Path, dict[str, list[dict[str, Any]]]]]:
    """The real capture cf_2021-04-04 (aggTrade, kline_1m) recorded through the local exchange,
    and the kline updates the exchange sent, per symbol."""
    import tempfile

    async def run(db: Path) -> dict[str, list[dict[str, Any]]]:
        async with LocalExchange(replay=[bundled_session("cf_2021-04-04")], speed=None) as ex:
            await record(ex, db, CAPTURE_SYMBOLS, ["aggTrade", "kline_1m"])
        return {s: ex.history.events(f"{s.lower()}@kline_1m") for s in CAPTURE_SYMBOLS}

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "capture.db"
        yield db, asyncio.run(run(db))


def test_real_klines_equal_candles_of_the_recorded_agg_trades(
        capture: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    """On the real capture, every kline_1m update whose trades f..L were all recorded equals,
    field by field, the candle built from those agg trades (at least 45 such updates)."""
    db, klines = capture
    counts = {s: compare(db, s, "aggTrade", klines[s], MINUTE) for s in CAPTURE_SYMBOLS}
    assert all(counts.values()), counts
    assert sum(counts.values()) >= 45, counts


def test_real_candles_cover_the_capture_minutes(
        capture: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    """ohlcv yields one 1m candle per minute of the capture, on Binance's grid, holding every
    recorded trade of that minute (so at least the trades of the last complete kline update)."""
    db, klines = capture
    for symbol in CAPTURE_SYMBOLS:
        candles = list(ohlcv(db, symbol, "1m"))
        assert [c.open_time for c in candles] == sorted({e["k"]["t"] for e in klines[symbol]})
        assert all(c.close_time == c.open_time + MINUTE - 1 for c in candles)
        last = max((e["k"] for e in klines[symbol]), key=lambda k: k["L"])
        assert candles[-1].first_trade_id == last["f"] and candles[-1].trades >= last["n"]


async def test_synthetic_klines_equal_candles_of_trades_and_agg_trades(db_path: Path) -> None:
    """On the synthetic market, every kline_1s and kline_1m update whose trades were all
    recorded equals the candle built from the recorded trades and from the aggregate trades."""
    streams = ["aggTrade", "trade", "kline_1s", "kline_1m"]
    async with LocalExchange(synthetic=["BTCUSDT"], rate=200, start="manual") as ex:
        recorder = Recorder(RecorderConfig(symbols=["BTCUSDT"], streams=streams,
                                           database=db_path, ws_url=ex.ws_url,
                                           rest_url=ex.rest_url))
        task = asyncio.create_task(recorder.run())
        # The market starts once every stream is subscribed, so its first trade is recorded.
        await asyncio.wait_for(ex.wait_subscribed(len(streams)), TIMEOUT)
        await ex.start()
        await recorder.wait_until(
            lambda s: ex.history.count("btcusdt@kline_1m") >= 3 and s.stored["kline"] >= 10,
            TIMEOUT)
        recorder.stop()
        await asyncio.wait_for(task, TIMEOUT)
        sent = {i: ex.history.events(f"btcusdt@kline_{i}") for i in ("1s", "1m")}
    counts = {(source, interval): compare(db_path, "BTCUSDT", source, sent[interval], ms)
              for source in ("aggTrade", "trade") for interval, ms in (("1s", 1000),
                                                                       ("1m", MINUTE))}
    assert min(counts.values()) >= 2 and counts["aggTrade", "1s"] >= 4, counts
    closed = [e["k"] for e in sent["1s"] if e["k"]["x"]]
    for source in ("aggTrade", "trade"):
        built = {c.open_time: c for c in ohlcv(db_path, "BTCUSDT", "1s", source=source)}
        whole = [k for k in closed if built.get(k["t"]) and built[k["t"]].first_trade_id == k["f"]]
        assert len(whole) >= 2 and all(built[k["t"]] == kline_candle(k) for k in whole)
    from_klines = {c.open_time: c for c in ohlcv(db_path, "BTCUSDT", "1s", source="kline")}
    assert all(from_klines[k["t"]] == kline_candle(k) for k in closed if k["t"] in from_klines)


def test_klines_are_re_aggregated_to_a_longer_interval(
        capture: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    """--from kline folds the stored 1m klines into 2m candles: volumes add up, the high is the
    highest high, the open the first open."""
    db, _ = capture
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT open_time, open, high, base_volume, trade_count FROM kline "
                              "WHERE symbol = 'BTCUSDT' ORDER BY open_time").fetchall()
    candles = list(ohlcv(db, "BTCUSDT", "2m", source="kline"))
    assert len(candles) == len({t // (2 * MINUTE) for t, *_ in stored})
    first = [r for r in stored if r[0] // (2 * MINUTE) * 2 * MINUTE == candles[0].open_time]
    assert candles[0].open == first[0][1]
    assert candles[0].high == max(r[2] for r in first)
    assert candles[0].trades == sum(r[4] for r in first)


async def test_postgresql_recordings_give_the_same_candles(
        capture: tuple[Path, dict[str, list[dict[str, Any]]]], pg_url: str) -> None:
    """A postgresql:// recording of the capture yields the same candles as the SQLite one, from
    agg trades and from klines."""
    db, _ = capture
    async with LocalExchange(replay=[bundled_session("cf_2021-04-04")], speed=None) as ex:
        await record(ex, pg_url, ["DOTUSDT"], ["aggTrade", "kline_1m"])
    for source in ("aggTrade", "kline"):
        from_pg = list(ohlcv(pg_url, "DOTUSDT", "1m", source=source))
        assert from_pg == list(ohlcv(db, "DOTUSDT", "1m", source=source)) and from_pg


async def test_microsecond_recordings_give_millisecond_candles(db_path: Path) -> None:
    """In a database recorded with microsecond times, candles still open on the millisecond
    grid, and the 1s candles of the agg trades equal the stored closed 1s klines."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=100, start="manual") as ex:
        recorder = Recorder(RecorderConfig(symbols=["BTCUSDT"], streams=["aggTrade", "kline_1s"],
                                           database=db_path, ws_url=ex.ws_url,
                                           rest_url=ex.rest_url, microseconds=True))
        task = asyncio.create_task(recorder.run())
        await asyncio.wait_for(ex.wait_subscribed(2), TIMEOUT)
        await ex.start()
        await recorder.wait_until(lambda s: s.stored["kline"] >= 5, TIMEOUT)
        recorder.stop()
        await asyncio.wait_for(task, TIMEOUT)
    with sqlite3.connect(db_path) as conn:
        closed = {t // 1000 for (t,) in conn.execute("SELECT open_time FROM kline "
                                                      "WHERE is_closed")}
    built = {c.open_time: c for c in ohlcv(db_path, "BTCUSDT", "1s")}
    stored = {c.open_time: c for c in ohlcv(db_path, "BTCUSDT", "1s", source="kline")}
    assert len(closed) >= 2 and all(t % 1000 == 0 for t in built)
    assert all(built[t] == stored[t] for t in closed)
    since = min(closed) + 1
    assert [c.open_time for c in ohlcv(db_path, "BTCUSDT", "1s", since=since, until=since + 1000)
            ] == [since + 999]


def test_an_unknown_source_is_a_config_error(
        capture: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    """ohlcv refuses a source other than trade, aggTrade or kline when called, before reading."""
    with pytest.raises(ConfigError, match="unknown candle source 'depth'"):
        ohlcv(capture[0], "BTCUSDT", source="depth")


def test_klines_cannot_be_split_into_a_shorter_interval(
        capture: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    """--from kline with no stored interval dividing the one asked for (30s from 1m klines)
    exits 2 with one line naming the stored intervals."""
    out = run_cli("BTCUSDT", "--from", "kline", "--interval", "30s", "--db", str(capture[0]))
    assert out.exit_code == 2
    assert out.output.strip().splitlines() == [
        "error: no stored BTCUSDT kline interval divides the one asked for; stored: 1m"]


def run_cli(*args: str) -> Any:
    """``binance-streamer ohlcv ARGS`` run in process, as on a 120-column terminal."""
    return CliRunner().invoke(main, ["ohlcv", *args], env={"COLUMNS": "120"})


def test_cli_csv_and_json_carry_every_field(
        capture: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    """--format csv and json print the same candles as the library, every field, exactly."""
    db, _ = capture
    expected = [vars_of(c) for c in ohlcv(db, "ETHUSDT", "30s")]
    out = run_cli("ETHUSDT", "--interval", "30s", "--format", "csv", "--db", str(db))
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert rows == [{k: str(v) for k, v in c.items()} for c in expected]
    out = run_cli("ETHUSDT", "--interval", "30s", "--format", "json", "--db", str(db))
    assert json.loads(out.output) == expected


def vars_of(candle: Candle) -> dict[str, Any]:
    """A candle as a dict of its fields."""
    return {name: getattr(candle, name) for name in Candle.__dataclass_fields__}


def test_cli_table_shows_iso_open_times_and_prices(
        capture: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    """The table view lists each candle on one line of an 80-column terminal with its UTC open
    time, prices and volume without trailing zeros past two decimals, and trade count."""
    db, _ = capture
    candles = list(ohlcv(db, "BTCUSDT", "1m"))
    out = run_cli("BTCUSDT", "--db", str(db))
    assert out.exit_code == 0, out.output
    header, *lines = out.output.splitlines()
    assert header.split() == ["open_time", "open", "high", "low", "close", "volume", "trades"]

    def short(v: str) -> str:
        return str(Decimal(v).quantize(Decimal("0.01")) if Decimal(v) == Decimal(v).quantize(
            Decimal("0.01")) else Decimal(v).normalize())

    assert [line.split() for line in lines] == [
        ["2021-04-04", f"20:0{3 + i}:00", *(short(v) for v in (c.open, c.high, c.low, c.close,
                                                                c.volume)), str(c.trades)]
        for i, c in enumerate(candles)]
    assert max(len(line) for line in out.output.splitlines()) <= 80


def test_cli_from_kline_prints_the_stored_klines(
        capture: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    """--from kline at the stored interval prints the stored klines' values."""
    db, klines = capture
    out = run_cli("BTCUSDT", "--from", "kline", "--format", "json", "--db", str(db))
    latest = {e["k"]["t"]: e["k"] for e in klines["BTCUSDT"]}
    assert json.loads(out.output) == [vars_of(kline_candle(k)) for _, k in sorted(latest.items())]


def test_cli_refuses_an_unsupported_interval_in_one_line(
        capture: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    """An interval that does not divide a day (7m) or is not an interval (1w) exits 2 with one
    line naming the accepted ones."""
    db, _ = capture
    for interval in ("7m", "1w", "abc"):
        out = run_cli("BTCUSDT", "--interval", interval, "--db", str(db))
        assert out.exit_code == 2, out.output
        assert len(out.output.strip().splitlines()) == 1
        assert f"unsupported interval {interval!r}" in out.output and "1s" in out.output


def test_cli_says_clearly_when_there_is_nothing(
        capture: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    """A symbol (or time range) with no recorded rows prints one clear line and no table."""
    db, _ = capture
    out = run_cli("BNBUSDT", "--db", str(db))
    assert out.exit_code == 0
    assert out.output.strip() == f"no candles: {db} holds no BNBUSDT aggTrade rows"
    out = run_cli("BTCUSDT", "--since", "2022-01-01", "--db", str(db))
    assert out.output.strip().endswith("aggTrade rows in that time range")


def test_a_lower_id_stored_later_at_the_first_time_in_range_is_counted(db_path: Path) -> None:
    """Trades sharing the range's first millisecond are all in the candle, whatever order they
    were stored in (a backfilled lower id arrives after the live ones)."""
    store_agg_trades(db_path, [(11, 1_000_000), (12, 1_000_500), (10, 1_000_000)])
    [candle] = ohlcv(db_path, "BTCUSDT", "1s", since=1_000_000)
    assert (candle.trades, candle.first_trade_id, candle.volume) == (3, 10, "6.00000000")
