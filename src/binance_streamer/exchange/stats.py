"""Derived market statistics computed from a trade history: tickers, mini tickers, klines, average
price. Pure functions over `AggRec` sequences; times are Binance ms passed in.

Payload shapes and field order are copied from web-socket-streams.md ("Individual Symbol Ticker
Streams", "Kline/Candlestick Streams", ...) and rest-api.md (kline rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from binance_streamer.core.streams import KLINE_INTERVAL_MS

__all__ = [
    "DAY_MS",
    "AggRec",
    "avg_price",
    "bucket_bounds",
    "fmt8",
    "kline",
    "kline_row",
    "mini_ticker",
    "ticker",
    "window_ticker",
]

DAY_MS = 86_400_000
TZ8_MS = 8 * 3_600_000
_Q8 = Decimal("0.00000001")
_Q3 = Decimal("0.001")
_ZERO = Decimal(0)
WINDOW_MS = {"1h": 3_600_000, "4h": 14_400_000, "1d": DAY_MS}


def fmt8(d: Decimal) -> str:
    """``d`` with 8 decimals, as Binance prints prices and quantities."""
    return f"{d.quantize(_Q8):f}"


class AggRec:
    """One aggregate trade as REST ``aggTrades`` returns it, with parsed decimals.

    ``first_id``/``last_id`` are Binance's ``f``/``l`` (trade ids); ``buyer_maker`` is ``m``.
    """

    __slots__ = ("_price", "_qty", "agg_id", "buyer_maker", "first_id", "last_id", "p", "q",
                 "time")

    def __init__(self, payload: dict[str, Any]) -> None:
        self.agg_id: int = payload["a"]
        self.p: str = payload["p"]
        self.q: str = payload["q"]
        self.first_id: int = payload["f"]
        self.last_id: int = payload["l"]
        self.time: int = payload["T"]
        self.buyer_maker: bool = payload["m"]
        self._price: Decimal | None = None
        self._qty: Decimal | None = None

    @property
    def price(self) -> Decimal:
        """``p`` as a Decimal (parsed on first use: most trades are never aggregated)."""
        if self._price is None:
            self._price = Decimal(self.p)
        return self._price

    @property
    def qty(self) -> Decimal:
        """``q`` as a Decimal."""
        if self._qty is None:
            self._qty = Decimal(self.q)
        return self._qty

    def rest_row(self) -> dict[str, Any]:
        """The REST ``/api/v3/aggTrades`` row."""
        return {"a": self.agg_id, "p": self.p, "q": self.q, "f": self.first_id,
                "l": self.last_id, "T": self.time, "m": self.buyer_maker, "M": True}


class _Agg:
    """Open/high/low/close and volumes of a run of trades."""

    def __init__(self, trades: Sequence[AggRec]) -> None:
        self.o = trades[0].price
        self.c = trades[-1].price
        self.h = max(t.price for t in trades)
        self.low = min(t.price for t in trades)
        self.v = sum((t.qty for t in trades), _ZERO)
        self.q = sum((t.qty * t.price for t in trades), _ZERO)
        buys = [t for t in trades if not t.buyer_maker]
        self.bv = sum((t.qty for t in buys), _ZERO)
        self.bq = sum((t.qty * t.price for t in buys), _ZERO)
        self.first = trades[0].first_id
        self.last = trades[-1].last_id
        self.w = self.q / self.v if self.v else self.c

    def change(self) -> tuple[str, str]:
        pct = (self.c - self.o) * 100 / self.o if self.o else _ZERO
        return fmt8(self.c - self.o), f"{pct.quantize(_Q3):f}"


def ticker(symbol: str, event_ms: int, window: Sequence[AggRec], before: AggRec | None,
           best: tuple[tuple[str, str] | None, tuple[str, str] | None]) -> dict[str, Any]:
    """A ``24hrTicker`` for the trades of the last 24 h (``window``, not empty).

    ``before`` is the last trade before the window (its price is ``x``); ``best`` the book's
    best bid and ask, "0.00000000" when unknown.
    """
    agg = _Agg(window)
    p, pct = agg.change()
    bid, ask = best
    zero = ("0.00000000", "0.00000000")
    b, bq = bid or zero
    a, aq = ask or zero
    return {
        "e": "24hrTicker", "E": event_ms, "s": symbol, "p": p, "P": pct, "w": fmt8(agg.w),
        "x": (before or window[0]).p, "c": window[-1].p, "Q": window[-1].q,
        "b": b, "B": bq, "a": a, "A": aq, "o": window[0].p, "h": fmt8(agg.h),
        "l": fmt8(agg.low), "v": fmt8(agg.v), "q": fmt8(agg.q),
        "O": event_ms - DAY_MS, "C": event_ms, "F": agg.first, "L": agg.last,
        "n": agg.last - agg.first + 1,
    }


def window_ticker(symbol: str, event_ms: int, name: str, window: Sequence[AggRec]
                  ) -> dict[str, Any]:
    """A ``1hTicker``/``4hTicker``/``1dTicker`` (``name`` is 1h, 4h or 1d); ``O`` is on a minute."""
    agg = _Agg(window)
    p, pct = agg.change()
    open_ms = (event_ms - WINDOW_MS[name]) // 60_000 * 60_000
    return {
        "e": f"{name}Ticker", "E": event_ms, "s": symbol, "p": p, "P": pct,
        "o": window[0].p, "h": fmt8(agg.h), "l": fmt8(agg.low), "c": window[-1].p,
        "w": fmt8(agg.w), "v": fmt8(agg.v), "q": fmt8(agg.q), "O": open_ms, "C": event_ms,
        "F": agg.first, "L": agg.last, "n": agg.last - agg.first + 1,
    }


def mini_ticker(symbol: str, event_ms: int, window: Sequence[AggRec]) -> dict[str, Any]:
    """A ``24hrMiniTicker`` for the trades of the last 24 h."""
    agg = _Agg(window)
    return {"e": "24hrMiniTicker", "E": event_ms, "s": symbol, "c": window[-1].p,
            "o": window[0].p, "h": fmt8(agg.h), "l": fmt8(agg.low), "v": fmt8(agg.v),
            "q": fmt8(agg.q)}


def avg_price(symbol: str, event_ms: int, window: Sequence[AggRec]) -> dict[str, Any]:
    """An ``avgPrice`` event: the volume-weighted price of the last 5 minutes."""
    agg = _Agg(window)
    return {"e": "avgPrice", "E": event_ms, "s": symbol, "i": "5m", "w": fmt8(agg.w),
            "T": window[-1].time}


def bucket_bounds(time_ms: int, interval: str, tz_ms: int = 0) -> tuple[int, int]:
    """The open and close time (inclusive) of the ``interval`` kline holding ``time_ms``.

    Weeks open on Monday; ``1M`` is a calendar month; ``tz_ms`` shifts the grid (``@+08:00``).
    """
    if interval == "1M":
        d = datetime.fromtimestamp((time_ms + tz_ms) / 1000, UTC)
        start = datetime(d.year, d.month, 1, tzinfo=UTC)
        nxt = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
        return int(start.timestamp() * 1000) - tz_ms, int(nxt.timestamp() * 1000) - tz_ms - 1
    ms = KLINE_INTERVAL_MS[interval]
    shift = 4 * DAY_MS if interval == "1w" else 0
    first = (time_ms + tz_ms - shift) // ms * ms + shift - tz_ms
    return first, first + ms - 1


def kline(symbol: str, event_ms: int, interval: str, bounds: tuple[int, int],
          trades: Sequence[AggRec], closed: bool) -> dict[str, Any]:
    """A ``kline`` event for the (non-empty) ``trades`` of one bucket."""
    agg = _Agg(trades)
    return {"e": "kline", "E": event_ms, "s": symbol, "k": {
        "t": bounds[0], "T": bounds[1], "s": symbol, "i": interval, "f": agg.first,
        "L": agg.last, "o": trades[0].p, "c": trades[-1].p, "h": fmt8(agg.h),
        "l": fmt8(agg.low), "v": fmt8(agg.v), "n": agg.last - agg.first + 1, "x": closed,
        "q": fmt8(agg.q), "V": fmt8(agg.bv), "Q": fmt8(agg.bq), "B": "0"}}


def kline_row(bounds: tuple[int, int], trades: Sequence[AggRec], prev_close: str) -> list[Any]:
    """A REST ``/api/v3/klines`` row; an empty bucket is flat at ``prev_close`` with 0 volume."""
    if not trades:
        z = "0.00000000"
        return [bounds[0], prev_close, prev_close, prev_close, prev_close, z, bounds[1], z, 0,
                z, z, "0"]
    agg = _Agg(trades)
    return [bounds[0], trades[0].p, fmt8(agg.h), fmt8(agg.low), trades[-1].p, fmt8(agg.v),
            bounds[1], fmt8(agg.q), agg.last - agg.first + 1, fmt8(agg.bv), fmt8(agg.bq), "0"]
