"""A symbol's REST history, stored column by column: aggregate trades and trades.

A stored aggregate trade costs about 50 bytes and a trade about 35 (quantities are kept as
integers of 1e-8 when they print back identically, as Binance's 8-decimal strings do; price
strings are shared), against about 600 for a payload dict, so a `history_limit` of a million
per symbol stays affordable. REST reads them through sequences that build the records on demand
(`AggView` of `AggRec`, `TradeView` of ``/api/v3/trades`` rows), so bisecting and slicing work
as on lists.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar, overload

from binance_streamer.exchange.stats import AggRec, Run, fmt8, fmt_units, units

__all__ = ["AggColumns", "AggSlice", "AggView", "TradeColumns", "TradeView"]

T = TypeVar("T")


def _canonical(text: str) -> bool:
    """Whether `fmt_units` prints ``units(text)`` back as ``text``: 8 decimals, ASCII digits,
    no sign, no padding."""
    return (len(text) >= 10 and text[-9] == "." and text.isascii() and text[:-9].isdigit()
            and text[-8:].isdigit() and (text[0] != "0" or len(text) == 10))


class _Columns:
    """Parallel columns trimmed like `history.trim`: once longer than ``limit`` by 10 %, back
    to the newest ``limit``. Quantities are integers of 1e-8; one that would not print back
    as received is kept as text in ``odd``, by absolute position."""

    def __init__(self, limit: int | None, ints: int) -> None:
        self.limit = limit
        self.ints = [array("q") for _ in range(ints)]
        self.qtys = array("q")
        self.prices: list[str] = []
        self.flags = bytearray()
        self.odd: dict[int, str] = {}
        self.dropped = 0  # entries trimmed so far: position i is absolute dropped + i

    def __len__(self) -> int:
        return len(self.flags)

    def _append_qty(self, q: str, qu: int | None) -> None:
        if _canonical(q):
            self.qtys.append(units(q) if qu is None else qu)
        else:
            self.odd[self.dropped + len(self.qtys)] = q
            self.qtys.append(0)

    def qty(self, i: int) -> str:
        """The ``i``-th quantity as received."""
        if self.odd:
            text = self.odd.get(self.dropped + i)
            if text is not None:
                return text
        return fmt_units(self.qtys[i])

    def _trim(self) -> None:
        limit = self.limit
        if limit is None or len(self.flags) <= limit + limit // 10:
            return
        excess = len(self.flags) - limit
        for column in (*self.ints, self.qtys):
            del column[:excess]
        del self.prices[:excess]
        del self.flags[:excess]
        self.dropped += excess
        if self.odd:
            self.odd = {k: v for k, v in self.odd.items() if k >= self.dropped}


class AggColumns(_Columns):
    """Aggregate trades: ids, prices, quantities, first/last trade ids, times, buyer maker."""

    def __init__(self, limit: int | None) -> None:
        super().__init__(limit, 4)
        self.ids, self.firsts, self.lasts, self.times = self.ints

    def append(self, agg_id: int, p: str, q: str, first: int, last: int, time: int,
               buyer_maker: bool, qu: int | None = None) -> None:
        """Store one aggregate trade (the oldest go past the limit); ``qu`` is ``units(q)``
        when known."""
        self.ids.append(agg_id)
        self.prices.append(p)
        self._append_qty(q, qu)
        self.firsts.append(first)
        self.lasts.append(last)
        self.times.append(time)
        self.flags.append(buyer_maker)
        self._trim()

    def rec(self, i: int) -> AggRec:
        """The ``i``-th stored aggregate trade as a REST record."""
        return AggRec.of(self.ids[i], self.prices[i], self.qty(i), self.firsts[i],
                         self.lasts[i], self.times[i], bool(self.flags[i]))


class TradeColumns(_Columns):
    """Trades: ids, prices, quantities, times, buyer maker."""

    def __init__(self, limit: int | None) -> None:
        super().__init__(limit, 2)
        self.ids, self.times = self.ints

    def append(self, trade_id: int, p: str, q: str, time: int, buyer_maker: bool) -> None:
        """Store one trade (the oldest go past the limit)."""
        self.ids.append(trade_id)
        self.prices.append(p)
        self._append_qty(q, None)
        self.times.append(time)
        self.flags.append(buyer_maker)
        self._trim()

    def row(self, i: int) -> dict[str, Any]:
        """The ``i``-th stored trade as a REST ``trades`` row."""
        p, q = self.prices[i], self.qty(i)
        return {"id": self.ids[i], "price": p, "qty": q,
                "quoteQty": fmt8(Decimal(p) * Decimal(q)), "time": self.times[i],
                "isBuyerMaker": bool(self.flags[i]), "isBestMatch": True}


class _Rows(Sequence[T]):
    """A read-only sequence over stored columns: subclasses give `__len__` and `_get`."""

    _what = "row"

    def _get(self, i: int) -> T:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self._get(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"{self._what} index out of range")
        return self._get(index)


class AggView(_Rows[AggRec]):
    """The stored aggregate trades as a read-only sequence of `AggRec`, oldest first."""

    _what = "aggregate trade"

    def __init__(self, columns: AggColumns) -> None:
        self._columns = columns

    def __len__(self) -> int:
        return len(self._columns)

    def _get(self, i: int) -> AggRec:
        return self._columns.rec(i)


class AggSlice(_Rows[AggRec]):
    """The stored aggregate trades ``lo..hi-1`` (a time range's) as a read-only sequence;
    ``summary()`` gives their `Run` without building the records (`stats.summarize`)."""

    _what = "aggregate trade"

    def __init__(self, columns: AggColumns, lo: int, hi: int,
                 summary: Callable[[], Run | None]) -> None:
        self._columns = columns
        self._lo = lo
        self._hi = max(lo, hi)
        self.summary = summary

    def __len__(self) -> int:
        return self._hi - self._lo

    def _get(self, i: int) -> AggRec:
        return self._columns.rec(self._lo + i)


class TradeView(_Rows[dict[str, Any]]):
    """The stored trades as a read-only sequence of REST rows, oldest first."""

    _what = "trade"

    def __init__(self, columns: TradeColumns) -> None:
        self._columns = columns

    def __len__(self) -> int:
        return len(self._columns)

    def _get(self, i: int) -> dict[str, Any]:
        return self._columns.row(i)
