"""How late messages arrive: receive time minus Binance's event time, per stream kind and per
connection, in log-linear millisecond buckets (exact below 16 ms, then 8 buckets per power of two:
a quantile is at most 12.5% above the true one), so the hot path only counts.
"""

from __future__ import annotations

from collections.abc import Iterable
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

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def __repr__(self) -> str:
        return f"<LagHistogram {self.summary()}>"

    def add(self, lag_ms: int) -> None:
        """Count one lag."""
        index = bucket_of(lag_ms)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.total += 1

    def merge(self, other: LagHistogram) -> None:
        """Add ``other``'s counts to these."""
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.total += other.total

    def quantile(self, q: float) -> int:
        """The lag (bucket top, ms) at or below which a fraction ``q`` of the lags lie; 0 when
        nothing was counted."""
        if not self.total:
            return 0
        rank, seen = max(1, round(q * self.total)), 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return bucket_top(index)
        raise AssertionError("unreachable: the counts sum to total")  # pragma: no cover

    def summary(self) -> LagSummary:
        """Count, p50, p99 and max."""
        top = bucket_top(max(self.counts)) if self.counts else 0
        return LagSummary(self.total, self.quantile(0.5), self.quantile(0.99), top)


class LagTracker:
    """Lags per stream kind and per connection, for the current window and the whole run."""

    def __init__(self) -> None:
        self.kinds: dict[str, LagHistogram] = {}
        self.connections: dict[int, LagHistogram] = {}
        self.run_kinds: dict[str, LagHistogram] = {}
        self.run_connections: dict[int, LagHistogram] = {}

    def __repr__(self) -> str:
        return f"<LagTracker kinds={sorted(self.kinds)} connections={sorted(self.connections)}>"

    def observe(self, kind: str, connection: int, lag_ms: int) -> None:
        """Count one message's lag (the hot path: two dict look-ups and two counts)."""
        hist = self.kinds.get(kind)
        if hist is None:
            hist = self.kinds[kind] = LagHistogram()
        hist.add(lag_ms)
        hist = self.connections.get(connection)
        if hist is None:
            hist = self.connections[connection] = LagHistogram()
        hist.add(lag_ms)

    def take_window(self) -> tuple[dict[str, LagSummary], dict[int, LagSummary]]:
        """Summaries of the window since the last call, per kind and per connection; the
        window's counts then join the run's."""
        kinds, self.kinds = self.kinds, {}
        conns, self.connections = self.connections, {}
        _fold(self.run_kinds, kinds.items())
        _fold(self.run_connections, conns.items())
        return ({k: h.summary() for k, h in kinds.items()},
                {c: h.summary() for c, h in conns.items()})

    def run_summary(self) -> tuple[dict[str, LagSummary], dict[int, LagSummary]]:
        """Summaries over the whole run so far (the current window included)."""
        self.take_window()
        return ({k: h.summary() for k, h in self.run_kinds.items()},
                {c: h.summary() for c, h in self.run_connections.items()})


def _fold(into: dict[K, LagHistogram], items: Iterable[tuple[K, LagHistogram]]) -> None:
    for key, hist in items:
        into.setdefault(key, LagHistogram()).merge(hist)
