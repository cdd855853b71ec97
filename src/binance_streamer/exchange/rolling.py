"""Incremental rolling statistics: one symbol's aggregate trades in per-second buckets (`Tape`),
windows sliding over them (`Window`) and the candles of a kline stream (`Candles`).

Every trade costs O(1) (one bucket, one candle per kline stream) and every query O(1) amortised
(a bucket enters and leaves each window once; highs and lows are monotonic deques); memory is at
most `HORIZON_S` buckets per symbol, whatever the trade rate.

Exactness. Bucket ``k`` holds the trades with ``phase + (k-1)*1000 < T <= phase + k*1000``, so a
window ``now - span < T <= now`` with ``now`` on the symbol's second grid (``now ≡ phase`` mod
1000, which the timelines guarantee for every 1000 ms stream) is made of whole buckets and its
summary equals the recomputation over the trades themselves. Trades arrive in time order per
symbol; one more than `LAG_S` seconds older than the newest counts in the oldest open second.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque

from binance_streamer.exchange.stats import DAY_MS, Run, bucket_bounds

__all__ = ["HORIZON_S", "LAG_S", "Candles", "Tape", "Window"]

LAG_S = 5
HORIZON_S = DAY_MS // 1000 + LAG_S
NEVER = -(2**62)  # a time before any trade


class Tape:
    """One symbol's trades in per-second `Run`s (``key`` = second), the last `HORIZON_S`.

    Buckets up to ``sealed`` never change again; windows fold them in once. Stored in a list
    whose dropped head is compacted now and then, so seconds can be bisected.
    """

    def __init__(self, phase_ms: int = 0) -> None:
        self.phase = phase_ms % 1000
        self._runs: list[Run] = []
        self._head = 0  # runs before it are dropped
        self.sealed = NEVER

    @property
    def buckets(self) -> list[Run]:
        """The buckets, oldest first (a copy)."""
        return self._runs[self._head:]

    def __len__(self) -> int:
        return len(self._runs) - self._head

    def set_phase(self, phase_ms: int) -> None:
        """Put the second grid on ``phase_ms`` (mod 1000); only before the first trade."""
        if not len(self):
            self.phase = phase_ms % 1000

    def key(self, time_ms: int) -> int:
        """The second ``k`` holding trade time ``time_ms``: ``phase + (k-1)*1000 < T``
        and ``T <= phase + k*1000``."""
        return -((self.phase - time_ms) // 1000)

    def first_key(self) -> int | None:
        """The oldest second kept, None when empty."""
        return self._runs[self._head].key if len(self) else None

    def add(self, p: str, q: str, first: int, last: int, time: int, buyer_maker: bool, pu: int,
            qu: int) -> None:
        """Add one aggregate trade."""
        key = max(-((self.phase - time) // 1000), self.sealed + 1)  # `key`, inlined
        runs = self._runs
        empty = len(runs) == self._head
        if not empty and runs[-1].key == key:
            runs[-1].add(p, q, last, time, buyer_maker, pu, qu)
            return
        run = Run(key, p, q, first, last, time, buyer_maker, pu, qu)
        if empty or runs[-1].key < key:
            runs.append(run)
            self.sealed = key - LAG_S
            self._drop(key - HORIZON_S)
            return
        i = bisect_left(runs, key, lo=self._head, key=_key)  # an older open second
        if runs[i].key == key:
            runs[i].add(p, q, last, time, buyer_maker, pu, qu)
        else:
            runs.insert(i, run)

    def _drop(self, horizon: int) -> None:
        """Drop the seconds before ``horizon``, keeping one (its close is ``x``)."""
        runs = self._runs
        while len(runs) - self._head > 1 and runs[self._head + 1].key <= horizon:
            self._head += 1
        if self._head > 1024 and self._head * 2 > len(runs):
            del runs[:self._head]
            self._head = 0

    def newer_than(self, key: int) -> list[Run]:
        """The buckets after second ``key``, oldest first."""
        runs = self._runs
        i = len(runs)
        while i > self._head and runs[i - 1].key > key:
            i -= 1
        return runs[i:]

    def between(self, lo: int, hi: int) -> list[Run]:
        """The buckets with ``lo <= key <= hi``, oldest first."""
        runs = self._runs
        start = bisect_left(runs, lo, lo=self._head, key=_key)
        return runs[start:bisect_right(runs, hi, lo=start, key=_key)]

    def __repr__(self) -> str:
        return f"<Tape phase={self.phase} buckets={len(self)} sealed={self.sealed}>"


def _key(run: Run) -> int:
    return run.key


class Window:
    """The trades of a tape's last ``span_s`` seconds, for queries at non-decreasing times."""

    def __init__(self, tape: Tape, span_s: int) -> None:
        self.tape = tape
        self.span = span_s
        self._reset()

    def _reset(self) -> None:
        self.inside: deque[Run] = deque()  # sealed buckets in the window, oldest first
        self.highs: deque[Run] = deque()  # of `inside`: decreasing highs
        self.lows: deque[Run] = deque()  # of `inside`: increasing lows
        self.vol = self.quote = 0
        self.before: Run | None = None  # the newest sealed bucket before the window
        self.folded = NEVER  # the newest sealed bucket folded in
        self.at = NEVER

    def query(self, now_ms: int) -> tuple[Run | None, str | None]:
        """The run of the trades with ``now - span < T <= now`` (None when there are none) and
        the price of the last trade before them (None when the tape holds none)."""
        k = self.tape.key(now_ms)
        if k < self.at:
            self._reset()  # the clock went back (a looping replay): start over
        self.at = k
        lo = k - self.span
        limit = min(self.tape.sealed, k)
        self._evict(lo)
        for run in self.tape.newer_than(self.folded):
            if run.key > limit:
                break
            self._fold(run, lo)
        return self._combine(k, lo, limit)

    def _fold(self, run: Run, lo: int) -> None:
        self.folded = run.key
        if run.key <= lo:
            self.before = run
            return
        self.inside.append(run)
        self.vol += run.vol
        self.quote += run.quote
        while self.highs and self.highs[-1].high <= run.high:
            self.highs.pop()
        self.highs.append(run)
        while self.lows and self.lows[-1].low >= run.low:
            self.lows.pop()
        self.lows.append(run)

    def _evict(self, lo: int) -> None:
        inside = self.inside
        while inside and inside[0].key <= lo:
            run = self.before = inside.popleft()
            self.vol -= run.vol
            self.quote -= run.quote
            if self.highs[0] is run:
                self.highs.popleft()
            if self.lows[0] is run:
                self.lows.popleft()

    def _combine(self, k: int, lo: int, limit: int) -> tuple[Run | None, str | None]:
        """The sealed part and the open seconds ``(limit, k]`` of the window together."""
        before = self.before
        total: Run | None = None
        if self.inside:
            first, newest = self.inside[0], self.inside[-1]
            total = first.copy()
            total.merge(newest)
            total.high, total.low = self.highs[0].high, self.lows[0].low
            total.vol, total.quote = self.vol, self.quote
            total.buy_vol = total.buy_quote = 0  # not kept per window: tickers do not show them
        for run in self.tape.newer_than(limit):
            if run.key > k:
                break
            if run.key <= lo:
                before = run
            elif total is None:
                total = run.copy()
            else:
                total.merge(run)
        return total, (before.close if before is not None else None)

    def __repr__(self) -> str:
        return f"<Window {self.span}s buckets={len(self.inside)} at={self.at}>"


