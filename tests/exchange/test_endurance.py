"""The exchange holds up for long runs: the event loop is never starved, derived work stops with
the last subscriber, nothing but bounded REST history grows while nobody listens, the end of a
replay is said, and the command stops promptly on SIGINT and SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sys
import time
from typing import Any

import aiohttp
import pytest

from binance_streamer.exchange import LocalExchange
from binance_streamer.exchange.control import SessionState
from binance_streamer.exchange.frames import Event
from binance_streamer.exchange.history import History
from binance_streamer.exchange.hub import Hub
from binance_streamer.exchange.market import Market
from binance_streamer.exchange.sources import Recorded, ReplaySource
from binance_streamer.exchange.synthetic import SyntheticSymbol
from binance_streamer.exchange.synthetic_timeline import run_synthetic
from binance_streamer.exchange.timeline import run_replay
from tests.exchange.helpers import APRIL_4, TIMEOUT

BASE_MS = 1_617_500_000_000
OVERRUN_S = 0.12  # blocking work per grid point, longer than the 100 ms grid itself


class Listener:
    """A connection stand-in that keeps what the hub delivers."""

    def __init__(self, streams: list[str]) -> None:
        self.state = SessionState(dict.fromkeys(streams))
        self.got: list[Event] = []

    def deliver(self, event: Event) -> None:
        self.got.append(event)


class Overrun:
    """A `Market.periodic` stand-in that blocks for `OVERRUN_S` and gives up after ``limit``
    calls; ``seen`` is how many calls had happened when another task got to run."""

    def __init__(self, limit: int) -> None:
        self.calls = 0
        self.limit = limit
        self.seen: list[int] = []

    def __call__(self, *_: Any, **__: Any) -> None:
        time.sleep(OVERRUN_S)  # a computation too slow for the grid, not a synchronisation
        self.calls += 1
        if self.calls >= self.limit:
            raise RuntimeError("enough overruns")

    async def watch(self) -> None:
        await asyncio.sleep(0.25)  # a keepalive-like timer due while the market is behind
        self.seen.append(self.calls)


async def test_a_synthetic_market_behind_schedule_hands_the_loop_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A synthetic market whose grid work overruns the grid still yields to the event loop every
    turn, so timers, pings and signal handlers run while it catches up."""
    market = Market(Hub(), History())
    symbol = SyntheticSymbol(market, "BTCUSDT", 0)
    overrun = Overrun(limit=10)
    monkeypatch.setattr(market, "periodic", overrun)
    watcher = asyncio.create_task(overrun.watch())
    with pytest.raises(RuntimeError, match="enough overruns"):
        await run_synthetic(market, [symbol], rate=10)
    await watcher
    assert overrun.seen[0] <= 6  # not starved until it gave up (10)


