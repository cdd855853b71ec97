"""Derived market statistics computed from a trade history: tickers, mini tickers, klines, average
price. Pure functions over a `Run` (the summary of consecutive aggregate trades) or over `AggRec`
sequences, which are summarised first; times are Binance ms passed in.

Amounts are exact integers: prices and base volumes in units of 1e-8 (`units`), quote volumes
in units of 1e-16, printed with 8 decimals rounded half-even (`fmt_units`), so a summary built
trade by trade, merged from per-second buckets or recomputed prints the same strings as
``fmt8`` of the exact `Decimal` sums. Binance prints at most 8 decimals; a longer recorded
price or quantity is rounded to 8 first.

Payload shapes and field order are copied from web-socket-streams.md ("Individual Symbol Ticker
Streams", "Kline/Candlestick Streams", ...) and rest-api.md (kline rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol, runtime_checkable

from binance_streamer.core.streams import KLINE_INTERVAL_MS

__all__ = [
    "DAY_MS",
    "AggRec",
    "Run",
    "Summarized",
    "avg_price",
    "avg_price_of",
    "bucket_bounds",
    "fmt8",
    "fmt_units",
    "kline",
    "kline_of",
    "kline_row",
    "mini_ticker",
    "mini_ticker_of",
    "summarize",
    "ticker",
    "ticker_of",
    "units",
    "window_ticker",
    "window_ticker_of",
]

DAY_MS = 86_400_000
TZ8_MS = 8 * 3_600_000
_Q8 = Decimal("0.00000001")
_Q3 = Decimal("0.001")
_ZERO = Decimal(0)
_ONE = Decimal(1)
_UNIT = 100_000_000  # 1e8
WINDOW_MS = {"1h": 3_600_000, "4h": 14_400_000, "1d": DAY_MS}


def fmt8(d: Decimal) -> str:
    """``d`` with 8 decimals, as Binance prints prices and quantities."""
    return f"{d.quantize(_Q8):f}"


def units(text: str) -> int:
    """The decimal string ``text`` as an integer number of 1e-8 (rounded half-even beyond 8
    decimals)."""
    whole, _, frac = text.partition(".")
    digits = whole + frac
    if len(frac) <= 8 and digits.isdecimal():
        return int(digits + "0" * (8 - len(frac)))
    return int(Decimal(text).scaleb(8).quantize(_ONE, ROUND_HALF_EVEN))


def fmt_units(n: int, scale: int = 8) -> str:
    """``n`` (>= 0) times 10**-``scale`` with 8 decimals, rounded half-even as `fmt8` does."""
    if scale > 8:
        step = 10 ** (scale - 8)
        n, rest = divmod(n, step)
        if 2 * rest > step or (2 * rest == step and n % 2):
            n += 1
    whole, frac = divmod(n, _UNIT)
    return f"{whole}.{frac:08d}"


class AggRec:
    """One aggregate trade as REST ``aggTrades`` returns it.

    ``first_id``/``last_id`` are Binance's ``f``/``l`` (trade ids); ``buyer_maker`` is ``m``.
    """

    __slots__ = ("agg_id", "buyer_maker", "first_id", "last_id", "p", "q", "time")

    def __init__(self, payload: dict[str, Any]) -> None:
        self.agg_id: int = payload["a"]
        self.p: str = payload["p"]
        self.q: str = payload["q"]
        self.first_id: int = payload["f"]
        self.last_id: int = payload["l"]
        self.time: int = payload["T"]
        self.buyer_maker: bool = payload["m"]

    @classmethod
    def of(cls, agg_id: int, p: str, q: str, first_id: int, last_id: int, time: int,
           buyer_maker: bool) -> AggRec:
        """A record from its fields (``a``, ``p``, ``q``, ``f``, ``l``, ``T``, ``m``)."""
        rec = cls.__new__(cls)
        rec.agg_id, rec.p, rec.q, rec.first_id, rec.last_id = agg_id, p, q, first_id, last_id
        rec.time, rec.buyer_maker = time, buyer_maker
        return rec

    def rest_row(self) -> dict[str, Any]:
        """The REST ``/api/v3/aggTrades`` row."""
        return {"a": self.agg_id, "p": self.p, "q": self.q, "f": self.first_id,
                "l": self.last_id, "T": self.time, "m": self.buyer_maker, "M": True}


class Run:
    """The summary of consecutive aggregate trades: open, high, low, close, volumes, trade ids.

    ``high``, ``low``, ``vol`` and ``buy_vol`` are in 1e-8, ``quote`` and ``buy_quote`` in
    1e-16 (exact); ``open``/``close``/``qty`` are the first and last trades' strings; ``first``
    is the first trade's ``f``, ``last``/``time`` the last trade's ``l``/``T``; ``key`` is the
    owner's label (a second, a candle's open time).
    """

    __slots__ = ("buy_quote", "buy_vol", "close", "first", "high", "key", "last", "low", "open",
                 "qty", "quote", "time", "vol")

    def __init__(self, key: int, p: str, q: str, first: int, last: int, time: int,
                 buyer_maker: bool, pu: int, qu: int) -> None:
        self.key = key
        self.open = self.close = p
        self.qty = q
        self.first = first
        self.last = last
        self.time = time
        self.high = self.low = pu
        self.vol = qu
        self.quote = pu * qu
        self.buy_vol, self.buy_quote = (0, 0) if buyer_maker else (qu, self.quote)

    def add(self, p: str, q: str, last: int, time: int, buyer_maker: bool, pu: int, qu: int
            ) -> None:
        """Add the next trade (price ``p`` = ``pu`` units, quantity ``q`` = ``qu`` units)."""
        self.close = p
        self.qty = q
        self.last = last
        self.time = time
        if pu > self.high:
            self.high = pu
        elif pu < self.low:
            self.low = pu
        quote = pu * qu
        self.vol += qu
        self.quote += quote
        if not buyer_maker:
            self.buy_vol += qu
            self.buy_quote += quote

    def merge(self, later: Run) -> None:
        """Add the trades of ``later``, which all come after this run's."""
        self.close, self.qty, self.last, self.time = later.close, later.qty, later.last, later.time
        self.high = max(self.high, later.high)
        self.low = min(self.low, later.low)
        self.vol += later.vol
        self.quote += later.quote
        self.buy_vol += later.buy_vol
        self.buy_quote += later.buy_quote

    def copy(self) -> Run:
        """An independent copy."""
        run = Run.__new__(Run)
        for name in Run.__slots__:
            setattr(run, name, getattr(self, name))
        return run

    def change(self) -> tuple[str, str]:
        """Price change and price change percent (``p``, ``P``) from open to close."""
        o, c = Decimal(self.open), Decimal(self.close)
        pct = (c - o) * 100 / o if o else _ZERO
        return fmt8(c - o), f"{pct.quantize(_Q3):f}"

    def weighted(self) -> str:
        """The volume-weighted average price (``w``); the close when the volume is 0."""
        if not self.vol:
            return fmt8(Decimal(self.close))
        return fmt8(Decimal(f"{self.quote}E-16") / Decimal(f"{self.vol}E-8"))

    def __repr__(self) -> str:
        return (f"<Run {self.key} o={self.open} c={self.close} n={self.last - self.first + 1} "
                f"v={fmt_units(self.vol)}>")


