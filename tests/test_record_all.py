"""``record --all``: every TRADING symbol, following listing changes on the live connections."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from binance_streamer.core.listings import ListedSymbol
from binance_streamer.core.planning import AttemptLimiter, combined_url
from binance_streamer.core.sharding import Shard
from binance_streamer.exchange import LocalExchange
from binance_streamer.exchange.control import ControlResult, SessionState, handle_control
from binance_streamer.exchange.limits import Limits
from binance_streamer.io.rest import RestClient
from binance_streamer.io.websocket import StreamConnection
from binance_streamer.recorder import Recorder, RecorderConfig, RecorderStats
from tests.helpers import TIMEOUT, run_cli

Controls = list[tuple[float, int, str]]  # received (monotonic s), session id, text


@pytest.fixture
def controls(monkeypatch: pytest.MonkeyPatch) -> Controls:
    """Every control message the local exchange receives, with its time and connection."""
    seen: Controls = []

    def spy(text: str, state: SessionState, max_streams: int) -> ControlResult:
        seen.append((time.monotonic(), id(state), text))
        return handle_control(text, state, max_streams)

    monkeypatch.setattr("binance_streamer.exchange.wsserver.handle_control", spy)
    return seen


def busiest_second(controls: Controls) -> int:
    """The most control messages one connection sent within any one second."""
    worst = 0
    for at, session, _ in controls:
        worst = max(worst, sum(1 for t, s, _ in controls if s == session and at <= t < at + 1))
    return worst


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def all_config(ex: LocalExchange, db: Path, **kw: Any) -> RecorderConfig:
    return RecorderConfig(**{
        "symbols": [], "all_symbols": True, "quote": "USDT", "database": db,
        "ws_url": ex.ws_url, "rest_url": ex.rest_url, "listings_every_s": 0.1, **kw})


def heard(recorder: Recorder, stream: str) -> Callable[[RecorderStats], bool]:
    """True once ``stream`` delivered sequenced data to the recorder."""
    def check(_stats: RecorderStats) -> bool:
        tracker = recorder.sequencer.tracker(stream)
        return tracker is not None and getattr(tracker, "last", None) is not None
    return check


def contiguous(ids: list[int]) -> bool:
    return ids == list(range(ids[0], ids[0] + len(ids)))


async def test_listing_changes_are_followed_without_a_reconnect(
        db_path: Path, controls: Controls) -> None:
    """A halted symbol is unsubscribed and a new one subscribed on the live connections (a
    new connection once those are full); a re-listed symbol resumes; the other streams have
    no gap and no connection was replaced; every change is a listing_change row."""
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "ETHBTC"]
    async with LocalExchange(synthetic=symbols, rate=20, served_only=True,
                             limits=Limits(rest_weight_per_min=1_000_000)) as ex:
        recorder = Recorder(all_config(ex, db_path, streams=["aggTrade", "depth@100ms"],
                                       max_streams_per_connection=2))
        task = asyncio.create_task(recorder.run())
        await ex.wait_subscribed(6)  # 3 USDT symbols x 2 streams on 3 full connections
        assert recorder.config.symbols == ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
        first_ids = {c.id for c in ex.connections}
        await recorder.wait_until(heard(recorder, "bnbusdt@aggTrade"), TIMEOUT)

        ex.set_status("BNBUSDT", "HALT")
        ex.list_symbol("DOTUSDT")
        await recorder.wait_until(
            lambda s: "dotusdt@depth@100ms" in ex.hub.subs and "bnbusdt@aggTrade" not in ex.hub.subs
            and heard(recorder, "dotusdt@aggTrade")(s), TIMEOUT)
        assert len(recorder.connections) == 3  # BNBUSDT's slots took DOTUSDT's streams
        assert recorder.sequencer.tracker("bnbusdt@aggTrade") is None

        ex.list_symbol("ADAUSDT")
        ex.set_status("BNBUSDT", "TRADING")
        await recorder.wait_until(
            lambda s: heard(recorder, "adausdt@aggTrade")(s)
            and heard(recorder, "bnbusdt@aggTrade")(s), TIMEOUT)
        assert len(recorder.connections) == 5  # the three were full: two new ones
        await recorder.wait_until(heard(recorder, "adausdt@depth@100ms"), TIMEOUT)
        assert first_ids <= {c.id for c in ex.connections}  # the first three are still up
        recorder.stop()
        stats = await asyncio.wait_for(task, TIMEOUT)

    assert all(c.connects == 1 and c.reconnects == 0 and c.rollovers == 0
               for c in recorder.connections)
    assert stats.gaps == 0 and stats.stale == 0
    assert rows(db_path, "SELECT COUNT(*) FROM gaps") == [(0,)]
    for symbol in ("BTCUSDT", "ETHUSDT", "DOTUSDT", "ADAUSDT"):
        ids = [r[0] for r in rows(db_path, "SELECT agg_id FROM agg_trade WHERE symbol = ? "
                                  "ORDER BY agg_id", symbol)]
        assert ids and contiguous(ids), symbol
    for symbol in ("BTCUSDT", "ETHUSDT"):
        chain = rows(db_path, "SELECT first_update_id, final_update_id FROM depth_update "
                     "WHERE symbol = ? ORDER BY first_update_id", symbol)
        assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(chain)), symbol
    snapshots = {r[0] for r in rows(db_path, "SELECT DISTINCT symbol FROM depth_snapshot")}
    assert {"DOTUSDT", "ADAUSDT"} <= snapshots  # a depth stream added gets its snapshot
    assert rows(db_path, "SELECT COUNT(*) FROM agg_trade WHERE symbol = 'ETHBTC'") == [(0,)]
    changes = rows(db_path, "SELECT symbol, change, old_status, new_status, streams_added, "
                   "streams_removed FROM listing_change ORDER BY id")
    assert changes == [
        ("BNBUSDT", "status", "TRADING", "HALT", "", "bnbusdt@aggTrade bnbusdt@depth@100ms"),
        ("DOTUSDT", "listed", None, "TRADING", "dotusdt@aggTrade dotusdt@depth@100ms", ""),
        ("ADAUSDT", "listed", None, "TRADING", "adausdt@aggTrade adausdt@depth@100ms", ""),
        ("BNBUSDT", "status", "HALT", "TRADING", "bnbusdt@aggTrade bnbusdt@depth@100ms", ""),
    ]
    unsubscribed = [p for _, _, t in controls if (m := json.loads(t))["method"] == "UNSUBSCRIBE"
                    for p in m["params"]]
    assert sorted(unsubscribed) == ["bnbusdt@aggTrade", "bnbusdt@depth@100ms"]
    assert 0 < busiest_second(controls) <= 5


async def test_control_messages_are_paced_under_the_limit(controls: Controls) -> None:
    """Many changes at once go out at most 3 per second on one connection: the exchange (which
    closes a connection going over 5 per second) keeps it, and every stream is subscribed."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=20) as ex:
        base = "btcusdt@aggTrade"
        conn = StreamConnection(0, combined_url(ex.ws_url, [base]), lambda *_: None,
                                AttemptLimiter(), streams=[base], max_params=1,
                                url_for=lambda streams: combined_url(ex.ws_url, streams))
        run = asyncio.create_task(conn.run())
        await ex.wait_subscribed(1)
        added = ["btcusdt@trade", "btcusdt@bookTicker", "btcusdt@depth@100ms", "btcusdt@ticker",
                 "btcusdt@kline_1m", "btcusdt@miniTicker", "btcusdt@avgPrice"]
        conn.add_streams(added)
        await asyncio.wait_for(ex.wait_subscribed(1 + len(added)), TIMEOUT)
        conn.stop()
        await asyncio.wait_for(run, TIMEOUT)
    assert conn.controls_sent == len(added) and len(controls) == len(added)
    assert busiest_second(controls) <= 5  # Binance's limit; the pacer aims at 3, jitter aside
    assert conn.connects == 1 and conn.reconnects == 0


