"""unicorn-binance-websocket-api works against the local exchange with its documented
``websocket_base_uri`` override.

The manager runs its own thread and event loop; its blocking calls run in a worker thread so
that the exchange, in the test's loop, keeps serving. ``create_stream`` takes about 5 s whatever
the server does: the library queues its SUBSCRIBE with ``send_with_stream``, which waits up to
5 s for a socket that is only opened after it gives up.
"""

from __future__ import annotations

import asyncio
from typing import Any

from binance_streamer.exchange import LocalExchange
from tests.exchange.helpers import APRIL_4, TIMEOUT

SYMBOLS = ("btcusdt", "ethusdt")
CHANNELS = ("aggTrade", "depth@100ms", "kline_1m")


def _agg(m: dict[str, Any]) -> tuple[Any, ...]:
    return (m["symbol"], m["aggregate_trade_id"], m["price"], m["quantity"],
            m["first_trade_id"], m["last_trade_id"], m["trade_time"], m["is_market_maker"])


def _depth(m: dict[str, Any]) -> tuple[Any, ...]:
    return (m["symbol"], m["first_update_id_in_event"], m["final_update_id_in_event"],
            m["bids"], m["asks"])


def _kline(m: dict[str, Any]) -> tuple[Any, ...]:
    k = m["kline"]
    return (m["symbol"], k["kline_start_time"], k["kline_close_time"], k["open_price"],
            k["high_price"], k["low_price"], k["close_price"], k["base_volume"],
            k["number_of_trades"], k["is_closed"])


async def test_unicorn_manager_receives_every_replayed_event() -> None:
    """The UBWA manager, pointed at the exchange by ``websocket_base_uri``, subscribes to six
    streams on one connection and its UnicornFy output carries every replayed aggregate trade,
    depth diff and kline with the recorded values, in order."""
    from unicorn_binance_websocket_api import BinanceWebSocketApiManager

    async with LocalExchange(replay=[APRIL_4], speed=None, start="manual") as ex:
        streams = [f"{s}@{c}" for s in SYMBOLS for c in CHANNELS]
        expected = sum(1 for i in ex.sources[0].items if i.stream in streams)
        loop = asyncio.get_running_loop()
        got: list[dict[str, Any]] = []
        complete = asyncio.Event()

        def collect(msg: dict[str, Any]) -> None:
            if "event_type" in msg:
                got.append(msg)
                if len(got) == expected:
                    complete.set()

        manager = BinanceWebSocketApiManager(
            exchange="binance.com", websocket_base_uri=ex.ws_url + "/", warn_on_update=False,
            output_default="UnicornFy", disable_colorama=True,
            process_stream_data=lambda msg: loop.call_soon_threadsafe(collect, msg))
        try:
            async with asyncio.timeout(2 * TIMEOUT):
                await asyncio.to_thread(manager.create_stream, list(CHANNELS), list(SYMBOLS))
                await ex.wait_subscribed(len(streams))
                subscribed = [sorted(c.state.subscriptions) for c in ex.connections]
                await ex.start()
                await complete.wait()
        finally:
            await asyncio.to_thread(manager.stop_manager)
        assert subscribed == [sorted(streams)]
        for stream, shape in (("aggTrade", _agg), ("depth@100ms", _depth), ("kline_1m", _kline)):
            for symbol in SYMBOLS:
                name = f"{symbol}@{stream}"
                sent = ex.history.events(name)
                assert sent, name
                assert [shape(m) for m in got if m["stream_type"] == name] == [
                    shape(_unicornfy_reference(name, e)) for e in sent]


def _unicornfy_reference(stream: str, e: dict[str, Any]) -> dict[str, Any]:
    """The fields of Binance's payload ``e`` under UnicornFy's names (web-socket-streams.md
    "Aggregate Trade Streams", "Diff. Depth Stream", "Kline/Candlestick Streams")."""
    if e["e"] == "aggTrade":
        return {"symbol": e["s"], "aggregate_trade_id": e["a"], "price": e["p"],
                "quantity": e["q"], "first_trade_id": e["f"], "last_trade_id": e["l"],
                "trade_time": e["T"], "is_market_maker": e["m"]}
    if e["e"] == "depthUpdate":
        return {"symbol": e["s"], "first_update_id_in_event": e["U"],
                "final_update_id_in_event": e["u"], "bids": e["b"], "asks": e["a"]}
    k = e["k"]
    return {"symbol": e["s"], "kline": {
        "kline_start_time": k["t"], "kline_close_time": k["T"], "open_price": k["o"],
        "high_price": k["h"], "low_price": k["l"], "close_price": k["c"],
        "base_volume": k["v"], "number_of_trades": k["n"], "is_closed": k["x"]}}
