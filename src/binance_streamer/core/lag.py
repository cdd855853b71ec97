"""How late messages arrive: receive time minus Binance's event time, per stream kind and per
connection, in log-linear millisecond buckets (exact below 16 ms, then 8 buckets per power of two:
a quantile is at most 12.5% above the true one), so the hot path only counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["LagHistogram", "LagSummary", "LagTracker", "bucket_of", "bucket_top"]

K = TypeVar("K")
_EXACT = 16  # lags below this many ms have a bucket each
_SUB = 8  # buckets per power of two above that


def bucket_of(lag_ms: int) -> int:
    """The bucket of a lag (negative lags, a clock behind the exchange's, count as 0)."""
    if lag_ms < _EXACT:
        return max(lag_ms, 0)
    bits = lag_ms.bit_length()  # 5 or more
    return _EXACT + (bits - 5) * _SUB + (lag_ms >> (bits - 4)) - _SUB


def bucket_top(index: int) -> int:
    """The largest lag (ms) in bucket ``index``."""
    if index < _EXACT:
        return index
    power, sub = divmod(index - _EXACT, _SUB)
    shift = power + 1
    return ((sub + _SUB + 1) << shift) - 1


@dataclass(frozen=True, slots=True)
class LagSummary:
    """Quantiles of one histogram, in ms (bucket tops), and how many lags it counted."""

    count: int
    p50_ms: int
    p99_ms: int
    max_ms: int


class LagHistogram:
    """Counts of lags per bucket."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"<LagHistogram {self.summary()}>"

    @property
    def total(self) -> int:
        """How many lags were counted."""
        return sum(self.counts.values())

    def add(self, lag_ms: int) -> None:
        """Count one lag (the hot path: `bucket_of` inlined)."""
        if lag_ms < _EXACT:
            index = lag_ms if lag_ms > 0 else 0
        else:
            bits = lag_ms.bit_length()
            index = _EXACT + (bits - 5) * _SUB + (lag_ms >> (bits - 4)) - _SUB
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1

    def merge(self, other: LagHistogram) -> None:
        """Add ``other``'s counts to these."""
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n

    def quantile(self, q: float) -> int:
        """The lag (bucket top, ms) at or below which a fraction ``q`` of the lags lie; 0 when
        nothing was counted."""
        total = self.total
        if not total:
            return 0
        rank, seen = max(1, round(q * total)), 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return bucket_top(index)
        raise AssertionError("unreachable: the counts sum to total")  # pragma: no cover

    def summary(self) -> LagSummary:
        """Count, p50, p99 and max."""
        top = bucket_top(max(self.counts)) if self.counts else 0
        return LagSummary(self.total, self.quantile(0.5), self.quantile(0.99), top)


Summaries = tuple[dict[str, LagSummary], dict[int, LagSummary]]


class LagTracker:
    """Lags per stream, summed per stream kind and per connection for the current window and
    for the whole run. ``kind_of`` and ``connection_of`` name a stream's groups."""

    def __init__(self, kind_of: Callable[[str], str] = lambda stream: stream,
                 connection_of: Callable[[str], int] = lambda stream: 0) -> None:
        self.kind_of = kind_of
        self.connection_of = connection_of
        self.streams: dict[str, LagHistogram] = {}  # the current window
        self.run_kinds: dict[str, LagHistogram] = {}
        self.run_connections: dict[int, LagHistogram] = {}
        self._kinds_in: dict[str, LagHistogram] = {}  # from add_groups, this window
        self._connections_in: dict[int, LagHistogram] = {}

    def __repr__(self) -> str:
        return f"<LagTracker streams={len(self.streams)} kinds={sorted(self.run_kinds)}>"

    def observe(self, stream: str, lag_ms: int) -> None:
        """Count one message's lag (the hot path: one look-up and one count)."""
        hist = self.streams.get(stream)
        if hist is None:
            hist = self.streams[stream] = LagHistogram()
        if lag_ms < _EXACT:  # LagHistogram.add, inlined: this runs for every message
            index = lag_ms if lag_ms > 0 else 0
        else:
            bits = lag_ms.bit_length()
            index = _EXACT + (bits - 5) * _SUB + (lag_ms >> (bits - 4)) - _SUB
        counts = hist.counts
        counts[index] = counts.get(index, 0) + 1

    def take_groups(self) -> tuple[dict[str, LagHistogram], dict[int, LagHistogram]]:
        """The window since the last call, summed per kind and per connection (with what
        `add_groups` brought); its counts then join the run's."""
        streams, self.streams = self.streams, {}
        kinds, self._kinds_in = self._kinds_in, {}
        connections, self._connections_in = self._connections_in, {}
        for stream, hist in streams.items():
            kinds.setdefault(self.kind_of(stream), LagHistogram()).merge(hist)
            connections.setdefault(self.connection_of(stream), LagHistogram()).merge(hist)
        _fold(self.run_kinds, kinds.items())
        _fold(self.run_connections, connections.items())
        return kinds, connections

    def add_groups(self, kinds: dict[str, LagHistogram],
                   connections: dict[int, LagHistogram]) -> None:
        """Add another tracker's `take_groups` (a recording process of a fleet) to this
        window."""
        _fold(self._kinds_in, kinds.items())
        _fold(self._connections_in, connections.items())

    def take_window(self) -> Summaries:
        """Summaries of the window since the last call, per kind and per connection; the
        window's counts then join the run's."""
        kinds, connections = self.take_groups()
        return ({k: h.summary() for k, h in kinds.items()},
                {c: h.summary() for c, h in connections.items()})

    def run_summary(self) -> Summaries:
        """Summaries over the whole run so far (the current window included)."""
        self.take_window()
        return ({k: h.summary() for k, h in self.run_kinds.items()},
                {c: h.summary() for c, h in self.run_connections.items()})


def _fold(into: dict[K, LagHistogram], items: Iterable[tuple[K, LagHistogram]]) -> None:
    for key, hist in items:
        into.setdefault(key, LagHistogram()).merge(hist)
