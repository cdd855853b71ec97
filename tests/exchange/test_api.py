"""The public API: exports, constructor options the CLI maps onto, scripts and file formats."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

import binance_streamer.exchange as exchange
from binance_streamer.exchange import (
    BUNDLED_SESSIONS,
    LocalExchange,
    parse_script,
    parse_speed,
    serve,
)
from tests.exchange.helpers import APRIL_4, TIMEOUT
from tests.helpers import FIXTURES


def test_all_names_are_exported() -> None:
    """Every name in ``__all__`` exists in the package."""
    assert all(hasattr(exchange, name) for name in exchange.__all__)
    assert len(BUNDLED_SESSIONS) == 2


def test_speed_and_fault_script_parsing() -> None:
    """``--speed max`` means as fast as possible; fault scripts parse or explain themselves."""
    assert parse_speed("max") is None and parse_speed("2.5") == 2.5
    with pytest.raises(ValueError, match="positive"):
        parse_speed("0")
    step = parse_script("10:stall=5")
    assert (step.at_s, step.name, step.args) == (10.0, "stall", (5,))
    with pytest.raises(ValueError, match="SECONDS:NAME"):
        parse_script("explode")


async def test_scripted_fault_runs_at_its_time(connect: Any) -> None:
    """A scripted ``drop_now`` with a code closes the open connection with that code."""
    async with LocalExchange(faults=["0.2:drop_now=4000"]) as ex:
        client = await connect(ex.ws_url + "/ws")
        assert (await client.closed()).data == 4000


async def test_serve_prints_its_urls() -> None:
    """``serve`` prints the WebSocket and REST base URLs once it is ready."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        task = asyncio.ensure_future(serve(port=0, synthetic=["BTCUSDT"]))
        async with asyncio.timeout(TIMEOUT):
            # Polling on purpose: serve() announces itself only on stdout.
            while not out.getvalue():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    ws_url, rest_url = out.getvalue().split()
    assert ws_url.startswith("ws://127.0.0.1:") and rest_url.startswith("http://127.0.0.1:")


async def test_manual_start(connect: Any) -> None:
    """With ``start="manual"`` a subscriber gets nothing until ``start()``."""
    async with LocalExchange(replay=[APRIL_4], speed=None, start="manual") as ex:
        client = await connect(ex.ws_url + "/ws/btcusdt@aggTrade")
        with pytest.raises(TimeoutError):
            await client.recv(timeout=0.2)
        await ex.start()
        assert (await client.recv())["a"] == 665076760


async def test_loop_continues_the_ids(connect: Any, tmp_path: Path) -> None:
    """With ``loop`` the recording goes on as a continuing market: aggregate trade ids
    continue from pass to pass."""
    lines = (FIXTURES / "binance_spot_aggTrade.head400.jsonl").read_text().splitlines()[:3]
    path = tmp_path / "three.jsonl"
    path.write_text("\n".join(lines) + "\n")
    async with LocalExchange(replay=[path], speed=None, loop=True) as ex:
        client = await connect(ex.ws_url + "/stream?streams=btcusdt@aggTrade")
        got = [(await client.recv())["data"]["a"] for _ in range(7)]
    first = json.loads(lines[0])["data"]["a"]
    assert got == list(range(first, first + 7))


async def test_bare_jsonl_frames_are_replayed_on_their_streams(connect: Any,
                                                              tmp_path: Path) -> None:
    """Bare frames get their stream name from the payload (bookTicker has no ``e``)."""
    books = (FIXTURES / "binance_spot_bookTicker.head300.jsonl").read_text().splitlines()[:2]
    bare = [json.loads(line)["data"] for line in books]
    path = tmp_path / "bare.jsonl"
    path.write_text("".join(json.dumps(b) + "\n" for b in bare))
    stream = bare[0]["s"].lower() + "@bookTicker"
    async with LocalExchange(replay=[path], speed=None) as ex:
        client = await connect(ex.ws_url + "/ws/" + stream)
        got = [await client.recv() for _ in range(len([b for b in bare if b["s"] == bare[0]["s"]]))]
    assert got == [b for b in bare if b["s"] == bare[0]["s"]]


async def test_recorded_klines_and_microsecond_rest(connect: Any, http: Any) -> None:
    """REST klines of a replayed symbol come from its recorded candles; µs on request."""
    async with LocalExchange(replay=[APRIL_4], speed=None) as ex:
        client = await connect(ex.ws_url + "/ws/dotusdt@kline_1m")
        async with asyncio.timeout(TIMEOUT):
            fin = asyncio.ensure_future(ex.finished())
            while not fin.done():
                with contextlib.suppress(TimeoutError):
                    await client.recv(timeout=0.1)
        candles = ex.history.events("dotusdt@kline_1m")
        url = ex.rest_url + "/api/v3/klines?symbol=DOTUSDT&interval=1m"
        async with http.get(url) as resp:
            rows = await resp.json()
        async with http.get(url, headers={"X-MBX-TIME-UNIT": "MICROSECOND"}) as resp:
            micro = await resp.json()
    last = candles[-1]["k"]
    assert rows[-1] == [last["t"], last["o"], last["h"], last["l"], last["c"], last["v"],
                        last["T"], last["q"], last["n"], last["V"], last["Q"], "0"]
    assert micro[-1][0] == last["t"] * 1000 and micro[-1][6] == last["T"] * 1000


def test_a_symbol_cannot_be_both_replayed_and_synthetic() -> None:
    """Mixing a replayed symbol with a synthetic one of the same name is refused."""
    with pytest.raises(ValueError, match="BTCUSDT"):
        LocalExchange(replay=[APRIL_4], synthetic=["btcusdt"])
