"""Replay of the bundled real recordings on the shared timeline."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

from binance_streamer.exchange import LocalExchange
from binance_streamer.exchange.sources import load_source
from tests.exchange.helpers import APRIL_4, TIMEOUT


def recorded(path: Any, stream: str) -> list[Any]:
    """The payloads recorded for ``stream`` in a session capture, in receive order."""
    out = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec["kind"] == "ws":
                frame = json.loads(rec["raw"])
                if frame["stream"] == stream:
                    out.append(frame["data"])
    return out


async def drain(client: Any, ex: LocalExchange) -> list[Any]:
    """Read everything until the replay has finished and the socket is idle."""
    got: list[Any] = []
    fin = asyncio.ensure_future(ex.finished())
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                got.append(await client.recv(timeout=0.3 if fin.done() else TIMEOUT))
            except TimeoutError:
                return got


async def test_max_speed_replay_delivers_the_recording_exactly(connect: Any) -> None:
    """At speed max, a combined subscriber receives every recorded event, in order."""
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex:
        client = await connect(ex.ws_url + "/stream?streams=btcusdt@aggTrade/ethusdt@depth@100ms")
        got = await drain(client, ex)
    agg = [m["data"] for m in got if m["stream"] == "btcusdt@aggTrade"]
    depth = [m["data"] for m in got if m["stream"] == "ethusdt@depth@100ms"]
    assert agg == recorded(APRIL_4, "btcusdt@aggTrade")
    assert depth == recorded(APRIL_4, "ethusdt@depth@100ms")
    assert ex.history.events("btcusdt@aggTrade") == agg


async def test_raw_path_with_two_streams_gets_bare_payloads(connect: Any) -> None:
    """``/ws/<s1>/<s2>`` delivers bare payloads of both streams."""
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex:
        client = await connect(ex.ws_url + "/ws/btcusdt@aggTrade/dotusdt@kline_1m")
        got = await drain(client, ex)
    assert [m for m in got if m.get("e") == "kline"] == recorded(APRIL_4, "dotusdt@kline_1m")
    assert [m for m in got if m.get("e") == "aggTrade"] == recorded(APRIL_4, "btcusdt@aggTrade")


async def test_replay_clock_starts_at_first_subscription(connect: Any) -> None:
    """Nothing is published before the first client subscribes, so it sees the first event."""
    async with LocalExchange(replay=[APRIL_4], speed=10.0) as ex:
        await asyncio.sleep(0.2)  # the server idles; nothing may be published meanwhile
        assert ex.history.streams() == []
        client = await connect(ex.ws_url + "/ws/btcusdt@aggTrade")
        first = await client.recv()
    assert first == recorded(APRIL_4, "btcusdt@aggTrade")[0]


async def test_paced_replay_follows_the_recorded_receive_times(connect: Any) -> None:
    """At speed 20 the first 2 s of the recording take about 0.1 s of wall time."""
    src = load_source(APRIL_4)
    first = next(i for i in src.items if i.offset_ms >= 2000)
    async with LocalExchange(replay=[APRIL_4], speed=20.0) as ex:
        client = await connect(ex.ws_url + "/ws/" + first.stream)
        t0 = asyncio.get_running_loop().time()
        await client.until(lambda m: m == first.payload)
        elapsed = asyncio.get_running_loop().time() - t0
    assert 0.08 <= elapsed < 1.0


async def test_derived_ticker_has_binance_fields_and_recorded_prices(connect: Any) -> None:
    """``@ticker`` of a replayed symbol is a 24hrTicker computed from the recorded trades."""
    trades = recorded(APRIL_4, "btcusdt@aggTrade")
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex:
        client = await connect(ex.ws_url + "/ws/btcusdt@ticker")
        got = await drain(client, ex)
    assert len(got) >= 80  # ~91 s of recording, one ticker per second
    keys = ["e", "E", "s", "p", "P", "w", "x", "c", "Q", "b", "B", "a", "A", "o", "h", "l", "v",
            "q", "O", "C", "F", "L", "n"]
    last = got[-1]
    assert list(last) == keys
    assert last["e"] == "24hrTicker" and last["s"] == "BTCUSDT"
    assert last["o"] == trades[0]["p"] and last["c"] == trades[-1]["p"]
    assert last["F"] == trades[0]["f"] and last["L"] == trades[-1]["l"]
    assert last["n"] == trades[-1]["l"] - trades[0]["f"] + 1
    assert float(last["b"]) < float(last["a"])
    assert [m["E"] - got[0]["E"] for m in got[:3]] == [0, 1000, 2000]
    assert last["C"] - last["O"] == 86_400_000


async def test_late_subscriber_joins_the_shared_timeline(connect: Any) -> None:
    """A client connecting later gets events from then on, not the recording from its start."""
    async with LocalExchange(replay=[APRIL_4], speed=20.0) as ex:
        early = await connect(ex.ws_url + "/ws/btcusdt@aggTrade")
        for _ in range(200):
            await early.recv()
        late = await connect(ex.ws_url + "/ws/btcusdt@aggTrade")
        joined = [await late.recv() for _ in range(50)]
        history = ex.history.events("btcusdt@aggTrade")
    start = history.index(joined[0])
    assert start >= 200
    assert joined == history[start:start + 50]


async def test_replayed_frames_are_byte_identical_to_the_recording(connect: Any) -> None:
    """On /stream, each replayed frame is exactly the recorded frame text."""
    with gzip.open(APRIL_4, "rt") as fh:
        raw = [json.loads(line)["raw"] for line in fh if '"kind":"ws"' in line]
    wanted = [r for r in raw if r.startswith('{"stream":"dotusdt@aggTrade"')]
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex:
        client = await connect(ex.ws_url + "/stream?streams=dotusdt@aggTrade")
        async with asyncio.timeout(TIMEOUT):
            got = [(await client.ws.receive()).data for _ in wanted]
    assert got == wanted
