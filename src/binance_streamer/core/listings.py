"""Recording every listed symbol while listings change: which symbols, what changed, where new
streams go, and how fast control messages may be sent.

Pure: callers pass ``exchangeInfo``'s symbols (`ListedSymbol`), the streams each connection
carries and the current monotonic time; nothing here sleeps, reads a clock or touches the network.

Binance facts used (web-socket-streams.md):

* "Live Subscribing/Unsubscribing to streams": ``{"method": "SUBSCRIBE" | "UNSUBSCRIBE",
  "params": [...], "id": N}`` changes a connection's streams without reconnecting;
* "WebSocket Limits": 5 incoming messages per second per connection (pings, pongs and control
  messages alike) and at most 1024 streams per connection.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

__all__ = [
    "MAX_PARAMS",
    "TRADING",
    "ControlMessage",
    "ControlPacer",
    "ExchangeListing",
    "ListedSymbol",
    "ListingChange",
    "Selection",
    "diff_listings",
    "next_control",
    "place_streams",
    "quotes",
]

TRADING = "TRADING"  # rest-api.md "ENUM definitions", Symbol status
# Stream names per control message: Binance documents no cap; a few hundred names keep a message
# a few kilobytes.
MAX_PARAMS = 200

Change = Literal["listed", "delisted", "status"]


class ListedSymbol(msgspec.Struct, frozen=True):
    """One symbol of ``GET /api/v3/exchangeInfo`` (rest-api.md "Exchange information")."""

    symbol: str
    status: str = ""
    base_asset: str = msgspec.field(name="baseAsset", default="")
    quote_asset: str = msgspec.field(name="quoteAsset", default="")
    spot: bool = msgspec.field(name="isSpotTradingAllowed", default=True)

    @property
    def recordable(self) -> bool:
        """True while it trades on the spot market: status ``TRADING`` and spot allowed."""
        return self.status == TRADING and self.spot


class ExchangeListing(msgspec.Struct, frozen=True):
    """The part of an ``exchangeInfo`` body the listing watcher reads."""

    symbols: list[ListedSymbol] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which symbols ``--all`` records: those quoted in ``quote`` (any when None), minus
    ``exclude``; upper case."""

    quote: str | None = None
    exclude: frozenset[str] = frozenset()

    def concerns(self, item: ListedSymbol) -> bool:
        """True when ``item`` is in scope whatever its status (its quote, not excluded)."""
        return ((self.quote is None or item.quote_asset.upper() == self.quote.upper())
                and item.symbol.upper() not in self.exclude)

    def symbols(self, listing: Iterable[ListedSymbol]) -> list[str]:
        """The symbols to record now, in the listing's order."""
        return [s.symbol for s in listing if s.recordable and self.concerns(s)]


def quotes(listing: Iterable[ListedSymbol]) -> list[str]:
    """The quote assets of the recordable symbols, sorted (for an error naming them)."""
    return sorted({s.quote_asset for s in listing if s.recordable and s.quote_asset})


@dataclass(frozen=True, slots=True)
class ListingChange:
    """One symbol's change between two listings; a status is None when not listed."""

    symbol: str
    change: Change
    old_status: str | None
    new_status: str | None

    @property
    def recorded_before(self) -> bool:
        """True when the symbol was recorded under the old listing."""
        return self.old_status == TRADING

    @property
    def recorded_now(self) -> bool:
        """True when the symbol is recorded under the new listing."""
        return self.new_status == TRADING


def _status(item: ListedSymbol | None) -> str | None:
    """A symbol's status as `ListingChange` keeps it: ``TRADING`` only when recordable."""
    if item is None:
        return None
    if item.status == TRADING and not item.spot:
        return "TRADING (not spot)"
    return item.status


