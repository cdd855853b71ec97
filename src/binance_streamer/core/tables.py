"""Tables as data: one per stream kind, their columns, natural keys, and event -> row functions.

Storage backends generate their DDL from these specs, so SQLite and PostgreSQL share one schema.
Every row ends with ``received_ns`` (local receive time, integer ns since the epoch, NULL for rows
fetched over REST that were never received live) and ``source`` (``ws`` or ``rest``).
Prices and quantities are TEXT holding Binance's exact decimal string.

Rows fetched over REST (`binance_streamer.core.rest_payloads`) are built by the same row functions
as stream events of the same table, so each table's column order is written once, beside its spec.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from binance_streamer.core.events import (
    AggTrade,
    AvgPrice,
    BlockTrade,
    BookTicker,
    DiffDepth,
    Kline,
    KlineEvent,
    MiniTicker,
    PartialDepth,
    ReferencePrice,
    Ticker,
    Trade,
    WindowTicker,
)
from binance_streamer.core.rest_payloads import DepthSnapshot, RestAggTrade, RestKline, RestTrade
from binance_streamer.core.streams import StreamKind, StreamName

__all__ = [
    "TABLES",
    "TABLE_FOR_KIND",
    "Column",
    "Row",
    "RowBuilder",
    "TableSpec",
    "agg_trade_rows",
    "depth_snapshot_row",
    "kline_rows",
    "row_builder",
    "trade_rows",
]

Row = tuple[Any, ...]
RowBuilder = Callable[[Any, int | None, str], list[Row]]

INT, TEXT, BOOL = "INTEGER", "TEXT", "BOOLEAN"
Column = tuple[str, str]


@dataclass(frozen=True)
class TableSpec:
    """A table: its columns in insert order, its natural key, and how duplicates resolve.

    ``upsert_when`` is a SQL condition (over ``excluded``) under which a conflicting row replaces
    the stored one; ``None`` means the first stored copy wins (insert-or-ignore).
    """

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    upsert_when: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)


_TAIL: tuple[Column, ...] = (("received_ns", INT), ("source", TEXT))

TRADE = TableSpec(
    "trade",
    (("symbol", TEXT), ("trade_id", INT), ("price", TEXT), ("quantity", TEXT),
     ("trade_time", INT), ("buyer_is_maker", BOOL), ("best_match", BOOL), ("event_time", INT))
    + _TAIL,
    ("symbol", "trade_id"),
)
BLOCK_TRADE = TableSpec(
    "block_trade",
    (("symbol", TEXT), ("block_trade_id", INT), ("price", TEXT), ("quantity", TEXT),
     ("trade_time", INT), ("buyer_is_maker", BOOL), ("event_time", INT)) + _TAIL,
    ("symbol", "block_trade_id"),
)
AGG_TRADE = TableSpec(
    "agg_trade",
    (("symbol", TEXT), ("agg_id", INT), ("price", TEXT), ("quantity", TEXT),
     ("first_trade_id", INT), ("last_trade_id", INT), ("trade_time", INT),
     ("buyer_is_maker", BOOL), ("best_match", BOOL), ("event_time", INT)) + _TAIL,
    ("symbol", "agg_id"),
)
KLINE = TableSpec(
    "kline",
    (("symbol", TEXT), ("interval", TEXT), ("open_time", INT), ("close_time", INT),
     ("first_trade_id", INT), ("last_trade_id", INT), ("open", TEXT), ("close", TEXT),
     ("high", TEXT), ("low", TEXT), ("base_volume", TEXT), ("trade_count", INT),
     ("is_closed", BOOL), ("quote_volume", TEXT), ("taker_buy_base_volume", TEXT),
     ("taker_buy_quote_volume", TEXT), ("event_time", INT)) + _TAIL,
    ("symbol", "interval", "open_time"),
    # Binance sends several updates per open candle; the latest wins until the closing one, and
    # a closed candle fetched over REST (no event time) replaces an unfinished one.
    upsert_when="NOT {t}.is_closed AND (excluded.is_closed OR {t}.event_time IS NULL "
                "OR excluded.event_time >= {t}.event_time)",
)
_TICKER_STATS: tuple[Column, ...] = (
    ("open", TEXT), ("high", TEXT), ("low", TEXT), ("base_volume", TEXT), ("quote_volume", TEXT),
    ("open_time", INT), ("close_time", INT), ("first_trade_id", INT), ("last_trade_id", INT),
    ("trade_count", INT),
)
TICKER = TableSpec(
    "ticker",
    (("symbol", TEXT), ("event_time", INT), ("price_change", TEXT),
     ("price_change_percent", TEXT), ("weighted_avg_price", TEXT),
     ("first_trade_before_window_price", TEXT), ("last_price", TEXT), ("last_quantity", TEXT),
     ("best_bid_price", TEXT), ("best_bid_quantity", TEXT), ("best_ask_price", TEXT),
     ("best_ask_quantity", TEXT)) + _TICKER_STATS + _TAIL,
    ("symbol", "event_time"),
)
WINDOW_TICKER = TableSpec(
    "window_ticker",
    (("symbol", TEXT), ("window", TEXT), ("event_time", INT), ("price_change", TEXT),
     ("price_change_percent", TEXT), ("weighted_avg_price", TEXT), ("last_price", TEXT))
    + _TICKER_STATS + _TAIL,
    ("symbol", "window", "event_time"),
)
MINI_TICKER = TableSpec(
    "mini_ticker",
    (("symbol", TEXT), ("event_time", INT), ("close", TEXT), ("open", TEXT), ("high", TEXT),
     ("low", TEXT), ("base_volume", TEXT), ("quote_volume", TEXT)) + _TAIL,
    ("symbol", "event_time"),
)
BOOK_TICKER = TableSpec(
    "book_ticker",
    (("symbol", TEXT), ("update_id", INT), ("best_bid_price", TEXT),
     ("best_bid_quantity", TEXT), ("best_ask_price", TEXT), ("best_ask_quantity", TEXT)) + _TAIL,
    ("symbol", "update_id"),
)
AVG_PRICE = TableSpec(
    "avg_price",
    (("symbol", TEXT), ("event_time", INT), ("interval", TEXT), ("price", TEXT),
     ("last_trade_time", INT)) + _TAIL,
    ("symbol", "event_time"),
)
REFERENCE_PRICE = TableSpec(
    "reference_price",
    (("symbol", TEXT), ("time", INT), ("price", TEXT)) + _TAIL,
    ("symbol", "time"),
)
PARTIAL_DEPTH = TableSpec(
    "partial_depth",
    (("symbol", TEXT), ("levels", INT), ("last_update_id", INT), ("bids", TEXT), ("asks", TEXT))
    + _TAIL,
    ("symbol", "levels", "last_update_id"),
)
DIFF_DEPTH = TableSpec(
    "depth_update",
    (("symbol", TEXT), ("first_update_id", INT), ("final_update_id", INT), ("event_time", INT),
     ("bids", TEXT), ("asks", TEXT)) + _TAIL,
    ("symbol", "final_update_id"),
)

DEPTH_SNAPSHOT = TableSpec(
    "depth_snapshot",  # GET /api/v3/depth, fetched when a diff-depth chain breaks
    (("symbol", TEXT), ("last_update_id", INT), ("bids", TEXT), ("asks", TEXT)) + _TAIL,
    ("symbol", "last_update_id"),
)

TABLES: tuple[TableSpec, ...] = (
    TRADE, AGG_TRADE, KLINE, TICKER, WINDOW_TICKER, MINI_TICKER, BOOK_TICKER, AVG_PRICE,
    PARTIAL_DEPTH, DIFF_DEPTH, DEPTH_SNAPSHOT, BLOCK_TRADE, REFERENCE_PRICE,
)
TABLE_FOR_KIND: dict[StreamKind, TableSpec] = {
    StreamKind.TRADE: TRADE,
    StreamKind.BLOCK_TRADE: BLOCK_TRADE,
    StreamKind.AGG_TRADE: AGG_TRADE,
    StreamKind.KLINE: KLINE,
    StreamKind.TICKER: TICKER,
    StreamKind.WINDOW_TICKER: WINDOW_TICKER,
    StreamKind.MINI_TICKER: MINI_TICKER,
    StreamKind.ALL_MINI_TICKERS: MINI_TICKER,
    StreamKind.BOOK_TICKER: BOOK_TICKER,
    StreamKind.AVG_PRICE: AVG_PRICE,
    StreamKind.REFERENCE_PRICE: REFERENCE_PRICE,
    StreamKind.PARTIAL_DEPTH: PARTIAL_DEPTH,
    StreamKind.DIFF_DEPTH: DIFF_DEPTH,
    StreamKind.ALL_WINDOW_TICKERS: WINDOW_TICKER,
}


# -- the row of each table that REST can fill: one function for stream events and REST payloads --


def _trade_row(e: Trade | RestTrade, symbol: str, event_time: int | None, ns: int | None,
               src: str) -> Row:
    return (symbol, e.trade_id, e.price, e.quantity, e.trade_time, e.buyer_is_maker,
            e.best_match, event_time, ns, src)


def _agg_trade_row(e: AggTrade | RestAggTrade, symbol: str, event_time: int | None,
                   ns: int | None, src: str) -> Row:
    return (symbol, e.agg_id, e.price, e.quantity, e.first_trade_id, e.last_trade_id,
            e.trade_time, e.buyer_is_maker, e.best_match, event_time, ns, src)


def _kline_row(k: Kline | RestKline, symbol: str, interval: str, first_trade_id: int | None,
               last_trade_id: int | None, is_closed: bool, event_time: int | None,
               ns: int | None, src: str) -> Row:
    return (symbol, interval, k.open_time, k.close_time, first_trade_id, last_trade_id, k.open,
            k.close, k.high, k.low, k.base_volume, k.trade_count, is_closed, k.quote_volume,
            k.taker_buy_base_volume, k.taker_buy_quote_volume, event_time, ns, src)


def agg_trade_rows(symbol: str, items: Iterable[RestAggTrade]) -> list[Row]:
    """REST aggTrades items of ``symbol`` -> ``agg_trade`` rows, as the stream's would be but with
    no event time (REST has none), no receive time, and source ``rest``."""
    return [_agg_trade_row(i, symbol, None, None, "rest") for i in items]


def trade_rows(symbol: str, items: Iterable[RestTrade]) -> list[Row]:
    """REST historicalTrades items of ``symbol`` -> ``trade`` rows (no event or receive time)."""
    return [_trade_row(i, symbol, None, None, "rest") for i in items]


def kline_rows(symbol: str, interval: str, items: Iterable[RestKline], now: int) -> list[Row]:
    """REST klines of ``symbol`` -> ``kline`` rows, without the trade ids REST does not give; a
    kline is closed once its close time is before ``now`` (in the unit of the kline times)."""
    return [_kline_row(k, symbol, interval, None, None, k.close_time < now, None, None, "rest")
            for k in items]


def depth_snapshot_row(symbol: str, snapshot: DepthSnapshot, received_ns: int) -> Row:
    """A REST depth snapshot of ``symbol`` -> its ``depth_snapshot`` row, levels as JSON text."""
    return (symbol, snapshot.last_update_id, _levels(snapshot.bids), _levels(snapshot.asks),
            received_ns, "rest")


def _levels(levels: list[tuple[str, str]]) -> str:
    return msgspec.json.encode(levels).decode()


# -- stream events -> rows: the hot path, one call per decoded message -------------------------


def _trade(e: Trade, ns: int | None, src: str) -> list[Row]:
    return [_trade_row(e, e.symbol, e.event_time, ns, src)]


def _block_trade(e: BlockTrade, ns: int | None, src: str) -> list[Row]:
    return [(e.symbol, e.block_trade_id, e.price, e.quantity, e.trade_time, e.buyer_is_maker,
             e.event_time, ns, src)]


def _reference_price(e: ReferencePrice, ns: int | None, src: str) -> list[Row]:
    return [(e.symbol, e.time, e.price, ns, src)]


def _agg_trade(e: AggTrade, ns: int | None, src: str) -> list[Row]:
    return [_agg_trade_row(e, e.symbol, e.event_time, ns, src)]


def _kline(e: KlineEvent, ns: int | None, src: str) -> list[Row]:
    k = e.kline
    return [_kline_row(k, e.symbol, k.interval, k.first_trade_id, k.last_trade_id, k.is_closed,
                       e.event_time, ns, src)]


def _ticker(e: Ticker, ns: int | None, src: str) -> list[Row]:
    return [(e.symbol, e.event_time, e.price_change, e.price_change_percent,
             e.weighted_avg_price, e.first_trade_before_window_price, e.last_price,
             e.last_quantity, e.best_bid_price, e.best_bid_quantity, e.best_ask_price,
             e.best_ask_quantity, e.open, e.high, e.low, e.base_volume, e.quote_volume,
             e.open_time, e.close_time, e.first_trade_id, e.last_trade_id, e.trade_count, ns, src)]


def _all_window_tickers(es: list[WindowTicker], ns: int | None, src: str) -> list[Row]:
    return [row for e in es for row in _window_ticker(e, ns, src)]


def _window_ticker(e: WindowTicker, ns: int | None, src: str) -> list[Row]:
    window = e.event_type.removesuffix("Ticker")
    return [(e.symbol, window, e.event_time, e.price_change, e.price_change_percent,
             e.weighted_avg_price, e.last_price, e.open, e.high, e.low, e.base_volume,
             e.quote_volume, e.open_time, e.close_time, e.first_trade_id, e.last_trade_id,
             e.trade_count, ns, src)]


def _mini_ticker(e: MiniTicker, ns: int | None, src: str) -> list[Row]:
    return [(e.symbol, e.event_time, e.close, e.open, e.high, e.low, e.base_volume,
             e.quote_volume, ns, src)]


def _all_mini_tickers(es: list[MiniTicker], ns: int | None, src: str) -> list[Row]:
    return [(e.symbol, e.event_time, e.close, e.open, e.high, e.low, e.base_volume,
             e.quote_volume, ns, src) for e in es]


def _book_ticker(e: BookTicker, ns: int | None, src: str) -> list[Row]:
    return [(e.symbol, e.update_id, e.best_bid_price, e.best_bid_quantity, e.best_ask_price,
             e.best_ask_quantity, ns, src)]


def _avg_price(e: AvgPrice, ns: int | None, src: str) -> list[Row]:
    return [(e.symbol, e.event_time, e.interval, e.price, e.last_trade_time, ns, src)]


def _diff_depth(e: DiffDepth, ns: int | None, src: str) -> list[Row]:
    return [(e.symbol, e.first_update_id, e.final_update_id, e.event_time,
             bytes(e.bids).decode(), bytes(e.asks).decode(), ns, src)]


def row_builder(stream: StreamName) -> RowBuilder:
    """The function turning one decoded event of ``stream`` into rows of its table."""
    if stream.kind is StreamKind.PARTIAL_DEPTH:
        symbol, levels = stream.symbol.upper(), stream.levels

        def _partial(e: PartialDepth, ns: int | None, src: str) -> list[Row]:
            return [(symbol, levels, e.last_update_id, bytes(e.bids).decode(),
                     bytes(e.asks).decode(), ns, src)]

        return _partial
    return _BUILDERS[stream.kind]


_BUILDERS: dict[StreamKind, RowBuilder] = {
    StreamKind.TRADE: _trade,
    StreamKind.BLOCK_TRADE: _block_trade,
    StreamKind.REFERENCE_PRICE: _reference_price,
    StreamKind.ALL_WINDOW_TICKERS: _all_window_tickers,
    StreamKind.AGG_TRADE: _agg_trade,
    StreamKind.KLINE: _kline,
    StreamKind.TICKER: _ticker,
    StreamKind.WINDOW_TICKER: _window_ticker,
    StreamKind.MINI_TICKER: _mini_ticker,
    StreamKind.ALL_MINI_TICKERS: _all_mini_tickers,
    StreamKind.BOOK_TICKER: _book_ticker,
    StreamKind.AVG_PRICE: _avg_price,
    StreamKind.DIFF_DEPTH: _diff_depth,
}
