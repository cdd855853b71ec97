"""binance-streamer: record Binance market-data streams into a database, losing nothing."""

from binance_streamer.core.streams import InvalidStreamName, StreamKind, parse_stream, streams_for
from binance_streamer.errors import (
    ConfigError,
    ExchangeError,
    RateLimited,
    StorageBusy,
    StorageError,
    StorageFatal,
    StreamerError,
    UnknownSymbolError,
    Unreachable,
)
from binance_streamer.recorder import BINANCE_WS_URL, Recorder, RecorderConfig, RecorderStats
from binance_streamer.storage.query import QueryResult, query
from binance_streamer.streamer import BinanceStreamer

__all__ = [
    "BINANCE_WS_URL",
    "BinanceStreamer",
    "ConfigError",
    "ExchangeError",
    "InvalidStreamName",
    "QueryResult",
    "RateLimited",
    "Recorder",
    "RecorderConfig",
    "RecorderStats",
    "StorageBusy",
    "StorageError",
    "StorageFatal",
    "StreamKind",
    "StreamerError",
    "UnknownSymbolError",
    "Unreachable",
    "parse_stream",
    "query",
    "streams_for",
]
__version__ = "0.1.0"
