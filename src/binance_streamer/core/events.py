"""Typed Binance spot market events (msgspec Structs), one per payload shape.

Field names say what a value is; ``name=`` keeps Binance's one-letter key (web-socket-streams.md).
Prices and quantities stay the decimal strings Binance sent, so the exact value is never rounded.
Optional fields default to ``None`` so that an absent key stays absent, never ``0``.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

import msgspec
from msgspec import Meta, Raw, Struct, field

__all__ = [
    "AggTrade",
    "AvgPrice",
    "BlockTrade",
    "BookTicker",
    "Combined",
    "DiffDepth",
    "Kline",
    "KlineEvent",
    "MarketEvent",
    "MiniTicker",
    "PartialDepth",
    "ReferencePrice",
    "ServerShutdown",
    "Ticker",
    "Trade",
    "WindowTicker",
]

T = TypeVar("T")
# Ids and times are signed 64-bit in every database; a larger number is a malformed frame.
Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]


class Trade(Struct, frozen=True):
    """``<symbol>@trade``."""

    event_time: Int64 = field(name="E")
    symbol: str = field(name="s")
    trade_id: Int64 = field(name="t")
    price: str = field(name="p")
    quantity: str = field(name="q")
    trade_time: Int64 = field(name="T")
    buyer_is_maker: bool = field(name="m")
    best_match: bool | None = field(name="M", default=None)


class BlockTrade(Struct, frozen=True):
    """``<symbol>@blockTrade`` (documented 2026-05-11)."""

    event_time: Int64 = field(name="E")
    symbol: str = field(name="s")
    block_trade_id: Int64 = field(name="t")
    price: str = field(name="p")
    quantity: str = field(name="q")
    trade_time: Int64 = field(name="T")
    buyer_is_maker: bool = field(name="m")


class AggTrade(Struct, frozen=True):
    """``<symbol>@aggTrade``; ``agg_id`` is Binance's contiguous aggregate id ``a``."""

    event_time: Int64 = field(name="E")
    symbol: str = field(name="s")
    agg_id: Int64 = field(name="a")
    price: str = field(name="p")
    quantity: str = field(name="q")
    first_trade_id: Int64 = field(name="f")
    last_trade_id: Int64 = field(name="l")
    trade_time: Int64 = field(name="T")
    buyer_is_maker: bool = field(name="m")
    best_match: bool | None = field(name="M", default=None)


class Kline(Struct, frozen=True):
    """The ``k`` object of a kline event."""

    open_time: Int64 = field(name="t")
    close_time: Int64 = field(name="T")
    symbol: str = field(name="s")
    interval: str = field(name="i")
    first_trade_id: Int64 = field(name="f")
    last_trade_id: Int64 = field(name="L")
    open: str = field(name="o")
    close: str = field(name="c")
    high: str = field(name="h")
    low: str = field(name="l")
    base_volume: str = field(name="v")
    trade_count: Int64 = field(name="n")
    is_closed: bool = field(name="x")
    quote_volume: str = field(name="q")
    taker_buy_base_volume: str = field(name="V")
    taker_buy_quote_volume: str = field(name="Q")


class KlineEvent(Struct, frozen=True):
    """``<symbol>@kline_<interval>``."""

    event_time: Int64 = field(name="E")
    symbol: str = field(name="s")
    kline: Kline = field(name="k")


class MiniTicker(Struct, frozen=True):
    """``<symbol>@miniTicker`` and each element of ``!miniTicker@arr`` (24 h rolling window)."""

    event_time: Int64 = field(name="E")
    symbol: str = field(name="s")
    close: str = field(name="c")
    open: str = field(name="o")
    high: str = field(name="h")
    low: str = field(name="l")
    base_volume: str = field(name="v")
    quote_volume: str = field(name="q")