@runtime_checkable
class Summarized(Protocol):
    """A sequence of trades that knows its own `Run` (`columns.AggSlice`)."""

    def summary(self) -> Run | None: ...


def summarize(trades: Sequence[AggRec]) -> Run | None:
    """The `Run` of ``trades`` (None when empty), added one by one unless they are
    `Summarized`."""
    if isinstance(trades, Summarized):
        return trades.summary()
    if not trades:
        return None
    t = trades[0]
    run = Run(0, t.p, t.q, t.first_id, t.last_id, t.time, t.buyer_maker, units(t.p), units(t.q))
    for t in trades[1:]:
        run.add(t.p, t.q, t.last_id, t.time, t.buyer_maker, units(t.p), units(t.q))
    return run


def _summary(trades: Sequence[AggRec]) -> Run:
    run = summarize(trades)
    if run is None:
        raise ValueError("no trades to summarise")
    return run


def ticker(symbol: str, event_ms: int, window: Sequence[AggRec], before: AggRec | None,
           best: tuple[tuple[str, str] | None, tuple[str, str] | None]) -> dict[str, Any]:
    """A ``24hrTicker`` for the trades of the last 24 h (``window``, not empty).

    ``before`` is the last trade before the window (its price is ``x``); ``best`` the book's
    best bid and ask, "0.00000000" when unknown.
    """
    return ticker_of(symbol, event_ms, _summary(window), before.p if before else None, best)


