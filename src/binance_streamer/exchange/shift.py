"""Shifting recorded payloads in time and in id sequences, by payload kind. Pure: no I/O, no
clock, and the recorded payloads are never mutated (a shifted payload is a new dict).

Serves the replay's ``rebase_time`` (every recorded time moved by one delta) and ``loop`` (pass
``k`` moved by ``k`` times the recording's extent, so times and ids continue). Fields per kind
follow web-socket-streams.md (and rest-api.md "Order book" for ``lastUpdateId``):

- times: ``E``; trade times ``T``; kline ``k.t``/``k.T`` (a candle longer than the shift's
  grid is put back on its own grid, `Shift`); ticker ``O``/``C``; avgPrice ``T``;
  referencePrice ``t``;
- aggregate trade ids: aggTrade ``a``;
- trade ids: trade ``t``, aggTrade ``f``/``l``, kline ``k.f``/``k.L``, ticker ``F``/``L``;
- order book update ids: depthUpdate ``U``/``u`` (``pu`` where present), bookTicker ``u``,
  partial depth and REST snapshot ``lastUpdateId``;
- block trade ids: blockTrade ``t``.

Negative ids (``-1``: no trade in a ticker's window or a kline) stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

from binance_streamer.core.streams import KLINE_INTERVAL_MS

__all__ = ["Extents", "Shift", "Shifts", "Space"]


class Space(Enum):
    """What a numeric field counts: a time or one of a symbol's id sequences."""

    TIME = "time"
    AGG_ID = "agg_id"
    TRADE_ID = "trade_id"
    UPDATE_ID = "update_id"
    BLOCK_ID = "block_id"


class _Field(NamedTuple):
    key: str
    space: Space
    spans: bool = True  # counts for the sequence's extent (kline and ticker ids do not)


_E = _Field("E", Space.TIME)
_T = _Field("T", Space.TIME)
_WINDOW = (_E, _Field("O", Space.TIME), _Field("C", Space.TIME),
           _Field("F", Space.TRADE_ID, False), _Field("L", Space.TRADE_ID, False))
_KINDS: dict[str, tuple[_Field, ...]] = {
    "aggTrade": (_E, _T, _Field("a", Space.AGG_ID), _Field("f", Space.TRADE_ID),
                 _Field("l", Space.TRADE_ID)),
    "trade": (_E, _T, _Field("t", Space.TRADE_ID)),
    "blockTrade": (_E, _T, _Field("t", Space.BLOCK_ID)),
    "kline": (_E,),
    "24hrTicker": _WINDOW, "1hTicker": _WINDOW, "4hTicker": _WINDOW, "1dTicker": _WINDOW,
    "24hrMiniTicker": (_E,),
    "avgPrice": (_E, _T),
    "referencePrice": (_Field("t", Space.TIME),),
    "depthUpdate": (_E, _T, _Field("U", Space.UPDATE_ID), _Field("u", Space.UPDATE_ID),
                    _Field("pu", Space.UPDATE_ID)),
}
_KLINE_IDS = (_Field("f", Space.TRADE_ID, False), _Field("L", Space.TRADE_ID, False))
_KLINE = (_Field("t", Space.TIME), _Field("T", Space.TIME), *_KLINE_IDS)
_BOOK_TICKER = (_Field("u", Space.UPDATE_ID),)  # no ``e``: web-socket-streams.md
_BOOK = (_Field("lastUpdateId", Space.UPDATE_ID),)  # partial depth, REST depth snapshot


def _fields(payload: dict[str, Any]) -> tuple[_Field, ...]:
    kind = payload.get("e")
    if kind is not None:
        return _KINDS.get(kind, ())
    if "lastUpdateId" in payload:
        return _BOOK
    if "u" in payload and "b" in payload:
        return _BOOK_TICKER
    return ()


