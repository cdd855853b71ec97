"""A read-only view of the backfill's REST budget: the weight used this minute against the limit
(rest-api.md "LIMITS", "IP Limits"), the requests in flight, the work queued per lane and how long
the oldest has waited, and any Retry-After pause. The status line and metrics show it.

Pure: built from values the caller passes, the monotonic time included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from binance_streamer.core.backfill_queue import GAP_LANES, BackfillQueue, Lane

__all__ = ["RestBudget"]


@dataclass(frozen=True, slots=True)
class RestBudget:
    """The REST budget at one moment.

    ``used_weight`` is the weight used in the current minute as far as this process knows
    (``X-MBX-USED-WEIGHT-1M`` of the last answer, every process on the IP included, plus its own
    requests in flight), of ``weight_limit``. ``queued`` counts jobs waiting per lane (ready or
    backing off, not in flight); ``oldest_queued_s`` is how long the oldest open job has waited
    (None: nothing open). ``paused_s`` is what is left of a 429/418 Retry-After (0: none), and
    ``rate_limited`` counts those answers.
    """

    used_weight: int
    weight_limit: int
    in_flight: int
    queued: Mapping[Lane, int]
    oldest_queued_s: float | None
    paused_s: float = 0.0
    rate_limited: int = 0

    @classmethod
    def of(cls, queue: BackfillQueue, *, used_weight: int, weight_limit: int, now: float,
           paused_until: float = 0.0, rate_limited: int = 0) -> RestBudget:
        """The budget of ``queue`` at monotonic time ``now``, paused until ``paused_until``."""
        oldest = queue.oldest()
        return cls(used_weight, weight_limit, queue.in_flight,
                   MappingProxyType(queue.queued()),
                   None if oldest is None else max(0.0, now - oldest),
                   max(0.0, paused_until - now), rate_limited)

    @classmethod
    def combined(cls, budgets: list[RestBudget]) -> RestBudget | None:
        """The budgets of several processes on one IP as one: the weight used is the IP's (the
        largest seen), the work queued and in flight summed; None for no budget."""
        if not budgets:
            return None
        queued: dict[Lane, int] = {}
        for budget in budgets:
            for lane, n in budget.queued.items():
                queued[lane] = queued.get(lane, 0) + n
        oldest = [b.oldest_queued_s for b in budgets if b.oldest_queued_s is not None]
        return cls(max(b.used_weight for b in budgets), max(b.weight_limit for b in budgets),
                   sum(b.in_flight for b in budgets), MappingProxyType(queued),
                   max(oldest, default=None), max(b.paused_s for b in budgets),
                   sum(b.rate_limited for b in budgets))

    def portable(self) -> RestBudget:
        """This budget with plain containers, so it can be pickled to another process."""
        return RestBudget(self.used_weight, self.weight_limit, self.in_flight,
                          dict(self.queued), self.oldest_queued_s, self.paused_s,
                          self.rate_limited)

    @property
    def gaps_queued(self) -> int:
        """Trade, aggTrade and kline gaps waiting."""
        return sum(self.queued.get(lane, 0) for lane in GAP_LANES)

    @property
    def snapshots_queued(self) -> int:
        """Depth snapshots waiting that re-anchor a book (periodic ones aside)."""
        return self.queued.get(Lane.DEPTH, 0)

    @property
    def refreshes_queued(self) -> int:
        """Periodic depth snapshots waiting."""
        return self.queued.get(Lane.REFRESH, 0)

    def summary(self) -> str:
        """One line for a status display, e.g. ``REST 1,234/6,000 w/min, queue 812 snapshots,
        0 gaps``; periodic snapshots and a Retry-After pause are added when there are any."""
        parts = [f"REST {self.used_weight:,}/{self.weight_limit:,} w/min",
                 f"queue {self.snapshots_queued:,} snapshots", f"{self.gaps_queued:,} gaps"]
        if self.refreshes_queued:
            parts.append(f"{self.refreshes_queued:,} refreshes")
        if self.paused_s > 0:
            parts.append(f"paused {self.paused_s:.0f}s (Retry-After)")
        return ", ".join(parts)

    def __repr__(self) -> str:
        queued = " ".join(f"{lane.name.lower()}={n}" for lane, n in self.queued.items())
        oldest = "-" if self.oldest_queued_s is None else f"{self.oldest_queued_s:.1f}s"
        return (f"<RestBudget {self.used_weight}/{self.weight_limit} in_flight={self.in_flight} "
                f"{queued} oldest={oldest} paused={self.paused_s:.1f}s "
                f"rate_limited={self.rate_limited}>")