def ticker_of(symbol: str, event_ms: int, run: Run, before: str | None,
              best: tuple[tuple[str, str] | None, tuple[str, str] | None]) -> dict[str, Any]:
    """`ticker` from the run of the window and the price of the trade before it."""
    p, pct = run.change()
    bid, ask = best
    zero = ("0.00000000", "0.00000000")
    b, bq = bid or zero
    a, aq = ask or zero
    return {
        "e": "24hrTicker", "E": event_ms, "s": symbol, "p": p, "P": pct, "w": run.weighted(),
        "x": before if before is not None else run.open, "c": run.close, "Q": run.qty,
        "b": b, "B": bq, "a": a, "A": aq, "o": run.open, "h": fmt_units(run.high),
        "l": fmt_units(run.low), "v": fmt_units(run.vol), "q": fmt_units(run.quote, 16),
        "O": event_ms - DAY_MS, "C": event_ms, "F": run.first, "L": run.last,
        "n": run.last - run.first + 1,
    }


def window_ticker(symbol: str, event_ms: int, name: str, window: Sequence[AggRec]
                  ) -> dict[str, Any]:
    """A ``1hTicker``/``4hTicker``/``1dTicker`` (``name`` is 1h, 4h or 1d); ``O`` is on a minute."""
    return window_ticker_of(symbol, event_ms, name, _summary(window))


def window_ticker_of(symbol: str, event_ms: int, name: str, run: Run) -> dict[str, Any]:
    """`window_ticker` from the run of the window. ``O`` is on a minute (web-socket-streams.md
    "Individual Symbol Rolling Window Statistics Streams"); the window itself stays
    ``(C - size, C]`` as before."""
    p, pct = run.change()
    open_ms = (event_ms - WINDOW_MS[name]) // 60_000 * 60_000
    return {
        "e": f"{name}Ticker", "E": event_ms, "s": symbol, "p": p, "P": pct,
        "o": run.open, "h": fmt_units(run.high), "l": fmt_units(run.low), "c": run.close,
        "w": run.weighted(), "v": fmt_units(run.vol), "q": fmt_units(run.quote, 16),
        "O": open_ms, "C": event_ms, "F": run.first, "L": run.last,
        "n": run.last - run.first + 1,
    }


def mini_ticker(symbol: str, event_ms: int, window: Sequence[AggRec]) -> dict[str, Any]:
    """A ``24hrMiniTicker`` for the trades of the last 24 h."""
    return mini_ticker_of(symbol, event_ms, _summary(window))


def mini_ticker_of(symbol: str, event_ms: int, run: Run) -> dict[str, Any]:
    """`mini_ticker` from the run of the window."""
    return {"e": "24hrMiniTicker", "E": event_ms, "s": symbol, "c": run.close,
            "o": run.open, "h": fmt_units(run.high), "l": fmt_units(run.low),
            "v": fmt_units(run.vol), "q": fmt_units(run.quote, 16)}


def avg_price(symbol: str, event_ms: int, window: Sequence[AggRec]) -> dict[str, Any]:
    """An ``avgPrice`` event: the volume-weighted price of the last 5 minutes."""
    return avg_price_of(symbol, event_ms, _summary(window))


def avg_price_of(symbol: str, event_ms: int, run: Run) -> dict[str, Any]:
    """`avg_price` from the run of the window."""
    return {"e": "avgPrice", "E": event_ms, "s": symbol, "i": "5m", "w": run.weighted(),
            "T": run.time}


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
    return kline_of(symbol, event_ms, interval, bounds, _summary(trades), closed)


def kline_of(symbol: str, event_ms: int, interval: str, bounds: tuple[int, int], run: Run,
             closed: bool) -> dict[str, Any]:
    """`kline` from the run of the candle."""
    return {"e": "kline", "E": event_ms, "s": symbol, "k": {
        "t": bounds[0], "T": bounds[1], "s": symbol, "i": interval, "f": run.first,
        "L": run.last, "o": run.open, "c": run.close, "h": fmt_units(run.high),
        "l": fmt_units(run.low), "v": fmt_units(run.vol), "n": run.last - run.first + 1,
        "x": closed, "q": fmt_units(run.quote, 16), "V": fmt_units(run.buy_vol),
        "Q": fmt_units(run.buy_quote, 16), "B": "0"}}


def kline_row(bounds: tuple[int, int], trades: Sequence[AggRec], prev_close: str) -> list[Any]:
    """A REST ``/api/v3/klines`` row; an empty bucket is flat at ``prev_close`` with 0 volume."""
    run = summarize(trades)
    if run is None:
        z = "0.00000000"
        return [bounds[0], prev_close, prev_close, prev_close, prev_close, z, bounds[1], z, 0,
                z, z, "0"]
    return [bounds[0], run.open, fmt_units(run.high), fmt_units(run.low), run.close,
            fmt_units(run.vol), bounds[1], fmt_units(run.quote, 16), run.last - run.first + 1,
            fmt_units(run.buy_vol), fmt_units(run.buy_quote, 16), "0"]