class Ticker(Struct, frozen=True):
    """``<symbol>@ticker``: the 24 h rolling-window ticker, all 23 fields."""

    event_time: Int64 = field(name="E")
    symbol: str = field(name="s")
    price_change: str = field(name="p")
    price_change_percent: str = field(name="P")
    weighted_avg_price: str = field(name="w")
    first_trade_before_window_price: str = field(name="x")
    last_price: str = field(name="c")
    last_quantity: str = field(name="Q")
    best_bid_price: str = field(name="b")
    best_bid_quantity: str = field(name="B")
    best_ask_price: str = field(name="a")
    best_ask_quantity: str = field(name="A")
    open: str = field(name="o")
    high: str = field(name="h")
    low: str = field(name="l")
    base_volume: str = field(name="v")
    quote_volume: str = field(name="q")
    open_time: Int64 = field(name="O")
    close_time: Int64 = field(name="C")
    first_trade_id: Int64 = field(name="F")
    last_trade_id: Int64 = field(name="L")
    trade_count: Int64 = field(name="n")


class WindowTicker(Struct, frozen=True):
    """``<symbol>@ticker_<1h|4h|1d>``; ``event_type`` is ``1hTicker``/``4hTicker``/``1dTicker``."""

    event_type: str = field(name="e")
    event_time: Int64 = field(name="E")
    symbol: str = field(name="s")
    price_change: str = field(name="p")
    price_change_percent: str = field(name="P")
    open: str = field(name="o")
    high: str = field(name="h")
    low: str = field(name="l")
    last_price: str = field(name="c")
    weighted_avg_price: str = field(name="w")
    base_volume: str = field(name="v")
    quote_volume: str = field(name="q")
    open_time: Int64 = field(name="O")
    close_time: Int64 = field(name="C")
    first_trade_id: Int64 = field(name="F")
    last_trade_id: Int64 = field(name="L")
    trade_count: Int64 = field(name="n")


class BookTicker(Struct, frozen=True):
    """``<symbol>@bookTicker``; it has no event time, so the receive time orders it."""

    update_id: Int64 = field(name="u")
    symbol: str = field(name="s")
    best_bid_price: str = field(name="b")
    best_bid_quantity: str = field(name="B")
    best_ask_price: str = field(name="a")
    best_ask_quantity: str = field(name="A")


class AvgPrice(Struct, frozen=True):
    """``<symbol>@avgPrice``."""

    event_time: Int64 = field(name="E")
    symbol: str = field(name="s")
    interval: str = field(name="i")
    price: str = field(name="w")
    last_trade_time: Int64 = field(name="T")


class ReferencePrice(Struct, frozen=True):
    """``<symbol>@referencePrice`` (documented 2026-03-09); ``price`` is null when there is none."""

    symbol: str = field(name="s")
    price: str | None = field(name="r")
    time: Int64 = field(name="t")


class PartialDepth(Struct, frozen=True):
    """``<symbol>@depth<5|10|20>[@100ms]``: no symbol, no event time; levels kept as raw JSON."""

    last_update_id: Int64 = field(name="lastUpdateId")
    bids: Raw
    asks: Raw


class DiffDepth(Struct, frozen=True):
    """``<symbol>@depth[@100ms]``: book updates from ``U`` (first) to ``u`` (final update id)."""

    event_time: Int64 = field(name="E")
    symbol: str = field(name="s")
    first_update_id: Int64 = field(name="U")
    final_update_id: Int64 = field(name="u")
    bids: Raw = field(name="b")
    asks: Raw = field(name="a")


class ServerShutdown(Struct, frozen=True):
    """``serverShutdown``: the server is about to close the connection; reconnect now."""

    event_time: Int64 = field(name="E")


class Combined(Struct, Generic[T], frozen=True):
    """The combined-stream wrapper ``{"stream": ..., "data": ...}``: only ``data`` is decoded
    (the stream name routed the frame already; not making a string of it saves time)."""

    data: T


MarketEvent = (
    Trade | BlockTrade | AggTrade | KlineEvent | MiniTicker | Ticker | WindowTicker | BookTicker
    | AvgPrice | ReferencePrice | PartialDepth | DiffDepth | list[MiniTicker] | list[WindowTicker]
)

# Re-exported so callers can catch decoding failures without importing msgspec.
DecodeError = msgspec.DecodeError
ValidationError = msgspec.ValidationError
