"""``binance-streamer replay``: the local Binance-compatible exchange on one port."""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from binance_streamer.cli.common import parse_time
from binance_streamer.errors import ConfigError

__all__ = ["parse_speed_option", "replay"]


def parse_speed_option(_ctx: click.Context, _param: click.Parameter, value: str) -> float | None:
    if value == "max":
        return None
    try:
        speed = float(value)
    except ValueError as exc:
        raise click.BadParameter("a positive number or 'max'") from exc
    if speed <= 0:
        raise click.BadParameter("a positive number or 'max'")
    return speed


def _check_data(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    from pathlib import Path

    from binance_streamer.storage.postgres import is_postgres_url

    for item in value:
        if not is_postgres_url(item) and not Path(item).is_file():
            raise click.BadParameter(f"no file {item!r} (a recording, a database file or a "
                                     "postgresql:// URL)")
    return value


def _parse_faults(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    from binance_streamer.exchange.faults import parse_script

    for spec in value:
        try:
            parse_script(spec)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    return value


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=9443, show_default=True, type=click.IntRange(0, 65535),
              help="Port for both WebSocket and REST (0 picks a free one).")
@click.option("--data", "data", multiple=True, callback=_check_data, metavar="FILE|URL",
              help="What to replay: a database recorded by binance-streamer (SQLite file or "
                   "postgresql:// URL; paced by its receive times), JSONL of frames (wrapped or "
                   "bare) or a *.session.jsonl[.gz] capture with receive times. Repeatable.")
@click.option("--symbol", "symbols", multiple=True, metavar="SYMBOL",
              help="Replay only this symbol of a recorded database. Repeatable.")
@click.option("--since", help="Replay a database's rows received from this time: epoch ms or "
                              "ISO date-time (UTC).")
@click.option("--until", help="Replay a database's rows received before this time: epoch ms "
                              "or ISO date-time (UTC).")
@click.option("--synthetic", multiple=True, metavar="SYMBOL",
              help="Also generate a deterministic synthetic market for SYMBOL. Repeatable.")
@click.option("--rate", default=10.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Aggregate trades per second of each --synthetic symbol (each comes with "
                   "its trades, book changes and book tickers).")
@click.option("--synthetic-market", default=0, show_default=True, type=click.IntRange(min=0),
              metavar="N",
              help="Also generate N synthetic symbols, real listed names first (BTCUSDT, "
                   "ETHUSDT, ...), with skewed activity: a stand-in for the whole spot market.")
@click.option("--market-rate", default=20_000.0, show_default=True,
              type=click.FloatRange(min=0.001),
              help="Aggregate trades per second over all --synthetic-market symbols.")
@click.option("--skew", default=1.0, show_default=True, type=click.FloatRange(min=0.0),
              help="How unequal --synthetic-market activity is (Zipf exponent): 0 all alike, "
                   "1 a few busy symbols and a long quiet tail.")
@click.option("--speed", default="1", show_default=True, callback=parse_speed_option,
              help="Replay pace: a factor of the recorded pace, or 'max' for as fast as possible.")
@click.option("--loop", is_flag=True,
              help="Replay forever as a continuing market: each pass goes on from the previous "
                   "one's times, trade ids and order book update ids (REST follows; a bridging "
                   "depth diff keeps books valid). A pass lasts the recording rounded up to its "
                   "kline grid (the bundled samples: 120 s).")
@click.option("--rebase-time", is_flag=True,
              help="Shift every recorded time so the replay starts now, to a whole number of "
                   "the recorded kline intervals (a minute for the bundled samples) so candles "
                   "stay on their grid; /api/v3/time follows.")
@click.option("--served-only", is_flag=True,
              help="List in exchangeInfo only the symbols this exchange publishes (by default "
                   "it lists Binance's whole bundled exchangeInfo), e.g. for record --all.")
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic market.")
@click.option("--fault", "faults", multiple=True, metavar="SECONDS:NAME[=ARG,...]",
              callback=_parse_faults,
              help="Inject a fault SECONDS after start, e.g. 10:stall=5, 30:drop_now=1001, "
                   "20:skip=3, 40:rest_error=429, 50:server_shutdown. Repeatable.")
def replay(host: str, port: int, data: tuple[str, ...], symbols: tuple[str, ...],
           since: str | None, until: str | None, synthetic: tuple[str, ...], rate: float,
           synthetic_market: int, market_rate: float, skew: float, speed: float | None,
           loop: bool, rebase_time: bool, served_only: bool, seed: int,
           faults: tuple[str, ...]) -> None:
    """Run a local Binance-compatible exchange (WebSocket streams and REST /api/v3) on one port.

    It replays real recordings (the bundled sample when neither --data nor --synthetic nor
    --synthetic-market is given), your own recorded database (--data market.db, with --symbol,
    --since and --until to choose what) or a synthetic market, speaking Binance's own protocol, so
    any Binance client can connect to it offline. The replay starts when the first client
    subscribes and says so when the recording ends; later subscribers are then closed with
    1000 "Replay ended" (use --loop). REST's clock (/api/v3/time) is the replay's: the
    recording's time (now, with --rebase-time). Runs until interrupted.
    """
    from binance_streamer.exchange import LocalExchange
    from binance_streamer.exchange.db_source import ReplayFilter
    from binance_streamer.samples import bundled_sessions

    files = list(data) or ([] if synthetic or synthetic_market else bundled_sessions())
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    chosen = ReplayFilter(tuple(symbols), start, end) if symbols or since or until else None
    # REST history kept per stream and symbol: a bound that suits a long run of many symbols.
    history = 10_000 if synthetic_market else 1_000_000

    def exchange() -> LocalExchange:
        try:
            return LocalExchange(replay=files, synthetic=list(synthetic), rate=rate,
                                 speed=speed, loop=loop, seed=seed, host=host, port=port,
                                 faults=faults, history_limit=history, rebase_time=rebase_time,
                                 synthetic_market=synthetic_market, market_rate=market_rate,
                                 skew=skew, replay_filter=chosen, served_only=served_only)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    async def serve() -> None:
        async with exchange() as ex:
            click.echo(f"WebSocket: {ex.ws_url}  (e.g. {ex.ws_url}/ws/btcusdt@ticker)")
            click.echo(f"REST:      {ex.rest_url}  (e.g. {ex.rest_url}/api/v3/exchangeInfo)")
            click.echo("Ready. Ctrl-C stops.", err=True)
            sys.stdout.flush()
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            await stop.wait()
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C ends a stuck stop
                asyncio.get_running_loop().remove_signal_handler(sig)
    asyncio.run(serve())
