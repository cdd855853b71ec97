"""Candles from a recording: ``binance_streamer.ohlcv`` and the rows it folds.

Stored trades (``trade`` or ``agg_trade``) or stored klines are read page by page in time order
(keyset pages on the natural key, so memory stays constant however long the range) and folded by
`binance_streamer.core.candles`. Trade and aggregate trade ids grow with time on Binance, so id
order is time order, and the id range of a time range is found by bisecting the ids
(`storage.id_range`); kline rows page on their open time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from binance_streamer.core.candles import (
    DAY_MS,
    GRID_INTERVAL_MS,
    Bar,
    Candle,
    CandleFolder,
    kline_bar,
    parse_interval,
    trade_bar,
)
from binance_streamer.errors import ConfigError, InvalidDatabase
from binance_streamer.storage.bookkeeping import exchange_time_scale
from binance_streamer.storage.id_range import id_bounds
from binance_streamer.storage.open import Reader, open_reader

__all__ = ["SOURCES", "Candle", "Source", "candles_of", "ohlcv", "stored_bars"]

Source = Literal["trade", "aggTrade", "kline"]
SOURCES: tuple[str, ...] = ("trade", "aggTrade", "kline")
PAGE_ROWS = 10_000

# table, key column (pages follow it), time column, and the columns a bar is built from (in
# `trade_bar` / `kline_bar` order)
_TRADES = ("trade", "trade_id", "trade_time",
           "price, quantity, trade_time, buyer_is_maker, trade_id")
_AGG_TRADES = ("agg_trade", "agg_id", "trade_time",
               "price, quantity, trade_time, buyer_is_maker, first_trade_id, last_trade_id")
_KLINES = ("kline", "open_time", "open_time",
           "open_time, open, high, low, close, base_volume, quote_volume, trade_count, "
           "taker_buy_base_volume, taker_buy_quote_volume, first_trade_id, last_trade_id")


def ohlcv(db: str | Path, symbol: str, interval: str = "1m", since: int | None = None,
          until: int | None = None, source: str = "aggTrade") -> Iterator[Candle]:
    """The candles of ``symbol`` at ``interval`` (``1s``..``1d``, or any ``Ns/Nm/Nh`` dividing a
    day) built from the recorded ``source``: ``aggTrade`` or ``trade`` rows, or stored ``kline``
    rows (the latest update of each, from the longest stored interval dividing ``interval``).

    Yields the candles opening in ``[since, until)`` (epoch ms; each candle whole), oldest
    first; intervals without trades yield none. Raises `ConfigError` for an unsupported
    interval or source at once; `InvalidDatabase`, `MissingExtra` or `SchemaTooNew` on the
    first iteration.
    """
    try:
        interval_ms = parse_interval(interval)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if source not in SOURCES:
        raise ConfigError(f"unknown candle source {source!r}: use one of {', '.join(SOURCES)}")
    return _ohlcv(db, symbol.upper(), interval_ms, since, until, source)


def _ohlcv(db: str | Path, symbol: str, interval_ms: int, since: int | None, until: int | None,
           source: str) -> Iterator[Candle]:
    lo = None if since is None else _ceil(since, interval_ms)
    hi = None if until is None else _ceil(until, interval_ms)
    with open_reader(db) as reader:
        try:
            yield from candles_of(stored_bars(reader.conn, symbol, source, lo, hi, interval_ms,
                                              mark=reader.mark), interval_ms)
        except sqlite3.Error as exc:
            raise InvalidDatabase(f"cannot read {db}: {exc}") from exc


def candles_of(bars: Iterable[Bar], interval_ms: int) -> Iterator[Candle]:
    """The candles of ``bars`` (in time order) at ``interval_ms``."""
    folder = CandleFolder(interval_ms)
    for bar in bars:
        done = folder.add(bar)
        if done is not None:
            yield Candle.of(done, interval_ms)
    last = folder.finish()
    if last is not None:
        yield Candle.of(last, interval_ms)


def stored_bars(conn: Any, symbol: str, source: str, since: int | None = None,
                until: int | None = None, interval_ms: int = DAY_MS,
                mark: str = "?") -> Iterator[Bar]:
    """The stored rows of ``source`` for ``symbol`` with times in ``[since, until)`` (epoch ms)
    as bars, oldest first, fetched ``PAGE_ROWS`` at a time from a DB-API connection; for
    ``kline``, the rows of the longest stored interval dividing ``interval_ms`` (none stored:
    nothing; only others: `ConfigError`)."""
    scale = exchange_time_scale(conn, mark)
    if source == "kline":
        stored = _kline_interval(conn, symbol, interval_ms, mark)
        if stored is None:
            return
        table, key, time_col, columns = _KLINES
        where: list[str] = [f"interval = {mark}"]
        params: list[Any] = [stored]
    else:
        table, key, time_col, columns = _TRADES if source == "trade" else _AGG_TRADES
        where, params = [], []
    for bound, op in ((since, ">="), (until, "<")):
        if bound is not None:
            where.append(f"{time_col} {op} {mark}")
            params.append(bound * scale)
    if source == "kline" or (since is None and until is None):
        start = _start_key(conn, table, key, symbol, where, params, mark)
    else:  # ids grow with trade time: bisect them for the range
        bounds = id_bounds(Reader(conn, mark), table, symbol,
                           None if since is None else since * scale,
                           None if until is None else until * scale)
        start = None if bounds is None else bounds[0]
        if bounds is not None:
            where.append(f"{key} < {mark}")
            params.append(bounds[1])
    rows = _pages(conn, table, key, columns, symbol, where, params, mark, start)
    if source == "kline":
        yield from (kline_bar(r[0] // scale, *r[1:12]) for r in rows if r[7])
    elif source == "trade":
        yield from (trade_bar(r[0], r[1], r[2] // scale, bool(r[3]), r[4]) for r in rows)
    else:
        yield from (trade_bar(r[0], r[1], r[2] // scale, bool(r[3]), r[4], r[5]) for r in rows)


def _start_key(conn: Any, table: str, key: str, symbol: str, where: list[str],
               params: list[Any], mark: str) -> Any:
    """The first key in range, in key order (a kline's key is its open time)."""
    sql = (f"SELECT {key} FROM {table} WHERE symbol = {mark}"  # noqa: S608
           + "".join(f" AND {w}" for w in where) + f" ORDER BY {key} LIMIT 1")
    row = conn.execute(sql, [symbol, *params]).fetchone()
    return None if row is None else row[0]


def _pages(conn: Any, table: str, key: str, columns: str, symbol: str, where: list[str],
           params: list[Any], mark: str, start: Any) -> Iterator[tuple[Any, ...]]:
    """Rows from key ``start`` on in key order, a page at a time: each page starts after the
    last key seen; the key is each row's last value."""
    # Values are parameters; table and column names come from the constants above.
    sql = (f"SELECT {columns}, {key} FROM {table} WHERE symbol = {mark} "  # noqa: S608
           f"AND {key} >= {mark}" + "".join(f" AND {w}" for w in where)
           + f" ORDER BY {key} LIMIT {PAGE_ROWS}")
    while start is not None:
        page = conn.execute(sql, [symbol, start, *params]).fetchall()
        start = page[-1][-1] + 1 if len(page) == PAGE_ROWS else None
        yield from page


def _kline_interval(conn: Any, symbol: str, interval_ms: int, mark: str) -> str | None:
    """The longest kline interval stored for ``symbol`` that divides ``interval_ms``."""
    stored = [name for name in GRID_INTERVAL_MS if conn.execute(
        f"SELECT 1 FROM kline WHERE symbol = {mark} AND interval = {mark} LIMIT 1",  # noqa: S608
        (symbol, name)).fetchone()]
    fitting = [name for name in stored if interval_ms % GRID_INTERVAL_MS[name] == 0]
    if fitting:
        return max(fitting, key=GRID_INTERVAL_MS.__getitem__)
    if stored:
        raise ConfigError(f"no stored {symbol} kline interval divides the one asked for; "
                          f"stored: {', '.join(stored)}")
    return None


def _ceil(ms: int, interval_ms: int) -> int:
    """The first open time on the grid at or after ``ms``."""
    return -(-ms // interval_ms) * interval_ms
