"""binance-streamer: record Binance market-data streams into a database, losing nothing."""

from binance_streamer.books import Book, order_book, order_books
from binance_streamer.candles import Candle, ohlcv
from binance_streamer.core.streams import StreamKind, parse_stream, streams_for
from binance_streamer.errors import (
    BadResponse,
    BookUnknown,
    ConfigError,
    DatabaseInUse,
    ExchangeError,
    HandshakeRefused,
    IncompleteBackfill,
    InvalidDatabase,
    InvalidStreamName,
    MissingExtra,
    NoDataReceived,
    RateLimited,
    RestError,
    SchemaTooNew,
    StorageBusy,
    StorageError,
    StorageFatal,
    StreamerError,
    UnknownSymbolError,
    Unreachable,
)
from binance_streamer.export import read
from binance_streamer.recorder import BINANCE_WS_URL, Recorder, RecorderConfig, RecorderStats
from binance_streamer.storage.query import QueryResult, query
from binance_streamer.streamer import BinanceStreamer

__all__ = [
    "BINANCE_WS_URL",
    "BadResponse",
    "BinanceStreamer",
    "Book",
    "BookUnknown",
    "Candle",
    "ConfigError",
    "DatabaseInUse",
    "ExchangeError",
    "HandshakeRefused",
    "IncompleteBackfill",
    "InvalidDatabase",
    "InvalidStreamName",
    "MissingExtra",
    "NoDataReceived",
    "QueryResult",
    "RateLimited",
    "Recorder",
    "RecorderConfig",
    "RecorderStats",
    "RestError",
    "SchemaTooNew",
    "StorageBusy",
    "StorageError",
    "StorageFatal",
    "StreamKind",
    "StreamerError",
    "UnknownSymbolError",
    "Unreachable",
    "ohlcv",
    "order_book",
    "order_books",
    "parse_stream",
    "query",
    "read",
    "streams_for",
]
__version__ = "0.1.0"
