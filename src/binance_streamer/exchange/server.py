"""`LocalExchange`: one asyncio server, one port, Binance's WebSocket market streams and REST
market-data API over a shared timeline of replayed and synthetic market data.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from aiohttp import web

from binance_streamer.exchange.connection import Connection
from binance_streamer.exchange.db_source import ReplayFilter, preload_history
from binance_streamer.exchange.exchange_info import ExchangeInfo
from binance_streamer.exchange.faults import Faults, parse_script
from binance_streamer.exchange.history import History
from binance_streamer.exchange.hub import Hub
from binance_streamer.exchange.limits import Limits
from binance_streamer.exchange.listings import market_symbols
from binance_streamer.exchange.market import Market
from binance_streamer.exchange.rest import RestApi
from binance_streamer.exchange.sources import ReplaySource, load_source
from binance_streamer.exchange.synthetic import SyntheticSymbol
from binance_streamer.exchange.synthetic_market import HaltableSymbol, SyntheticMarket
from binance_streamer.exchange.synthetic_timeline import run_synthetic
from binance_streamer.exchange.timeline import ReplayTimeline
from binance_streamer.exchange.wsserver import WsEndpoint

__all__ = ["BUNDLED_SESSIONS", "LOOP_HISTORY_LIMIT", "LocalExchange", "parse_speed", "serve"]

_DATA = Path(__file__).parent / "data"
BUNDLED_SESSIONS: tuple[Path, ...] = tuple(sorted(_DATA.glob("*.session.jsonl.gz")))

StartMode = Literal["first-subscribe", "manual"]

# The longest request line (and header line) the server parses; aiohttp's default is 8190 bytes.
# A combined-stream URL may name 1024 streams (web-socket-streams.md "WebSocket Limits") of up to
# about 37 characters each (a 20-character symbol and ``@kline_1M@+08:00``), about 38 KB, and
# three times that when a client percent-encodes ``@``, ``/`` and ``:``. So 256 KiB: a URL with
# too many streams then still reaches `parse_target` and gets Binance's JSON error.
MAX_REQUEST_LINE = 256 * 1024
# Events per stream (and trades per symbol) a looping exchange keeps by default: a loop never ends.
# About 0.5 GB with the bundled sessions at full speed (1_000_000: 2.8 GB after 1000 passes).
LOOP_HISTORY_LIMIT = 100_000


class LocalExchange:
    """A Binance-compatible local exchange; use as ``async with LocalExchange(...) as ex``.

    ``replay``: JSONL frame files, session captures and recorded databases (SQLite files and
    ``postgresql://`` URLs, `db_source`), published on one timeline whose clock
    starts at the first subscription (``start="first-subscribe"``) or at `start`; REST's clock
    (``/api/v3/time``, exchangeInfo's ``serverTime``) is the replay's (`ReplayTimeline.now_ms`:
    the recording's start until then, the wall clock with nothing to replay), and before the
    start REST answers from the state at the start (the recorded depth snapshots).
    ``loop``: replay forever as a continuing market (times, trade ids and book update ids go on
    from pass to pass; a bridging diff keeps books valid; a later pass waits while nobody is
    subscribed). ``rebase_time``: shift every recorded time so the replay starts at the
    wall-clock time it starts.
    ``synthetic``: symbols of the seeded synthetic market (``rate`` steps per second), whose
    clock starts with the server (or at `start` when ``start="manual"``). ``synthetic_market``:
    that many more synthetic symbols (real listed names first, then invented ones) sharing
    ``market_rate`` steps per second, Zipf-skewed by ``skew`` (0: all alike; 1: a few busy
    symbols and a long quiet tail), as a stand-in for the whole spot market. ``speed`` is the
    replay pace factor, None for as fast as subscribers read. ``port=0`` picks a free port.
    ``replay_filter``: the symbols and receive-time range to replay of recorded databases
    (`ReplayFilter`; a ValueError with a replay file, which is replayed whole).
    ``faults``: scripted faults (``"SECONDS:NAME[=ARG,...]"``, see `parse_script`).
    ``served_only``: exchangeInfo lists only the symbols served, not the whole bundled body of
    2021-10-12 (for ``record --all``); `list_symbol` and `set_status` change the listing while
    the exchange runs.
    ``history_limit``: keep about this many newest events per stream (and trades per symbol
    for REST); None keeps everything (tests), a bound suits long command-line runs. With
    ``loop`` and no limit, `LOOP_HISTORY_LIMIT` applies (a loop never ends).

    Raises ValueError for bad arguments (including a symbol both replayed and synthetic) and
    OSError from `__aenter__` when the port cannot be bound. Client mistakes never raise: they
    get Binance's error replies.
    """

    def __init__(self, replay: Sequence[str | Path] = (), synthetic: Sequence[str] = (),
                 rate: float = 10.0, speed: float | None = 1.0, loop: bool = False,
                 seed: int = 0, host: str = "127.0.0.1", port: int = 0,
                 limits: Limits | None = None, start: StartMode = "first-subscribe",
                 faults: Sequence[str] = (), history_limit: int | None = None,
                 rebase_time: bool = False, synthetic_market: int = 0,
                 market_rate: float = 20_000.0, skew: float = 1.0,
                 replay_filter: ReplayFilter | None = None, served_only: bool = False) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive or None")
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.limits = limits or Limits()
        self.host, self.port = host, port
        self.speed, self.rate, self.loop, self.seed = speed, rate, loop, seed
        self.start_mode = start
        self.sources: list[ReplaySource] = [load_source(p, replay_filter) for p in replay]
        if loop and history_limit is None:
            history_limit = LOOP_HISTORY_LIMIT
        self.history = History(history_limit)
        self.hub = Hub()
        self.market = Market(self.hub, self.history)
        self.timeline = ReplayTimeline(self.market, self.sources, speed, loop=loop,
                                       rebase_time=rebase_time)
        preload_history(self.market, self.sources)
        both = sorted({s.upper() for s in synthetic} & set(self.market.symbols))
        if both:
            raise ValueError(f"symbols both replayed and synthetic: {', '.join(both)}")
        self.synthetic: list[SyntheticSymbol] = [
            HaltableSymbol(self.market, s.upper(), seed) for s in synthetic]
        self.rates = [rate] * len(self.synthetic)
        self.phases = [0.0] * len(self.synthetic)
        if synthetic_market:
            self._add_market(synthetic_market, market_rate, skew)
        self.faults = Faults(self.hub, self.timeline.now_ms)
        self._script = [parse_script(spec) for spec in faults]
        self.info = ExchangeInfo(list(self.market.symbols), self.limits.rest_weight_per_min,
                                 served_only=served_only)
        self._ws = WsEndpoint(self.hub, self.limits, self.faults)
        self._rest = RestApi(self.market, self.info, self.limits, self.faults,
                             self.timeline.now_ms)
        self._runner: web.AppRunner | None = None
        self._group: asyncio.TaskGroup | None = None
        self._owned: list[asyncio.Task[None]] = []
        self._started = asyncio.Event()
        self._finished = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> LocalExchange:
        app = web.Application(middlewares=[self._rest.json_errors])
        app.router.add_routes(self._rest.routes())
        for path in ("/ws", "/ws/{tail:.*}", "/stream", "/stream/{tail:.*}"):
            app.router.add_get(path, self._ws.handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=1.0, max_line_size=MAX_REQUEST_LINE,
                                     max_field_size=MAX_REQUEST_LINE)
        await self._runner.setup()
        try:
            sock = socket.create_server((self.host, self.port))
            self.port = sock.getsockname()[1]
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            await self._runner.cleanup()
            raise
        group = self._group = asyncio.TaskGroup()
        await group.__aenter__()
        if self.synthetic:
            self._owned.append(group.create_task(self._run_synthetic()))
        if self.sources:
            self._owned.append(group.create_task(self._run_replay()))
        else:
            self._finished.set()
        if self.start_mode == "first-subscribe":
            self._owned.append(group.create_task(self._start_on_subscribe()))
        if self._script:
            self._owned.append(group.create_task(self.faults.run_script(self._script)))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        for conn in list(self.hub.connections):
            conn.request_close(1001, "Server shutdown", linger=False)
        if self._runner is not None:
            await self._runner.cleanup()
        for task in self._owned:
            task.cancel()
        if self._group is not None:
            await self._group.__aexit__(None, None, None)

    async def start(self) -> None:
        """Start the timeline now (needed with ``start="manual"``; harmless otherwise)."""
        self._started.set()

    async def _start_on_subscribe(self) -> None:
        await self.hub.first_subscribe.wait()
        self._started.set()

    def _add_market(self, count: int, total_rate: float, skew: float) -> None:
        """``count`` more synthetic symbols (real listed ones first) with Zipf-skewed rates
        summing to ``total_rate`` steps per second (`SyntheticMarket`)."""
        taken = set(self.market.symbols)
        names = [s for s in market_symbols(count + len(taken)) if s not in taken][:count]
        many = SyntheticMarket(self.market, names, total_rate=total_rate, skew=skew,
                               seed=self.seed)
        self.synthetic += many.symbols
        self.rates += many.rates
        self.phases += many.phases

    async def _run_synthetic(self) -> None:
        if self.start_mode == "manual":
            await self._started.wait()
        await run_synthetic(self.market, self.synthetic, self.rates, phases=self.phases)

    async def _run_replay(self) -> None:
        await self._started.wait()
        await self.timeline.run()
        self._finished.set()

    # -- listings -----------------------------------------------------------------------------

    def list_symbol(self, symbol: str, rate: float | None = None) -> None:
        """List ``symbol`` as TRADING now: a new one is a synthetic symbol publishing ``rate``
        steps per second (default: the exchange's ``rate``); a halted or delisted one
        publishes again."""
        symbol = symbol.upper()
        self.info.add(symbol)
        known = next((s for s in self.synthetic if s.symbol == symbol), None)
        if isinstance(known, HaltableSymbol):
            known.halted = False
            return
        if known is not None or self._group is None:
            return
        new = HaltableSymbol(self.market, symbol, self.seed)
        self.synthetic.append(new)
        self._owned.append(self._group.create_task(
            run_synthetic(self.market, [new], rate or self.rate)))

    def set_status(self, symbol: str, status: str | None) -> None:
        """Give ``symbol`` another exchangeInfo status (``HALT``, ``BREAK``...) or delist it
        (None); a synthetic symbol stops publishing until it is TRADING again. Raises KeyError
        for a symbol not listed."""
        symbol = symbol.upper()
        if status == "TRADING":
            self.list_symbol(symbol)
            return
        self.info.set_status(symbol, status)
        for item in self.synthetic:
            if item.symbol == symbol and isinstance(item, HaltableSymbol):
                item.halted = True

    # -- queries ------------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        """``ws://host:port``; clients append ``/ws/...`` or ``/stream?streams=...``."""
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """``http://host:port``; clients append ``/api/v3/...``."""
        return f"http://{self.host}:{self.port}"

    @property
    def connections(self) -> list[Connection]:
        """The open connections."""
        return list(self.hub.connections)

    async def finished(self) -> None:
        """Return once a non-looping replay has published everything."""
        await self._finished.wait()

    async def wait_subscribed(self, n: int) -> None:
        """Return once ``n`` streams are subscribed, counted over all connections."""
        await self.hub.wait_subscribed(n)

    def __repr__(self) -> str:
        return (f"<LocalExchange {self.ws_url} replay={len(self.sources)} "
                f"synthetic={[s.symbol for s in self.synthetic]} {self.hub!r}>")


def parse_speed(text: str) -> float | None:
    """``--speed`` values: a positive factor, or ``max`` (as fast as possible, None)."""
    if text.lower() == "max":
        return None
    value = float(text)
    if value <= 0:
        raise ValueError("speed must be positive or 'max'")
    return value


async def serve(replay: Sequence[str | Path] = (), synthetic: Sequence[str] = (),
                rate: float = 10.0, speed: float | None = 1.0, loop: bool = False,
                seed: int = 0, host: str = "127.0.0.1", port: int = 9443,
                limits: Limits | None = None, faults: Sequence[str] = (),
                history_limit: int | None = 1_000_000, rebase_time: bool = False) -> None:
    """Run a `LocalExchange` until cancelled, printing ``ws_url rest_url`` once ready (for the
    ``binance-streamer replay`` command)."""
    async with LocalExchange(replay=replay, synthetic=synthetic, rate=rate, speed=speed,
                             loop=loop, seed=seed, host=host, port=port, limits=limits,
                             faults=faults, history_limit=history_limit,
                             rebase_time=rebase_time) as ex:
        print(ex.ws_url, ex.rest_url, flush=True)
        await asyncio.Event().wait()