async def test_a_replay_behind_schedule_hands_the_loop_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A paced replay that falls behind its recorded times still yields to the event loop every
    turn instead of publishing its backlog in one go."""
    market = Market(Hub(), History())
    items = [Recorded(float(ms), "btcusdt@trade", {"e": "trade", "s": "BTCUSDT", "t": ms,
                                                  "p": "1.0", "q": "1.0", "T": ms, "m": True})
             for ms in range(0, 3000, 10)]
    overrun = Overrun(limit=10)
    monkeypatch.setattr(market, "periodic", overrun)
    watcher = asyncio.create_task(overrun.watch())
    with pytest.raises(RuntimeError, match="enough overruns"):
        await run_replay(market, [ReplaySource("test", items)], speed=1.0, loop=False)
    await watcher
    assert overrun.seen[0] <= 6  # not starved until it gave up (10)


def trade(market: Market, n: int, time_ms: int) -> None:
    market.publish("btcusdt@aggTrade", {
        "e": "aggTrade", "E": time_ms, "s": "BTCUSDT", "a": n, "p": "100.00000000",
        "q": "1.00000000", "f": n, "l": n, "T": time_ms, "m": False, "M": True})


def test_derived_streams_stop_with_their_last_subscriber() -> None:
    """When the last subscriber of derived streams leaves, they are no longer computed nor
    published, and their rolling windows and candles are dropped."""
    market = Market(Hub(), History())
    state = market.symbol("BTCUSDT", synthetic=True)
    streams = ["btcusdt@ticker", "btcusdt@kline_1m", "btcusdt@avgPrice", "!ticker_1h@arr",
               "!miniTicker@arr"]
    listener = Listener(streams)
    market.hub.subscribe(listener, streams)
    trade(market, 1, BASE_MS + 500)
    market.periodic(lambda _s: BASE_MS + 1000, 2000, synthetic=True)
    assert {e.stream for e in listener.got} == set(streams)
    market.hub.remove(listener)
    published = market.history.count()
    trade(market, 2, BASE_MS + 1500)
    market.periodic(lambda _s: BASE_MS + 3000, 4000, synthetic=True)
    assert market.history.count() == published + 1  # the aggTrade only
    assert state.windows == {} and state.candles == {}


def test_nobody_listening_grows_only_the_bounded_rest_history() -> None:
    """With a bounded history and no subscriber, a synthetic market keeps no published event
    and, for REST, about ``limit`` trades and aggregate trades per symbol."""
    market = Market(Hub(), History(limit=500))
    symbol = SyntheticSymbol(market, "BTCUSDT", 0)
    for i in range(5000):
        symbol.step(BASE_MS + 2 * i)
        if i % 50 == 49:
            symbol.grid(BASE_MS + 2 * i, 100 * (i // 50))
            market.periodic(lambda _s, at=BASE_MS + 2 * i: at, 100 * (i // 50), synthetic=True)
    state = market.symbols["BTCUSDT"]
    assert market.history.count() == 0
    assert 500 <= len(state.aggs) <= 550 and 500 <= len(state.trades) <= 550
    assert len(state.tape.buckets) <= 11


async def test_the_end_of_a_replay_is_logged_and_told_to_later_subscribers(
        connect: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A replay that has published everything says so in one log line; a client subscribing
    afterwards to replayed streams is closed with 1000 "Replay ended", while synthetic symbols
    keep being served."""
    caplog.set_level(logging.WARNING, "binance_streamer.exchange")
    async with LocalExchange(replay=[APRIL_4], synthetic=["FOOUSDT"], rate=50, speed=None) as ex:
        early = await connect(ex.ws_url + "/ws/dotusdt@aggTrade")
        async with asyncio.timeout(TIMEOUT):
            finished = asyncio.ensure_future(ex.finished())
            while not finished.done():
                await early.recv()
        late = await connect(ex.ws_url + "/ws/btcusdt@aggTrade")
        close = await late.closed()
        synthetic = await connect(ex.ws_url + "/ws/foousdt@aggTrade")
        assert (await synthetic.recv())["s"] == "FOOUSDT"
    ended = [r.getMessage() for r in caplog.records if "replay ended" in r.getMessage()]
    assert len(ended) == 1 and "\n" not in ended[0]
    assert (close.data, close.extra) == (1000, "Replay ended")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_the_replay_command_stops_within_a_second(sig: signal.Signals) -> None:
    """`binance-streamer replay` with a synthetic market at --rate 500 and a client on tickers
    and ``!ticker_1h@arr`` exits (status 0) within a second of SIGINT or SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "binance_streamer.cli", "replay", "--synthetic", "BTCUSDT",
        "--synthetic", "ETHUSDT", "--rate", "500", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT):
            match = re.search(r"ws://\S+", (await proc.stdout.readline()).decode())
            assert match is not None
            async with aiohttp.ClientSession() as http, http.ws_connect(
                    match.group(0) + "/stream?streams=btcusdt@ticker/ethusdt@ticker/"
                    "!ticker_1h@arr") as ws:
                while (await ws.receive_json())["stream"] != "!ticker_1h@arr":
                    pass
                started = time.monotonic()
                proc.send_signal(sig)
                code = await proc.wait()
        assert (code, time.monotonic() - started < 1.0) == (0, True)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_rest_history_is_bounded_and_gives_back_what_was_published() -> None:
    """The column-stored REST history keeps the newest ``limit`` (+10 %) trades and returns
    each exactly as published, odd quantity strings included."""
    market = Market(Hub(), History(limit=100))
    qtys = ["0.5", "1.00000000", "007.10000000", "2.123456789", "1e-3", "0.00000001"]
    sent = []
    for i in range(1000):
        payload = {"e": "aggTrade", "E": BASE_MS + i, "s": "BTCUSDT", "a": i, "p": "1.00000000",
                   "q": qtys[i % len(qtys)], "f": i, "l": i, "T": BASE_MS + i, "m": i % 3 == 0,
                   "M": True}
        market.publish("btcusdt@aggTrade", payload)
        market.publish("btcusdt@trade", {"e": "trade", "E": BASE_MS + i, "s": "BTCUSDT", "t": i,
                                         "p": "1.00000000", "q": payload["q"],
                                         "T": BASE_MS + i, "m": payload["m"], "M": True})
        sent.append(payload)
    state = market.symbols["BTCUSDT"]
    kept = [rec.rest_row() for rec in state.aggs]
    assert 100 <= len(kept) <= 110
    assert kept == [{k: p[k] for k in ("a", "p", "q", "f", "l", "T", "m", "M")}
                    for p in sent[-len(kept):]]
    assert [row["qty"] for row in state.trades] == [p["q"] for p in sent[-len(state.trades):]]
