"""Binance spot market stream names: parse, build and validate them.

A stream name is ``<symbol>@<type>`` (symbol lower case) or a market-wide ``!<type>@arr``
(Binance web-socket-streams.md, "Detailed Stream information"). This module knows every documented
spot stream type this project records and nothing about the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from binance_streamer.errors import InvalidStreamName

__all__ = [
    "DEPTH_LEVELS",
    "KLINE_INTERVALS",
    "KLINE_INTERVAL_MS",
    "TICKER_WINDOWS",
    "InvalidStreamName",
    "StreamKind",
    "StreamName",
    "kind_names",
    "parse_stream",
    "parse_stream_spec",
    "streams_for",
]


class StreamKind(StrEnum):
    """The kind of a stream: which payload shape it carries and which table stores it."""

    TRADE = "trade"
    BLOCK_TRADE = "blockTrade"
    AGG_TRADE = "aggTrade"
    KLINE = "kline"
    MINI_TICKER = "miniTicker"
    TICKER = "ticker"
    WINDOW_TICKER = "windowTicker"  # ticker_<1h|4h|1d>
    BOOK_TICKER = "bookTicker"
    AVG_PRICE = "avgPrice"
    REFERENCE_PRICE = "referencePrice"
    PARTIAL_DEPTH = "partialDepth"  # depth<5|10|20>[@100ms]
    DIFF_DEPTH = "depth"  # depth[@100ms]
    ALL_MINI_TICKERS = "allMiniTickers"  # !miniTicker@arr
    ALL_WINDOW_TICKERS = "allWindowTickers"  # !ticker_<1h|4h|1d>@arr


# Kline intervals, web-socket-streams.md "Kline/Candlestick Streams". 1M is a calendar month and
# has no fixed length; it is given 0 here and kept off any fixed time grid.
KLINE_INTERVAL_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 0,
}
KLINE_INTERVALS: tuple[str, ...] = tuple(KLINE_INTERVAL_MS)
TICKER_WINDOWS: tuple[str, ...] = ("1h", "4h", "1d")
DEPTH_LEVELS: tuple[int, ...] = (5, 10, 20)

_SYMBOL = re.compile(r"^[a-z0-9_\-.]{1,30}$")
_KLINE = re.compile(r"^kline_(?P<interval>[0-9]+[smhdwM])(?P<tz>@\+08:00)?$")
_PARTIAL = re.compile(r"^depth(?P<levels>5|10|20)(?P<speed>@100ms|@1000ms)?$")
_DIFF = re.compile(r"^depth(?P<speed>@100ms|@1000ms)?$")
_WINDOW = re.compile(r"^ticker_(?P<window>1h|4h|1d)$")
_SIMPLE: dict[str, StreamKind] = {
    "trade": StreamKind.TRADE,
    "aggTrade": StreamKind.AGG_TRADE,
    "miniTicker": StreamKind.MINI_TICKER,
    "ticker": StreamKind.TICKER,
    "bookTicker": StreamKind.BOOK_TICKER,
    "avgPrice": StreamKind.AVG_PRICE,
    # Added to the docs 2026-03-09 (referencePrice) and 2026-05-11 (blockTrade).
    "referencePrice": StreamKind.REFERENCE_PRICE,
    "blockTrade": StreamKind.BLOCK_TRADE,
}
_ALL_WINDOW = re.compile(r"^!ticker_(?P<window>1h|4h|1d)@arr$")


@dataclass(frozen=True, slots=True)
class StreamName:
    """A parsed stream name.

    ``symbol`` is lower case (empty for market-wide streams); ``interval`` is the kline interval or
    ticker window; ``levels`` the partial-depth level count; ``speed_ms`` the update speed when the
    name states one (``@100ms``).
    """

    name: str
    kind: StreamKind
    symbol: str = ""
    interval: str = ""
    levels: int = 0
    speed_ms: int = 0

    def __str__(self) -> str:
        return self.name


def parse_stream(name: str) -> StreamName:
    """Parse a stream name exactly as Binance spells it, or raise `InvalidStreamName`."""
    if name == "!miniTicker@arr":
        return StreamName(name, StreamKind.ALL_MINI_TICKERS)
    if m := _ALL_WINDOW.match(name):
        return StreamName(name, StreamKind.ALL_WINDOW_TICKERS, interval=m["window"])
    symbol, sep, rest = name.partition("@")
    if not sep or not _SYMBOL.match(symbol):
        raise InvalidStreamName(f"invalid stream name {name!r}: expected <lowercase symbol>@<type>")
    if rest in _SIMPLE:
        return StreamName(name, _SIMPLE[rest], symbol)
    if m := _KLINE.match(rest):
        if m["interval"] not in KLINE_INTERVAL_MS:
            raise InvalidStreamName(f"invalid kline interval in {name!r}; valid intervals: "
                                    + ", ".join(KLINE_INTERVAL_MS))
        return StreamName(name, StreamKind.KLINE, symbol, interval=m["interval"])
    if m := _WINDOW.match(rest):
        return StreamName(name, StreamKind.WINDOW_TICKER, symbol, interval=m["window"])
    if m := _PARTIAL.match(rest):
        return StreamName(
            name, StreamKind.PARTIAL_DEPTH, symbol, levels=int(m["levels"]),
            speed_ms=_speed(m["speed"]),
        )
    if m := _DIFF.match(rest):
        return StreamName(name, StreamKind.DIFF_DEPTH, symbol, speed_ms=_speed(m["speed"]))
    raise InvalidStreamName(f"invalid stream name {name!r}: unknown stream type {rest!r}")


def _speed(suffix: str | None) -> int:
    return int(suffix[1:-2]) if suffix else 1000


def parse_stream_spec(spec: str) -> str:
    """Validate one ``--streams`` item (``ticker``, ``kline_1m``, ``depth20@100ms``) and return it.

    The item is the part after ``@``; market-wide ``!...@arr`` streams are accepted as they are.
    """
    if spec.startswith("!"):
        parse_stream(spec)
        return spec
    parse_stream(f"btcusdt@{spec}")
    return spec


def streams_for(symbols: list[str], specs: list[str]) -> list[str]:
    """All stream names for ``symbols`` x ``specs``, de-duplicated, in a stable order."""
    names: list[str] = []
    for spec in specs:
        parse_stream_spec(spec)
        if spec.startswith("!"):
            names.append(spec)
            continue
        names.extend(f"{s.lower()}@{spec}" for s in symbols)
    return list(dict.fromkeys(names))


def kind_names() -> list[str]:
    """The ``--streams`` spellings for help text."""
    return [
        "trade", "aggTrade", "blockTrade", "kline_<interval>", "miniTicker", "ticker",
        "ticker_<1h|4h|1d>", "bookTicker", "avgPrice", "referencePrice",
        "depth<5|10|20>[@100ms]", "depth[@100ms]", "!miniTicker@arr", "!ticker_<1h|4h|1d>@arr",
    ]
