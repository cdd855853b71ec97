"""A Binance-compatible local exchange: WebSocket market streams and REST market data over a
shared timeline of replayed recordings and a deterministic synthetic market, with fault injection.

    async with LocalExchange(replay=BUNDLED_SESSIONS, synthetic=["BTCUSDT"]) as ex:
        ...  # connect to ex.ws_url + "/ws/btcusdt@trade", query ex.rest_url + "/api/v3/..."
"""

from binance_streamer.exchange.connection import Connection
from binance_streamer.exchange.faults import Faults, FaultStep, parse_script
from binance_streamer.exchange.history import History
from binance_streamer.exchange.limits import Limits
from binance_streamer.exchange.server import BUNDLED_SESSIONS, LocalExchange, parse_speed, serve

__all__ = ["BUNDLED_SESSIONS", "Connection", "FaultStep", "Faults", "History", "Limits",
           "LocalExchange", "parse_script", "parse_speed", "serve"]