def diff_listings(old: Iterable[ListedSymbol], new: Iterable[ListedSymbol],
                  selection: Selection) -> list[ListingChange]:
    """What changed from ``old`` to ``new`` for the symbols ``selection`` concerns, by symbol:
    ``listed`` (new), ``delisted`` (gone) or ``status`` (another status)."""
    before = {s.symbol: s for s in old if selection.concerns(s)}
    after = {s.symbol: s for s in new if selection.concerns(s)}
    changes: list[ListingChange] = []
    for symbol in sorted(before.keys() | after.keys()):
        was, now = _status(before.get(symbol)), _status(after.get(symbol))
        if was == now:
            continue
        kind: Change = "listed" if was is None else "delisted" if now is None else "status"
        changes.append(ListingChange(symbol, kind, was, now))
    return changes


def place_streams(loads: Mapping[int, int], streams: Sequence[str], cap: int
                  ) -> dict[int, list[str]]:
    """Which connection takes which of ``streams``: the least loaded existing connections
    (``loads``: index -> streams carried) first, up to ``cap`` streams each, then new
    connections numbered after the highest index, ``cap`` streams each.

    Raises `ValueError` unless ``1 <= cap <= 1024`` ("WebSocket Limits").
    """
    if not 1 <= cap <= 1024:
        raise ValueError(f"cap must be in 1..1024 (Binance's per-connection limit), got {cap!r}")
    placed: dict[int, list[str]] = {}
    pending = list(dict.fromkeys(streams))
    for index in sorted(loads, key=lambda i: (loads[i], i)):
        room = cap - loads[index]
        if room > 0 and pending:
            placed[index], pending = pending[:room], pending[room:]
    index = max(loads, default=-1) + 1
    while pending:
        placed[index], pending = pending[:cap], pending[cap:]
        index += 1
    return placed


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """A SUBSCRIBE or UNSUBSCRIBE of ``params``."""

    method: Literal["SUBSCRIBE", "UNSUBSCRIBE"]
    params: tuple[str, ...]

    def body(self, request_id: int) -> dict[str, object]:
        """The message as web-socket-streams.md "Live Subscribing/Unsubscribing" writes it."""
        return {"method": self.method, "params": list(self.params), "id": request_id}


def next_control(live: Iterable[str], wanted: Iterable[str], max_params: int = MAX_PARAMS
                 ) -> ControlMessage | None:
    """The next message that brings a connection's ``live`` streams towards ``wanted``:
    UNSUBSCRIBE first (it frees room under the cap), then SUBSCRIBE, at most ``max_params``
    names each; None when they agree."""
    have, want = dict.fromkeys(live), dict.fromkeys(wanted)
    gone = [s for s in have if s not in want]
    if gone:
        return ControlMessage("UNSUBSCRIBE", tuple(gone[:max_params]))
    new = [s for s in want if s not in have]
    if new:
        return ControlMessage("SUBSCRIBE", tuple(new[:max_params]))
    return None


class ControlPacer:
    """Keeps one connection's control messages to ``per_second`` in any sliding second.

    Binance allows 5 incoming messages per second per connection, pings and pongs included
    ("WebSocket Limits"); the default 3 leaves room for a pong and a ping of our own.
    """

    __slots__ = ("_per_second", "_sent", "_window")

    def __init__(self, per_second: int = 3, window_s: float = 1.0) -> None:
        if not 1 <= per_second <= 5:
            raise ValueError(f"per_second must be in 1..5, got {per_second!r}")
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a positive finite number, got {window_s!r}")
        self._per_second = per_second
        self._window = window_s
        self._sent: deque[float] = deque(maxlen=per_second)

    def delay(self, now: float) -> float:
        """Seconds to wait from ``now`` before the next message may go (0 to ``window_s``)."""
        if len(self._sent) < self._per_second:
            return 0.0
        return min(max(self._sent[0] + self._window - now, 0.0), self._window)

    def record(self, now: float) -> None:
        """Record one message sent at ``now``."""
        self._sent.append(now)

    def __repr__(self) -> str:
        return f"<ControlPacer {self._per_second}/{self._window:g}s recent={len(self._sent)}>"