class Candles:
    """The candles of one kline stream (``interval``, grid shifted by ``tz_ms``) from the one
    last derived (``bounds``) on, fed trade by trade: ``runs`` maps open times to runs."""

    def __init__(self, interval: str, tz_ms: int, bounds: tuple[int, int],
                 runs: dict[int, Run]) -> None:
        self.interval = interval
        self.tz = tz_ms
        self.bounds = bounds
        self.runs = runs

    def open_of(self, time_ms: int) -> int:
        """The open time of the candle holding ``time_ms``."""
        return bucket_bounds(time_ms, self.interval, self.tz)[0]

    def add(self, p: str, q: str, first: int, last: int, time: int, buyer_maker: bool, pu: int,
            qu: int) -> None:
        """Add one trade."""
        lo, hi = self.bounds
        if time < lo:
            return  # its candle has closed on the stream already
        key = lo if time <= hi else self.open_of(time)
        run = self.runs.get(key)
        if run is None:
            self.runs[key] = Run(key, p, q, first, last, time, buyer_maker, pu, qu)
        else:
            run.add(p, q, last, time, buyer_maker, pu, qu)

    def advance(self, bounds: tuple[int, int]) -> Run | None:
        """Move on to the candle ``bounds``; the run of the candle left (for its closing
        update), None when it had no trades."""
        closed = self.runs.pop(self.bounds[0], None)
        for key in [key for key in self.runs if key < bounds[0]]:
            del self.runs[key]
        self.bounds = bounds
        return closed

    @property
    def current(self) -> Run | None:
        """The run of the candle ``bounds``."""
        return self.runs.get(self.bounds[0])

    def __repr__(self) -> str:
        return f"<Candles {self.bounds} runs={len(self.runs)}>"