@dataclass(frozen=True, slots=True)
class Shift:
    """Amounts added to one symbol's times (ms) and id sequences."""

    time_ms: int = 0
    agg_ids: int = 0
    trade_ids: int = 0
    update_ids: int = 0
    block_ids: int = 0

    def amount(self, space: Space) -> int:
        """The amount added to fields of ``space``."""
        if space is Space.TIME:
            return self.time_ms
        if space is Space.AGG_ID:
            return self.agg_ids
        if space is Space.TRADE_ID:
            return self.trade_ids
        return self.update_ids if space is Space.UPDATE_ID else self.block_ids

    def __bool__(self) -> bool:
        return any((self.time_ms, self.agg_ids, self.trade_ids, self.update_ids,
                    self.block_ids))

    def apply(self, payload: Any) -> Any:
        """``payload`` (one symbol's event or a depth snapshot body) shifted: a new dict with
        the same keys in the same order; the payload itself when nothing moves or its kind
        holds no time or id."""
        if not self or not isinstance(payload, dict):
            return payload
        out = self._moved(payload, _fields(payload))
        if payload.get("e") == "kline":
            out["k"] = self._candle(payload["k"], payload.get("E"))
        return out

    def _candle(self, kline: dict[str, Any], event_ms: Any) -> dict[str, Any]:
        """A kline's ``k`` shifted. When the time shift is not a whole number of its interval
        (a candle longer than the replay's grid), the candle is put back on its own grid: the
        one of its interval holding the shifted event time (``E``, at most ``T``), as Binance
        would stream then."""
        out = self._moved(kline, _KLINE)
        interval = KLINE_INTERVAL_MS.get(kline.get("i", ""), 0)
        start, end = kline.get("t"), kline.get("T")
        if (not interval or not self.time_ms % interval or not isinstance(start, int)
                or not isinstance(end, int) or not isinstance(event_ms, int) or start < 0):
            return out
        at = min(event_ms, end) + self.time_ms
        out["t"] = start + (at - start) // interval * interval
        out["T"] = out["t"] + end - start
        return out

    def _moved(self, payload: dict[str, Any], fields: tuple[_Field, ...]) -> dict[str, Any]:
        out = dict(payload)
        for f in fields:
            value = out.get(f.key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                out[f.key] = value + self.amount(f.space)
        return out


@dataclass(frozen=True, slots=True)
class Shifts:
    """The shifts of one recording in one pass: ``symbols`` by symbol, ``default`` (times only)
    for symbols the recording does not otherwise name."""

    default: Shift = Shift()
    symbols: Mapping[str, Shift] = field(default_factory=dict)

    def apply(self, payload: Any, symbol: str) -> Any:
        """``payload`` shifted; ``symbol`` is used for payloads without ``s`` (partial depth,
        REST snapshots); arrays (``!miniTicker@arr``...) shift each element by its own ``s``."""
        if isinstance(payload, list):
            return [self.apply(p, p.get("s", symbol) if isinstance(p, dict) else symbol)
                    for p in payload]
        return self.symbols.get(symbol, self.default).apply(payload)


@dataclass
class Extents:
    """The ranges of recorded values: per symbol and id sequence ``(lowest, highest)`` (from the
    fields that define a sequence: trade ids from trades and aggregate trades, not from klines
    or tickers, unless nothing else carries them), and the widest range of any one time field
    of any one stream (not kline open and close times: they follow ``E``)."""

    ids: dict[tuple[str, Space], tuple[int, int]] = field(default_factory=dict)
    _weak_ids: dict[tuple[str, Space], tuple[int, int]] = field(default_factory=dict,
                                                                  init=False)
    _times: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict, init=False)

    def add(self, stream: str, symbol: str, payload: Any) -> None:
        """Take in one recorded payload of ``stream`` (``symbol`` for payloads without ``s``)."""
        if isinstance(payload, list):
            for p in payload:
                self.add(stream, p.get("s", symbol) if isinstance(p, dict) else symbol, p)
            return
        if not isinstance(payload, dict):
            return
        self._take(stream, symbol, payload, _fields(payload), "")
        if payload.get("e") == "kline":  # open and close times follow ``E`` (`Shift._candle`)
            self._take(stream, symbol, payload["k"], _KLINE_IDS, "k.")

    def _take(self, stream: str, symbol: str, payload: dict[str, Any],
              fields: tuple[_Field, ...], prefix: str) -> None:
        for f in fields:
            value = payload.get(f.key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                continue
            if f.space is Space.TIME:
                _widen(self._times, (stream, prefix + f.key), value)
            else:
                _widen(self.ids if f.spans else self._weak_ids, (symbol, f.space), value)

    @property
    def time_span_ms(self) -> int:
        """The widest ``highest - lowest`` of one time field of one stream (0 without times)."""
        return max((hi - lo for lo, hi in self._times.values()), default=0)

    def id_range(self, symbol: str, space: Space) -> tuple[int, int] | None:
        """``(lowest, highest)`` of a symbol's id sequence, None when nothing carries it."""
        key = (symbol, space)
        return self.ids.get(key) or self._weak_ids.get(key)


def _widen(ranges: dict[Any, tuple[int, int]], key: Any, value: int) -> None:
    lo, hi = ranges.get(key, (value, value))
    ranges[key] = (min(lo, value), max(hi, value))