async def test_a_refused_subscribe_is_logged_and_recorded_without_stopping(
        db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The server refuses a SUBSCRIBE (too many streams on the connection): the recorder logs
    it, stores a subscribe_error row and goes on recording the others."""
    limits = Limits(max_streams_per_connection=3)
    async with LocalExchange(synthetic=["BTCUSDT"], rate=20, served_only=True,
                             limits=limits) as ex:
        recorder = Recorder(all_config(ex, db_path, streams=["aggTrade", "trade"],
                                       max_streams_per_connection=4, listings_every_s=60))
        task = asyncio.create_task(recorder.run())
        await ex.wait_subscribed(2)
        ex.list_symbol("ETHUSDT")
        recorder.apply_listing(await _listing(ex))  # the next check, now
        await recorder.wait_until(lambda s: s.subscribe_errors == 1, TIMEOUT)
        await recorder.wait_until(lambda s: s.stored["listing_change"] >= 2, TIMEOUT)
        await recorder.wait_until(heard(recorder, "btcusdt@trade"), TIMEOUT)
        recorder.stop()
        stats = await asyncio.wait_for(task, TIMEOUT)
    assert recorder.error is None and stats.silent_streams == []
    assert "SUBSCRIBE of 2 stream(s) refused by the server" in caplog.text
    assert rows(db_path, "SELECT symbol, change, streams_removed, detail LIKE '%Too many%' "
                "FROM listing_change ORDER BY id") == [
        ("ETHUSDT", "listed", "", 0),
        ("ETHUSDT", "subscribe_error", "ethusdt@aggTrade ethusdt@trade", 1)]


async def _listing(ex: LocalExchange) -> list[ListedSymbol]:
    async with RestClient(ex.rest_url) as rest:
        return await rest.listing()


async def test_cli_all_with_quote_and_exclude_records_the_selection(db_path: Path) -> None:
    """--all --quote USDT --exclude ETHUSDT records the other TRADING USDT symbols only."""
    async with LocalExchange(synthetic=["BTCUSDT", "ETHUSDT", "BNBUSDT", "ETHBTC"], rate=20,
                             served_only=True) as ex:
        ex.set_status("BNBUSDT", "BREAK")
        code, _, err = await run_cli("record", "--all", "--quote", "usdt", "--exclude", "ethusdt",
                                 "--streams", "aggTrade", "--duration", "2", "--db",
                                 str(db_path), "--ws-url", ex.ws_url, "--rest-url", ex.rest_url)
    assert code == 0, err
    assert rows(db_path, "SELECT DISTINCT symbol FROM agg_trade") == [("BTCUSDT",)]


async def test_cli_all_with_an_unknown_quote_names_the_known_ones(db_path: Path) -> None:
    async with LocalExchange(synthetic=["BTCUSDT", "ETHBTC"], served_only=True) as ex:
        code, _, err = await run_cli("record", "--all", "--quote", "XYZ", "--db", str(db_path),
                                 "--ws-url", ex.ws_url, "--rest-url", ex.rest_url)
    assert code == 2
    assert "no TRADING symbol is quoted in 'XYZ'; quote assets listed: BTC, USDT" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--all", "BTCUSDT"], "give SYMBOLS or --all, not both"),
    (["--quote", "USDT"], "--quote and --exclude select among all symbols: add --all"),
    (["--all", "--listings-every", "soon"], "Invalid value for '--listings-every'"),
    (["--all", "--quote", "US-DT"], "invalid quote asset 'US-DT'"),
    (["--shard", "5/4"], "Invalid value for '--shard': shard 5/4 does not exist"),
    (["--shard", "half"], "invalid shard 'half'"),
])
async def test_cli_listing_options_are_checked(args: list[str], message: str) -> None:
    code, _, err = await run_cli("record", *args, "--ws-url", "ws://127.0.0.1:9",
                             "--rest-url", "http://127.0.0.1:9")
    assert code == 2 and message in err, err


async def test_cli_help_describes_the_listing_options() -> None:
    code, out, _ = await run_cli("record", "--help")
    assert code == 0
    for option in ("--all", "--quote", "--exclude", "--listings-every", "--shard"):
        assert option in out


async def test_each_shard_keeps_only_its_streams_when_listings_change(db_path: Path) -> None:
    """With --all and --shard, shard 1/2 and 2/2 split every stream, also of a symbol listed
    while they run, each stream to exactly one of them."""
    async with LocalExchange(synthetic=["BTCUSDT", "ETHUSDT", "BNBUSDT"], rate=20,
                             served_only=True) as ex:
        shards = [Recorder(all_config(ex, db_path.with_name(f"s{i}.db"),
                                      streams=["aggTrade", "trade", "bookTicker", "ticker"],
                                      shard=Shard(i, 2)))
                  for i in (1, 2)]
        tasks = [asyncio.create_task(r.run()) for r in shards]
        await ex.wait_subscribed(12)
        ex.list_symbol("DOTUSDT")
        await asyncio.wait_for(ex.wait_subscribed(16), TIMEOUT)
        for recorder in shards:
            recorder.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    one, two = (set(r.streams) for r in shards)
    kinds = ("aggTrade", "trade", "bookTicker", "ticker")
    assert one | two == {f"{s}@{k}" for s in ("btcusdt", "ethusdt", "bnbusdt", "dotusdt")
                         for k in kinds}
    assert not one & two
    assert all(Shard(1, 2).owns(s) for s in one) and all(Shard(2, 2).owns(s) for s in two)


async def test_reconnect_and_rollover_open_the_current_streams() -> None:
    """After streams were added and removed live, a reconnect and a rollover open the URL of
    the streams wanted now."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=20) as ex:
        events: asyncio.Queue[str] = asyncio.Queue()
        conn = StreamConnection(0, combined_url(ex.ws_url, ["btcusdt@aggTrade"]),
                                lambda *_: None, AttemptLimiter(), streams=["btcusdt@aggTrade"],
                                url_for=lambda streams: combined_url(ex.ws_url, streams),
                                on_event=lambda _c, event: events.put_nowait(event))
        run = asyncio.create_task(conn.run())
        assert await asyncio.wait_for(events.get(), TIMEOUT) == "connected"
        conn.add_streams(["btcusdt@trade"])
        conn.remove_streams(["btcusdt@aggTrade"])
        await asyncio.wait_for(ex.wait_subscribed(1), TIMEOUT)
        while "btcusdt@aggTrade" in ex.hub.subs or "btcusdt@trade" not in ex.hub.subs:
            await asyncio.wait_for(ex.hub._changed.wait(), TIMEOUT)
        [server] = ex.connections
        server.request_close(1001, "bye")  # the server drops it: a reconnect
        assert await asyncio.wait_for(events.get(), TIMEOUT) == "disconnected"
        assert await asyncio.wait_for(events.get(), TIMEOUT) == "connected"
        [again] = ex.connections
        assert list(again.state.subscriptions) == ["btcusdt@trade"]
        assert "btcusdt@trade" in again.path and "aggTrade" not in again.path
        conn.add_streams(["btcusdt@bookTicker"])
        conn.request_rollover()
        while await asyncio.wait_for(events.get(), TIMEOUT) != "rolled_over":
            pass
        rolled = max(ex.connections, key=lambda c: c.id)
        assert rolled is not again and set(rolled.state.subscriptions) == {
            "btcusdt@trade", "btcusdt@bookTicker"}
        assert "btcusdt@bookTicker" in rolled.path and "aggTrade" not in rolled.path
        conn.stop()
        await asyncio.wait_for(run, TIMEOUT)
    assert conn.reconnects == 1 and conn.rollovers == 1


async def test_cli_all_tolerates_quiet_streams_the_long_tail_has(db_path: Path) -> None:
    """With --all a stream that sent nothing (a quiet symbol) is a note, not exit 1; without
    --all the same silence is an error."""
    async with LocalExchange(synthetic=["BTCUSDT"], rate=20, served_only=True) as ex:
        urls = ("--ws-url", ex.ws_url, "--rest-url", ex.rest_url, "--db", str(db_path))
        code, _, err = await run_cli("record", "--all", "--streams", "aggTrade,blockTrade",
                                 "--duration", "2", *urls)
        assert code == 0, err
        assert "1 stream(s) sent nothing during the run (btcusdt@blockTrade)" in err
        code, _, err = await run_cli("record", "BTCUSDT", "--streams", "aggTrade,blockTrade",
                                 "--duration", "2", *urls)
    assert code == 1 and "btcusdt@blockTrade" in err
