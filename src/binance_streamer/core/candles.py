"""Candles (OHLCV) folded from trades, exactly, as Binance builds its klines.

rest-api.md "Kline/Candlestick data" and web-socket-streams.md "Kline/Candlestick Streams": a
candle's open time lies on the interval grid (UTC, counted from the epoch), its close time is
``open + interval - 1``; volume is the sum of quantities, quote volume the sum of price times
quantity, taker buy volumes sum the trades whose buyer was the taker (``m`` false), and the
trade count and first/last trade ids (``n``, ``f``, ``L``) cover every trade of the candle.

Arithmetic is exact: prices and quantities are integers in units of 1e-8 (Binance's strings have
at most 8 decimals), quote volumes integers in units of 1e-16 (a price times a quantity), so a
sum never rounds; only formatting a quote volume with Binance's 8 decimals rounds (half-even).
Pieces must come in time order; `CandleFolder` holds one open candle, so memory is constant.
Intervals with no trade yield no candle (see `CandleFolder`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from binance_streamer.core.streams import KLINE_INTERVAL_MS

__all__ = [
    "DAY_MS",
    "GRID_INTERVAL_MS",
    "Bar",
    "Candle",
    "CandleFolder",
    "format_units",
    "kline_bar",
    "parse_interval",
    "to_units",
    "trade_bar",
]

DECIMALS = 8
UNIT = 100_000_000  # 10**DECIMALS
DAY_MS = 86_400_000
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}
# Binance's kline intervals on the epoch grid: 1s..1d (3d, 1w and 1M are not; 1M has no length).
GRID_INTERVAL_MS = {k: v for k, v in KLINE_INTERVAL_MS.items() if 0 < v <= DAY_MS}
_INTERVAL = re.compile(r"^([1-9][0-9]{0,4})([smhd])$")


def parse_interval(text: str) -> int:
    """The length in ms of ``text``: a Binance kline interval from ``1s`` to ``1d``, or any
    ``Ns``/``Nm``/``Nh``/``Nd`` that divides a day (so candles never straddle a UTC day).

    Raises ValueError naming what is accepted.
    """
    match = _INTERVAL.match(text)
    ms = int(match[1]) * _UNIT_MS[match[2]] if match else 0
    if ms == 0 or DAY_MS % ms:
        known = ", ".join(GRID_INTERVAL_MS)
        raise ValueError(f"unsupported interval {text!r}: use one of {known}, or any Ns/Nm/Nh "
                         "that divides a day (e.g. 10s, 2m, 20m)")
    return ms


def to_units(text: str) -> int:
    """A decimal string (``"2063.88000000"``) as an integer number of 1e-8; ValueError when it
    has more than 8 significant decimals (a sum would no longer be exact)."""
    whole, _, frac = text.partition(".")
    if len(frac) != DECIMALS:  # Binance's own strings have exactly 8: the fast path
        frac = frac.rstrip("0")
        if len(frac) > DECIMALS:
            raise ValueError(f"{text!r} has more than {DECIMALS} decimals")
        frac = frac.ljust(DECIMALS, "0")
    return int(whole + frac)


def format_units(units: int, scale: int = DECIMALS) -> str:
    """``units`` (>= 0) times 10**-``scale`` as Binance formats kline fields: 8 decimals,
    rounded half-even when ``scale`` is finer."""
    if scale > DECIMALS:
        units = _round_half_even(units, 10 ** (scale - DECIMALS))
    digits = str(units).rjust(DECIMALS + 1, "0")
    return f"{digits[:-DECIMALS]}.{digits[-DECIMALS:]}"


def _round_half_even(n: int, step: int) -> int:
    q, rest = divmod(n, step)
    if 2 * rest > step or (2 * rest == step and q % 2):
        q += 1
    return q


class Bar(NamedTuple):
    """Exact totals of some trades: one trade, an aggregate trade, a candle or part of one.

    Prices and volumes are in units of 1e-8, quote volumes in units of 1e-16; ``time`` is the
    trade time, or the open time of a candle (epoch ms). (A named tuple: one is built per
    stored row, and a tuple is the cheapest immutable record to build.)
    """

    time: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    taker_buy_volume: int
    taker_buy_quote_volume: int
    trades: int
    first_trade_id: int
    last_trade_id: int


def trade_bar(price: str, quantity: str, time: int, buyer_is_maker: bool, first_trade_id: int,
              last_trade_id: int | None = None) -> Bar:
    """One trade (``last_trade_id`` None) or one aggregate trade (trade ids ``f``..``l``, all at
    one price) as a bar; the buyer is the taker when ``buyer_is_maker`` (``m``) is false."""
    p, q = to_units(price), to_units(quantity)
    last = first_trade_id if last_trade_id is None else last_trade_id
    buy_q, buy_pq = (0, 0) if buyer_is_maker else (q, p * q)
    return Bar(time, p, p, p, p, q, p * q, buy_q, buy_pq, last - first_trade_id + 1,
               first_trade_id, last)


def kline_bar(open_time: int, open: str, high: str, low: str, close: str, volume: str,
              quote_volume: str, trades: int, taker_buy_volume: str,
              taker_buy_quote_volume: str, first_trade_id: int, last_trade_id: int) -> Bar:
    """A stored kline (Binance's 8-decimal fields) as a bar, to fold into a longer interval."""
    return Bar(open_time, to_units(open), to_units(high), to_units(low), to_units(close),
               to_units(volume), to_units(quote_volume) * UNIT, to_units(taker_buy_volume),
               to_units(taker_buy_quote_volume) * UNIT, trades, first_trade_id, last_trade_id)


@dataclass(frozen=True, slots=True)
class Candle:
    """One candle, its fields as Binance's kline fields (rest-api.md "Kline/Candlestick data").

    Times are epoch ms (``close_time = open_time + interval - 1``); prices and volumes are
    decimal strings with 8 decimals; ``trades`` counts trades (not aggregate trades).
    """

    open_time: int
    close_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trades: int
    taker_buy_volume: str
    taker_buy_quote_volume: str
    first_trade_id: int
    last_trade_id: int

    @classmethod
    def of(cls, bar: Bar, interval_ms: int) -> Candle:
        """The candle of ``bar`` (``bar.time`` being its open time) formatted as Binance does."""
        f, q = format_units, 2 * DECIMALS
        return cls(bar.time, bar.time + interval_ms - 1, f(bar.open), f(bar.high), f(bar.low),
                   f(bar.close), f(bar.volume), f(bar.quote_volume, q), bar.trades,
                   f(bar.taker_buy_volume), f(bar.taker_buy_quote_volume, q),
                   bar.first_trade_id, bar.last_trade_id)


class CandleFolder:
    """Folds bars, in time order, into the candles of one interval (ms, dividing a day).

    `add` returns the candle a bar closed (the first bar of a later interval closes the open
    one), `finish` the candle still open. Intervals without trades yield nothing: from trades
    alone an empty interval cannot be told from one the recording missed, and Binance's
    documentation does not say how it fills one, so no price is invented for it.
    """

    __slots__ = ("_sums", "interval_ms")

    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self._sums: list[int] | None = None  # the open candle's `Bar` fields, updated in place

    def add(self, bar: Bar) -> Bar | None:
        """Fold ``bar`` in; the finished candle's bar (time = open time) when it closed one.

        Raises ValueError when ``bar`` is older than the candle open now.
        """
        open_time = bar.time - bar.time % self.interval_ms
        sums = self._sums
        if sums is None or open_time != sums[0]:
            if sums is not None and open_time < sums[0]:
                raise ValueError(f"bar at {bar.time} is older than the open candle at {sums[0]}")
            self._sums = [open_time, *bar[1:]]
            return None if sums is None else Bar(*sums)
        if bar.high > sums[2]:
            sums[2] = bar.high
        if bar.low < sums[3]:
            sums[3] = bar.low
        sums[4] = bar.close
        sums[5] += bar.volume
        sums[6] += bar.quote_volume
        sums[7] += bar.taker_buy_volume
        sums[8] += bar.taker_buy_quote_volume
        sums[9] += bar.trades
        sums[11] = bar.last_trade_id
        return None

    def finish(self) -> Bar | None:
        """The candle still open (None when nothing was added since the last one closed)."""
        sums, self._sums = self._sums, None
        return None if sums is None else Bar(*sums)

    def __repr__(self) -> str:
        at = None if self._sums is None else self._sums[0]
        return f"<CandleFolder {self.interval_ms}ms open={at}>"
