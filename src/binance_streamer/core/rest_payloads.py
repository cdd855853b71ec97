"""Typed Binance REST market-data payloads (msgspec Structs), as rest-api.md documents them.

The backfill decodes REST bodies straight into these (rest-api.md, "Market Data endpoints"), and
`binance_streamer.core.tables` turns them into the same rows as the stream events of the same
table. Attribute names are those of the stream events (`binance_streamer.core.events`); prices
and quantities stay the decimal strings Binance sent. Keys Binance documents but nothing stores
("quoteQty", the klines' trailing "Unused field, ignore") are not read.
"""

from __future__ import annotations

from msgspec import Struct, field

from binance_streamer.core.events import Int64

__all__ = ["DepthSnapshot", "ExchangeInfo", "RestAggTrade", "RestKline", "RestTrade",
           "SymbolInfo"]


class RestAggTrade(Struct, frozen=True):
    """One item of ``GET /api/v3/aggTrades`` ("Compressed/Aggregate trades list")."""

    agg_id: Int64 = field(name="a")
    price: str = field(name="p")
    quantity: str = field(name="q")
    first_trade_id: Int64 = field(name="f")
    last_trade_id: Int64 = field(name="l")
    trade_time: Int64 = field(name="T")
    buyer_is_maker: bool = field(name="m")
    best_match: bool | None = field(name="M", default=None)


class RestTrade(Struct, frozen=True):
    """One item of ``GET /api/v3/historicalTrades`` ("Old trade lookup")."""

    trade_id: Int64 = field(name="id")
    price: str
    quantity: str = field(name="qty")
    trade_time: Int64 = field(name="time")
    buyer_is_maker: bool = field(name="isBuyerMaker")
    best_match: bool | None = field(name="isBestMatch", default=None)


class RestKline(Struct, frozen=True, array_like=True):
    """One array of ``GET /api/v3/klines`` ("Kline/Candlestick data"), by position.

    REST klines carry no trade ids and no closed flag: a kline is closed once its close time
    has passed.
    """

    open_time: Int64
    open: str
    high: str
    low: str
    close: str
    base_volume: str
    close_time: Int64
    quote_volume: str
    trade_count: Int64
    taker_buy_base_volume: str
    taker_buy_quote_volume: str


class DepthSnapshot(Struct, frozen=True):
    """``GET /api/v3/depth`` ("Order book"): levels are ``[price, quantity]`` decimal strings."""

    last_update_id: Int64 = field(name="lastUpdateId")
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class SymbolInfo(Struct, frozen=True):
    """One symbol of ``GET /api/v3/exchangeInfo`` (only what symbol validation reads)."""

    symbol: str
    status: str = ""


class ExchangeInfo(Struct, frozen=True):
    """``GET /api/v3/exchangeInfo`` ("Exchange information"): its symbols and their status."""

    symbols: list[SymbolInfo]
