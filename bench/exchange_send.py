"""Send rate of the local exchange to a client that only counts frames, side by side with a
baseline of one ``websockets`` ``send()`` per message, in the same run.

    python bench/exchange_send.py [--events 1000000] [--baseline-events 200000]

The counting client (picows) runs in a separate process so that the figure is the server's.
Each event is a distinct aggTrade payload encoded and framed by the server (msgspec), as the
exchange does for replayed and synthetic data.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from typing import Any

import msgspec
import picows

from binance_streamer.exchange import LocalExchange
from binance_streamer.exchange.frames import Event

STREAM = "btcusdt@aggTrade"


def payload(i: int) -> dict[str, Any]:
    return {"e": "aggTrade", "E": 1617566591315 + i, "s": "BTCUSDT", "a": 665076760 + i,
            "p": "58001.03000000", "q": "0.08620500", "f": 745522877 + i, "l": 745522877 + i,
            "T": 1617566591314 + i, "m": True, "M": True}


# -- counting client (separate process) ---------------------------------------------------------

class _Counter(picows.WSListener):
    def __init__(self, total: int, done: asyncio.Future[float]) -> None:
        self.total, self.done, self.count, self.first = total, done, 0, 0.0

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type is not picows.WSMsgType.TEXT:
            return
        if self.count == 0:
            self.first = time.perf_counter()
        self.count += 1
        if self.count == self.total and not self.done.done():
            self.done.set_result(time.perf_counter() - self.first)


async def _count(url: str, total: int, pipe: Pipe) -> None:
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    transport, _ = await picows.ws_connect(lambda: _Counter(total, done), url)
    pipe.send("connected")
    pipe.send(await done)
    transport.disconnect()


def _client(url: str, total: int, pipe: Pipe) -> None:
    asyncio.run(_count(url, total, pipe))


def start_client(url: str, total: int) -> tuple[BaseProcess, Pipe]:
    ours, theirs = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_client, args=(url, total, theirs))
    proc.start()
    return proc, ours


async def _recv(pipe: Pipe) -> Any:
    return await asyncio.to_thread(pipe.recv)


# -- the local exchange -------------------------------------------------------------------------

async def bench_exchange(total: int, via_market: bool) -> float:
    """Frames/s: publish ``total`` events through the exchange to one counting client."""
    async with LocalExchange(start="manual") as ex:
        proc, pipe = start_client(f"{ex.ws_url}/ws/{STREAM}", total)
        await _recv(pipe)
        await ex.wait_subscribed(1)
        t0 = time.perf_counter()
        publish = ex.market.publish if via_market else None
        for i in range(total):
            if publish is not None:
                publish(STREAM, payload(i))
            else:
                ex.hub.publish(Event(STREAM, payload(i)))
            if i % 2048 == 2047:
                await ex.hub.drained(1 << 20)
                await asyncio.sleep(0)
        await _recv(pipe)
        elapsed = time.perf_counter() - t0
        proc.join()
    return total / elapsed


# -- baseline: websockets, one send() per message ------------------------------------------------

async def bench_websockets(total: int) -> float:
    """Frames/s with one ``await ws.send(text)`` per message in the websockets library."""
    from websockets.asyncio.server import ServerConnection, serve

    started = asyncio.Event()
    t0 = 0.0
    encode = msgspec.json.Encoder().encode

    async def handler(ws: ServerConnection) -> None:
        nonlocal t0
        await started.wait()
        t0 = time.perf_counter()
        for i in range(total):
            await ws.send(encode(payload(i)).decode())
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        proc, pipe = start_client(f"ws://127.0.0.1:{port}/", total)
        await _recv(pipe)
        started.set()
        await _recv(pipe)
        elapsed = time.perf_counter() - t0
        proc.join()
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--baseline-events", type=int, default=200_000)
    args = parser.parse_args()
    rows = [
        ("local exchange: hub fan-out (encode + frame once, batched writes)",
         asyncio.run(bench_exchange(args.events, via_market=False))),
        ("local exchange: market.publish (+ history, REST state)",
         asyncio.run(bench_exchange(args.events // 2, via_market=True))),
        ("baseline: websockets, one send() per message",
         asyncio.run(bench_websockets(args.baseline_events))),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'sender':<{width}}  frames/s")
    for name, rate in rows:
        print(f"{name:<{width}}  {rate:>10,.0f}")
    print(f"speed-up over baseline: {rows[0][1] / rows[2][1]:.1f}x")


if __name__ == "__main__":
    main()
