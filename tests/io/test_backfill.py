"""The backfill with an injected REST client: complete fills only, typed rows, gaps before
snapshots, snapshots by stream activity, the budget view, and every gap retried on its own
back-off within the run."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from binance_streamer.core.backfill_queue import AGG_TRADES_WEIGHT, depth_weight
from binance_streamer.core.rest_payloads import DepthSnapshot, RestAggTrade, RestKline, RestTrade
from binance_streamer.core.sequencing import GapDetected, NeedSnapshot
from binance_streamer.core.tables import AGG_TRADE, DEPTH_SNAPSHOT, KLINE, TRADE, Row
from binance_streamer.errors import BadResponse, RateLimited, RestError, Unreachable
from binance_streamer.io.backfill import Backfiller
from binance_streamer.io.rest import RestClient
from tests.helpers import TIMEOUT, Signal

Request = GapDetected | NeedSnapshot
WEIGHTS: dict[str, Callable[[int], int]] = {
    "aggTrades": lambda _: AGG_TRADES_WEIGHT, "historicalTrades": lambda _: 25,
    "klines": lambda _: 2, "depth": depth_weight}


class FakeRest(Signal):
    """A REST client whose history ends at id ``known_up_to`` until ``catch_up_after`` calls,
    failing first with each of ``failures`` (per symbol); ``hold`` keeps an endpoint's answers
    back until its event is set; with ``charge``, each answer adds its request's weight to
    ``used_weight``, as Binance's header would."""

    microseconds = False

    def __init__(self, known_up_to: int = 10**9, catch_up_after: int | None = None,
                 failures: dict[str, list[Exception]] | None = None) -> None:
        super().__init__()
        self.known_up_to = known_up_to
        self.catch_up_after = catch_up_after  # calls after which REST has everything
        self.failures = failures or {}
        self.used_weight, self.weight_limit = 0, 6000
        self.calls: list[tuple[str, str, int, float]] = []  # endpoint, symbol, argument, time
        self.hold: dict[str, asyncio.Event] = {}
        self.kline_lag_ms = 0  # > 0: klines answered from before the time asked (a faulty server)
        self.id_lag = 0  # > 0: trades answered from before the id asked (a faulty server)
        self.skip_once: set[int] = set()  # ids left out of the next answer (a faulty server)
        self.snapshot_id = 77
        self.charge = False

    def asked(self, endpoint: str) -> list[int]:
        """The fromId, startTime or limit of each call to ``endpoint``, in order."""
        return [arg for name, _, arg, _ in self.calls if name == endpoint]

    async def _call(self, endpoint: str, symbol: str, arg: int) -> None:
        await self._ask(endpoint, symbol, arg)
        if self.charge:
            self.used_weight += WEIGHTS[endpoint](arg)

    async def _ask(self, endpoint: str, symbol: str, arg: int) -> None:
        if len(self.calls) == self.catch_up_after:
            self.known_up_to = 10**9
        self.calls.append((endpoint, symbol, arg, asyncio.get_running_loop().time()))
        self.changed()
        if endpoint in self.hold:
            await self.hold[endpoint].wait()
        pending = self.failures.get(symbol)
        if pending:
            raise pending.pop(0)

    def _ids(self, from_id: int, limit: int) -> list[int]:
        ids = range(from_id - self.id_lag, min(from_id + limit - 1, self.known_up_to) + 1)
        kept = [i for i in ids if i not in self.skip_once]
        self.skip_once = set()
        return kept

    async def agg_trades(self, symbol: str, from_id: int, limit: int) -> list[RestAggTrade]:
        await self._call("aggTrades", symbol, from_id)
        return [RestAggTrade(i, "1.0", "2.0", i, i, i, True, True)
                for i in self._ids(from_id, limit)]

    async def historical_trades(self, symbol: str, from_id: int, limit: int) -> list[RestTrade]:
        await self._call("historicalTrades", symbol, from_id)
        return [RestTrade(i, "1.0", "2.0", i, False) for i in self._ids(from_id, limit)]

    async def klines(self, symbol: str, interval: str, start: int, end: int | None
                     ) -> list[RestKline]:
        await self._call("klines", symbol, start)
        assert end is not None
        first = start + (-start) % 1_000 - self.kline_lag_ms
        opens = range(first, min(end, self.known_up_to) + 1, 1_000)
        return [RestKline(t, "1", "2", "0.5", "1.5", "10", t + 999, "15", 3, "4", "6")
                for t in opens]

    async def depth(self, symbol: str, limit: int) -> DepthSnapshot:
        await self._call("depth", symbol, limit)
        self.snapshot_id += 1
        return DepthSnapshot(self.snapshot_id - 1, [("1.0", "2.0")], [("1.1", "3.0")])


class Recorded(Signal):
    """What a Backfiller hands back: rows by table, gaps reported filled, snapshots taken."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[Row]] = {}
        self.filled: list[tuple[GapDetected, int]] = []
        self.snapshots: list[tuple[str, int, GapDetected | None]] = []

    def submit(self, table: str, rows: list[Row]) -> None:
        self.rows.setdefault(table, []).extend(rows)

    def fill(self, gap: GapDetected, n: int) -> None:
        self.filled.append((gap, n))
        self.changed()

    def snapshot(self, stream: str, last_update_id: int, gap: GapDetected | None) -> None:
        self.snapshots.append((stream, last_update_id, gap))
        self.changed()


class StoppedWall(Signal):
    """A wall clock stopped at 0.0 (the weight window never ends) that tells when it is read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        self.changed()
        return 0.0

    async def looked_at(self) -> None:
        """Return once the clock is read again."""
        seen = self.reads
        await self.until(lambda: self.reads > seen)


def no_wait() -> Iterator[float]:
    """Retry delays of nothing at all."""
    return itertools.repeat(0.0)


def backfiller(rest: FakeRest, out: Recorded, **kw: Any) -> Backfiller:
    """A Backfiller over ``rest`` reporting to ``out``, by default waiting no time between tries."""
    kw.setdefault("delays", no_wait)
    return Backfiller(cast(RestClient, rest), out.submit, out.fill, snapshot_taken=out.snapshot,
                      **kw)


@asynccontextmanager
async def running(backfiller: Backfiller, *requests: Request) -> AsyncIterator[Backfiller]:
    """``backfiller`` running, with ``requests`` made; cancelled on the way out."""
    task = asyncio.create_task(backfiller.run())
    for request in requests:
        backfiller.request(request)
    try:
        yield backfiller
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def run_until_idle(backfiller: Backfiller, *requests: Request) -> None:
    async with running(backfiller, *requests):
        await backfiller.drain(TIMEOUT)


def agg_gap(symbol: str = "btcusdt", first: int = 1, last: int = 2) -> GapDetected:
    return GapDetected(f"{symbol}@aggTrade", first, last, "id gap")


DEPTH_GAP = GapDetected("btcusdt@depth@100ms", 5, 9, "depth chain broken")


# -- rows ------------------------------------------------------------------------------------


async def test_agg_trade_rows_are_the_table_rows_of_the_missing_ids_only() -> None:
    """A filled aggTrade gap stores exactly its ids, each row in agg_trade's column order."""
    out = Recorded()
    await run_until_idle(backfiller(FakeRest(), out), agg_gap(first=1_500, last=2_600))
    rows = out.rows[AGG_TRADE.name]
    assert [r[1] for r in rows] == list(range(1_500, 2_601))
    assert rows[0] == ("BTCUSDT", 1_500, "1.0", "2.0", 1_500, 1_500, 1_500, True, True, None,
                       None, "rest")
    assert out.filled == [(agg_gap(first=1_500, last=2_600), 1_101)]


async def test_trade_gaps_are_filled_from_historical_trades() -> None:
    """A trade gap is filled with historicalTrades rows in the trade table's layout."""
    out = Recorded()
    await run_until_idle(backfiller(FakeRest(), out),
                         GapDetected("ethusdt@trade", 10, 12, "id gap"))
    assert out.rows[TRADE.name] == [("ETHUSDT", i, "1.0", "2.0", i, False, None, None, None,
                                     "rest") for i in (10, 11, 12)]
    assert [n for _, n in out.filled] == [3]


async def test_kline_gaps_are_filled_with_closed_klines() -> None:
    """A kline gap is filled with one row per missing open time, closed since long past."""
    out = Recorded()
    await run_until_idle(backfiller(FakeRest(), out),
                         GapDetected("btcusdt@kline_1s", 5_000, 7_000, "kline open time gap"))
    rows = out.rows[KLINE.name]
    assert [(r[0], r[1], r[2], r[12]) for r in rows] == [
        ("BTCUSDT", "1s", t, True) for t in (5_000, 6_000, 7_000)]
    assert [n for _, n in out.filled] == [3]


async def test_klines_outside_the_gap_are_neither_stored_nor_counted() -> None:
    """A server answering klines from before the start asked for gets only the gap's klines
    stored and counted."""
    out, rest = Recorded(), FakeRest()
    rest.kline_lag_ms = 2_000
    await run_until_idle(backfiller(rest, out),
                         GapDetected("btcusdt@kline_1s", 5_000, 9_000, "kline gap"))
    assert [r[2] for r in out.rows[KLINE.name]] == [5_000, 6_000, 7_000, 8_000, 9_000]
    assert [n for _, n in out.filled] == [5]


async def test_snapshots_are_stored_and_reported_not_filled() -> None:
    """A NeedSnapshot and a diff-depth gap each store a depth snapshot row with its receive time
    and are reported through snapshot_taken; the depth gap is not reported filled."""
    out = Recorded()
    await run_until_idle(backfiller(FakeRest(), out), NeedSnapshot("ethusdt@depth", "initial"),
                         DEPTH_GAP)
    rows = out.rows[DEPTH_SNAPSHOT.name]
    assert sorted(r[:4] + r[5:] for r in rows) == [
        (symbol, lid, '[["1.0","2.0"]]', '[["1.1","3.0"]]', "rest")
        for symbol, lid in (("BTCUSDT", 78), ("ETHUSDT", 77))]
    assert all(isinstance(r[4], int) and r[4] > 0 for r in rows)
    assert out.snapshots == [("ethusdt@depth", 77, None), ("btcusdt@depth@100ms", 78, DEPTH_GAP)]
    assert out.filled == []


async def test_a_depth_gap_is_never_reported_filled_by_the_backfiller() -> None:
    """A snapshot stored for a depth gap does not fill it: only a diff bridging the snapshot
    can, which the recorder decides; without snapshot_taken nothing is reported."""
    out = Recorded()
    fill = Backfiller(cast(RestClient, FakeRest()), out.submit, out.fill, delays=no_wait)
    await run_until_idle(fill, NeedSnapshot("btcusdt@depth@100ms", "initial"), DEPTH_GAP)
    assert out.filled == [] and len(out.rows[DEPTH_SNAPSHOT.name]) == 1


# -- lanes and weight --------------------------------------------------------------------------


async def test_a_snapshot_is_fetched_while_trade_pages_queue_and_one_is_in_flight() -> None:
    """A depth request made behind twenty trade gaps, one of whose pages gets no answer, is
    fetched and reported anyway: lanes do not wait for each other's answers."""
    out, rest = Recorded(), FakeRest()
    rest.hold["aggTrades"] = asyncio.Event()
    gaps = [agg_gap(first=i * 10_000, last=i * 10_000 + 5_000) for i in range(1, 21)]
    async with running(backfiller(rest, out), *gaps, NeedSnapshot("btcusdt@depth", "initial")):
        await out.until(lambda: bool(out.snapshots))
    assert rest.asked("aggTrades") == [10_000] and out.filled == []


async def test_a_gap_goes_ahead_while_snapshots_wait_for_the_weight_window() -> None:
    """With the snapshots' share of the minute's weight used up, a trade gap is still filled at
    once from the reserve kept for gaps, and no snapshot is sent."""
    out, rest = Recorded(), FakeRest()
    rest.used_weight = 5_400  # of 6000: past the 5398 of snapshots, within the 5700 of gaps
    async with running(backfiller(rest, out, wall=lambda: 0.0), agg_gap(),
                       NeedSnapshot("btcusdt@depth", "initial")):
        await out.until(lambda: bool(out.filled))
    assert rest.asked("aggTrades") == [1] and rest.asked("depth") == []


async def test_a_snapshot_past_the_bulk_budget_is_100_levels_deep() -> None:
    """Past the full-depth snapshots' share but within the small ones', a snapshot is fetched at
    once with 100 levels."""
    out, rest = Recorded(), FakeRest()
    rest.used_weight = 5_000  # past the 4800 of 1000-level snapshots, within 5100
    await run_until_idle(backfiller(rest, out, wall=lambda: 0.0),
                         NeedSnapshot("btcusdt@depth", "initial"))
    assert rest.asked("depth") == [100]


async def test_snapshots_are_1000_levels_deep_while_the_weight_is_plentiful() -> None:
    """Within the bulk budget a snapshot has the 1000 levels the order book guide fetches."""
    out, rest = Recorded(), FakeRest()
    rest.used_weight = 4_750
    await run_until_idle(backfiller(rest, out), NeedSnapshot("btcusdt@depth", "initial"))
    assert rest.asked("depth") == [1000]


async def test_a_lane_out_of_weight_resumes_in_the_next_minute() -> None:
    """Snapshots past their share wait for the minute to end, then go 1000 levels deep, after
    the gap that did not wait."""
    out, rest = Recorded(), FakeRest()
    rest.used_weight = 5_400
    loop = asyncio.get_running_loop()
    started = loop.time()
    fill = backfiller(rest, out, wall=lambda: 119.97 + loop.time() - started)  # minute ends soon
    await run_until_idle(fill, agg_gap(), NeedSnapshot("btcusdt@depth", "initial"))
    assert [name for name, *_ in rest.calls] == ["aggTrades", "depth"]
    assert rest.asked("depth") == [1000] and rest.calls[1][3] - started >= 0.53


async def test_a_used_weight_read_in_an_earlier_minute_holds_nothing_back() -> None:
    """The used weight an answer reported counts only within its minute: a gap requested in a
    later one is filled at once."""
    out, rest, clock = Recorded(), FakeRest(), [100.0]
    rest.used_weight = 5_900
    fill = backfiller(rest, out, wall=lambda: clock[0])
    clock[0] = 125.0
    await run_until_idle(fill, agg_gap())
    assert out.filled == [(agg_gap(), 2)]


async def test_klines_yield_the_weight_to_trade_pages() -> None:
    """Past the klines' share but within the trade pages', a trade gap is filled while an older
    kline gap waits."""
    out, rest = Recorded(), FakeRest()
    rest.used_weight = 5_500  # klines stop at 5400, trade pages at 5700
    kline_gap = GapDetected("btcusdt@kline_1s", 5_000, 7_000, "kline gap")
    async with running(backfiller(rest, out, wall=lambda: 0.0), kline_gap, agg_gap()) as fill:
        await out.until(lambda: bool(out.filled))
        assert rest.asked("klines") == [] and fill.open_gaps == 1
    assert out.filled == [(agg_gap(), 2)]


async def test_a_retry_after_pauses_every_lane() -> None:
    """After a 429 with Retry-After, no lane sends a request before it has passed: it is per
    IP."""
    out = Recorded()
    rest = FakeRest(failures={"BTCUSDT": [RateLimited(429, 0.2)]})
    async with running(backfiller(rest, out), agg_gap()) as fill:
        await rest.until(lambda: len(rest.calls) == 1)
        fill.request(NeedSnapshot("ethusdt@depth", "initial"))
        await out.until(lambda: bool(out.snapshots) and bool(out.filled))
    limited_at = rest.calls[0][3]
    assert all(at - limited_at >= 0.2 for *_, at in rest.calls[1:]) and len(rest.calls) == 3
    assert fill.rate_limited == 1 and fill.failures == 0


async def test_a_gap_behind_300_snapshots_that_used_their_weight_is_fetched_at_once() -> None:
    """With 300 snapshots queued and their share of the minute spent (96 of 1000 levels to 4800
    of 6000, then 119 of 100 levels to 5395, a page below the klines' 5400), a trade gap
    requested then is filled at once, before any further snapshot."""
    out, rest = Recorded(), FakeRest()
    rest.charge = True
    snapshots = [NeedSnapshot(f"s{i}usdt@depth@100ms", "initial") for i in range(300)]
    async with running(backfiller(rest, out, wall=StoppedWall()), *snapshots) as fill:
        await rest.until(lambda: len(rest.asked("depth")) == 215)
        assert rest.used_weight == 5_395 and fill.budget().snapshots_queued == 85
        fill.request(agg_gap())
        await out.until(lambda: bool(out.filled))
        assert len(rest.asked("depth")) == 215 and rest.used_weight == 5_399
    assert rest.asked("depth") == [1000] * 96 + [100] * 119


async def test_a_gap_requested_behind_200_snapshots_goes_before_the_next() -> None:
    """A trade gap requested while 200 snapshots queue is sent while at most one more snapshot
    is fetched, not after the queue."""
    out, rest = Recorded(), FakeRest()
    snapshots = [NeedSnapshot(f"s{i}usdt@depth@100ms", "initial") for i in range(200)]
    async with running(backfiller(rest, out), *snapshots) as fill:
        await rest.until(lambda: len(rest.calls) == 1)
        fill.request(agg_gap())
        await out.until(lambda: bool(out.filled))
    assert "aggTrades" in [name for name, *_ in rest.calls[:3]]


async def test_snapshots_are_taken_most_active_stream_first() -> None:
    """Snapshots queued together are fetched in order of their streams' activity, busiest
    first, whatever order they were asked in."""
    out, rest = Recorded(), FakeRest()
    rates = {"dogeusdt": 0.2, "btcusdt": 90.0, "xrpusdt": 3.0, "ethusdt": 40.0, "solusdt": 12.0}
    activity = {f"{symbol}@depth@100ms": rate for symbol, rate in rates.items()}
    fill = backfiller(rest, out, activity=activity.__getitem__)
    await run_until_idle(fill, *(NeedSnapshot(stream, "initial") for stream in activity))
    assert [symbol for name, symbol, *_ in rest.calls] == [
        "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"]


async def test_the_budget_shows_weight_in_flight_and_the_queue() -> None:
    """budget() gives the header's weight plus the requests in flight, the limit, the requests
    in flight, the jobs waiting per lane and the oldest one's wait."""
    out, rest = Recorded(), FakeRest()
    rest.used_weight = 1_000
    for endpoint in ("aggTrades", "depth"):
        rest.hold[endpoint] = asyncio.Event()
    requests = [NeedSnapshot(f"{s}@depth@100ms", "initial") for s in ("btcusdt", "ethusdt", "x")]
    kline = GapDetected("btcusdt@kline_1s", 5_000, 7_000, "kline gap")
    async with running(backfiller(rest, out, wall=StoppedWall()), *requests, agg_gap(),
                       agg_gap("ethusdt"), kline) as fill:
        await out.until(lambda: len(out.filled) == 1 and len(rest.calls) == 3)
        budget = fill.budget()
        assert (budget.used_weight, budget.weight_limit, budget.in_flight) == (1_054, 6_000, 2)
        assert (budget.gaps_queued, budget.snapshots_queued, budget.refreshes_queued) == (1, 2, 0)
        assert budget.oldest_queued_s is not None and budget.oldest_queued_s >= 0.0
        assert budget.summary() == "REST 1,054/6,000 w/min, queue 2 snapshots, 1 gaps"
        for event in rest.hold.values():
            event.set()
        await fill.drain(TIMEOUT)
        budget = fill.budget()
        assert (budget.used_weight, budget.in_flight, budget.oldest_queued_s) == (1_000, 0, None)


async def test_a_request_in_flight_counts_against_the_weight_before_its_answer() -> None:
    """While a trade page (weight 25) awaits its answer, a kline page that would fit by the last
    header but not with that page counted waits for the next minute."""
    out, rest = Recorded(), FakeRest()
    rest.used_weight = 5_380  # klines stop at 5400: 5380 + 2 fits, 5380 + 25 + 2 does not
    rest.hold["historicalTrades"] = asyncio.Event()
    kline = GapDetected("btcusdt@kline_1s", 5_000, 7_000, "kline gap")
    async with running(backfiller(rest, out, wall=StoppedWall()),
                       GapDetected("btcusdt@trade", 1, 2, "id gap"), kline) as fill:
        await rest.until(lambda: len(rest.calls) == 1)
        rest.hold["historicalTrades"].set()
        await out.until(lambda: bool(out.filled))
        assert rest.asked("klines") == [] and fill.budget().gaps_queued == 1


async def test_a_retry_after_shows_in_the_budget_as_a_pause() -> None:
    """After a 429 with Retry-After, budget() reports the pause and the 429 counted."""
    out = Recorded()
    rest = FakeRest(failures={"BTCUSDT": [RateLimited(429, 30.0)]})
    async with running(backfiller(rest, out), agg_gap()) as fill:
        await rest.until(lambda: len(rest.calls) == 1)  # the lane counts the 429 before it yields
        budget = fill.budget()
        assert 29.0 < budget.paused_s <= 30.0 and budget.rate_limited == 1
        assert budget.summary().endswith("paused 30s (Retry-After)")


# -- snapshots coalesce --------------------------------------------------------------------------


async def test_snapshot_requests_before_the_fetch_share_it() -> None:
    """Repeated requests for one stream's snapshot made before it is fetched are answered by one
    fetch, reported once per gap and once for the NeedSnapshots."""
    out, rest = Recorded(), FakeRest()
    need = NeedSnapshot("btcusdt@depth@100ms", "initial")
    await run_until_idle(backfiller(rest, out), need, DEPTH_GAP, need, DEPTH_GAP)
    assert rest.asked("depth") == [1000]
    assert out.snapshots == [("btcusdt@depth@100ms", 77, DEPTH_GAP),
                             ("btcusdt@depth@100ms", 77, None)]


async def test_snapshot_requests_during_the_fetch_share_one_more_fetch() -> None:
    """Requests for a stream's snapshot made while one is in flight are answered together by one
    further fetch, made after it."""
    out, rest = Recorded(), FakeRest()
    rest.hold["depth"] = asyncio.Event()
    later = GapDetected("btcusdt@depth@100ms", 20, 30, "depth chain broken")
    need = NeedSnapshot("btcusdt@depth@100ms", "too old to bridge")
    async with running(backfiller(rest, out), need) as fill:
        await rest.until(lambda: len(rest.calls) == 1)
        for request in (DEPTH_GAP, need, later):
            fill.request(request)
        rest.hold["depth"].set()
        await fill.drain(TIMEOUT)
    assert len(rest.asked("depth")) == 2
    assert out.snapshots == [("btcusdt@depth@100ms", 77, None),
                             ("btcusdt@depth@100ms", 78, DEPTH_GAP),
                             ("btcusdt@depth@100ms", 78, later),
                             ("btcusdt@depth@100ms", 78, None)]


# -- retries within the run ----------------------------------------------------------------------


async def test_a_gap_failing_while_rest_is_down_is_filled_once_rest_answers() -> None:
    """A gap whose requests find REST unreachable, eight times over, is filled in the same run
    once REST answers."""
    down: list[Exception] = [Unreachable("https://x", "connection refused") for _ in range(8)]
    out = Recorded()
    fill = backfiller(FakeRest(failures={"BTCUSDT": down}), out)
    await run_until_idle(fill, agg_gap())
    assert out.filled == [(agg_gap(), 2)] and fill.failures == 0 and fill.open_gaps == 0


async def test_server_errors_and_rate_limits_are_retried_and_counted() -> None:
    """503 and 429 answers are retried until the gap is filled; 429s are counted."""
    answers: list[Exception] = [RestError(503, None, "busy"), RateLimited(429, 0.0),
                                RateLimited(429, 0.0)]
    out = Recorded()
    fill = backfiller(FakeRest(failures={"BTCUSDT": answers}), out)
    await run_until_idle(fill, agg_gap())
    assert fill.rate_limited == 2 and fill.failures == 0 and [n for _, n in out.filled] == [2]


class Delays:
    """A delays factory recording, for each sequence it builds, the delays handed out."""

    def __init__(self) -> None:
        self.handed: list[list[float]] = []

    def __call__(self) -> Iterator[float]:
        mine: list[float] = []
        self.handed.append(mine)
        return self._doubling(mine)

    @staticmethod
    def _doubling(mine: list[float]) -> Iterator[float]:
        for n in itertools.count():
            mine.append(0.001 * 2**n)
            yield mine[-1]


async def test_failing_gaps_back_off_independently() -> None:
    """Each gap's retries follow its own delay sequence: a gap failing once waits the first
    delay, however often another gap failed before."""
    busy: list[Exception] = [RestError(503, None, "busy") for _ in range(3)]
    once: list[Exception] = [RestError(503, None, "busy")]
    delays, out = Delays(), Recorded()
    fill = backfiller(FakeRest(failures={"BTCUSDT": busy, "ETHUSDT": once}), out, delays=delays)
    await run_until_idle(fill, agg_gap("btcusdt"), agg_gap("ethusdt"))
    assert delays.handed == [[0.001, 0.002, 0.004], [0.001]]
    assert sorted(g.stream for g, _ in out.filled) == ["btcusdt@aggTrade", "ethusdt@aggTrade"]


async def test_a_later_gap_does_not_wait_for_an_earlier_gaps_back_off() -> None:
    """While a failed gap waits 30 s for its retry, a gap requested after it is filled."""
    down: list[Exception] = [Unreachable("https://x", "connection refused")]
    out, rest = Recorded(), FakeRest(failures={"BTCUSDT": down})
    fill = backfiller(rest, out, delays=lambda: itertools.repeat(30.0))
    async with running(fill, agg_gap("btcusdt"), agg_gap("ethusdt")):
        await out.until(lambda: bool(out.filled))
        assert out.filled == [(agg_gap("ethusdt"), 2)] and fill.open_gaps == 1
    assert rest.asked("aggTrades") == [1, 1]


@pytest.mark.parametrize("failure", [
    RestError(400, -1100, "Illegal characters found in parameter"), BadResponse("bad shape")])
async def test_a_fatal_failure_gives_the_gap_up_at_once(failure: Exception) -> None:
    """A 400 (our request is wrong) or a body of the wrong shape is not retried: the gap is given
    up, counted in failures, and no longer open."""
    out, rest = Recorded(), FakeRest(failures={"BTCUSDT": [failure]})
    fill = backfiller(rest, out)
    await run_until_idle(fill, agg_gap())
    assert len(rest.calls) == 1 and fill.failures == 1 and fill.open_gaps == 0
    assert out.filled == []


async def test_a_snapshot_given_up_counts_every_request_it_answered() -> None:
    """A snapshot fetch given up on counts one failure per gap and NeedSnapshot it answered."""
    out = Recorded()
    fill = backfiller(FakeRest(failures={"BTCUSDT": [RestError(400, -1121, "Invalid symbol")]}),
                      out)
    await run_until_idle(fill, NeedSnapshot("btcusdt@depth@100ms", "initial"), DEPTH_GAP)
    assert fill.failures == 2 and out.snapshots == [] and fill.open_gaps == 0


async def test_a_request_rest_cannot_fill_is_given_up() -> None:
    """A gap on a stream without ids is counted in failures and never sent to REST."""
    out, rest = Recorded(), FakeRest()
    fill = backfiller(rest, out)
    await run_until_idle(fill, GapDetected("btcusdt@ticker", 1, 2, "stale"))
    assert fill.failures == 1 and rest.calls == [] and fill.pending == 0


async def test_a_retry_resumes_where_rest_stopped() -> None:
    """REST lagging behind the stream: the rows it has are stored, and each retry asks from the
    first id still missing until REST has them all; the gap is reported filled once, with every
    row."""
    out, rest = Recorded(), FakeRest(known_up_to=150, catch_up_after=3)
    await run_until_idle(backfiller(rest, out), agg_gap(first=100, last=200))
    assert rest.asked("aggTrades") == [100, 151, 151, 151]
    assert out.filled == [(agg_gap(first=100, last=200), 101)]
    assert sorted(r[1] for r in out.rows[AGG_TRADE.name]) == list(range(100, 201))


async def test_a_gap_rest_cannot_fill_yet_stays_open_and_is_retried() -> None:
    """A gap REST has only part of is neither reported filled nor given up: it stays open and
    is asked for again from its first missing id."""
    out, rest = Recorded(), FakeRest(known_up_to=104)
    rest.id_lag = 3
    async with running(backfiller(rest, out), GapDetected("btcusdt@trade", 100, 110, "id gap")
                       ) as fill:
        await rest.until(lambda: len(rest.calls) >= 4)
        assert fill.open_gaps == 1 and fill.failures == 0 and out.filled == []
    assert rest.asked("historicalTrades")[:4] == [100, 105, 105, 105]
    assert {r[1] for r in out.rows[TRADE.name]} == {100, 101, 102, 103, 104}


async def test_a_kline_gap_rest_cannot_fill_yet_resumes_after_the_klines_it_has() -> None:
    """A server answering only old klines has the ones in the gap stored once, and is asked
    again from the first missing open time, never from the gap's start."""
    out, rest = Recorded(), FakeRest(known_up_to=6_999)
    rest.kline_lag_ms = 2_000
    async with running(backfiller(rest, out),
                       GapDetected("btcusdt@kline_1s", 5_000, 9_000, "kline gap")) as fill:
        await rest.until(lambda: len(rest.calls) >= 3)
        assert fill.open_gaps == 1 and out.filled == []
    assert rest.asked("klines")[:3] == [5_000, 6_001, 6_001]
    assert [r[2] for r in out.rows[KLINE.name]] == [5_000, 6_000]


async def test_a_pass_that_skipped_ids_starts_over() -> None:
    """When REST's pages reach the gap's end with an id left out, the gap is fetched again from
    its start, and reported filled once every id is stored."""
    out, rest = Recorded(), FakeRest()
    rest.skip_once = {102}
    gap = agg_gap(first=100, last=104)
    await run_until_idle(backfiller(rest, out), gap)
    assert rest.asked("aggTrades") == [100, 100] and out.filled == [(gap, 5)]


# -- open gaps and draining ----------------------------------------------------------------------


async def test_open_gaps_counts_requested_gaps_neither_filled_nor_given_up() -> None:
    """Id, kline and depth gaps count once each while unanswered (a NeedSnapshot and a repeated
    gap do not), and none once they are filled or snapshotted."""
    out, rest = Recorded(), FakeRest()
    for endpoint in ("aggTrades", "klines", "depth"):
        rest.hold[endpoint] = asyncio.Event()
    requests = [agg_gap(), agg_gap("ethusdt"), agg_gap(),
                GapDetected("btcusdt@kline_1s", 5_000, 7_000, "kline gap"),
                NeedSnapshot("btcusdt@depth@100ms", "initial"), DEPTH_GAP]
    async with running(backfiller(rest, out), *requests) as fill:
        await rest.until(lambda: len(rest.calls) == 3)
        assert (fill.open_gaps, fill.pending) == (4, 4)
        for event in rest.hold.values():
            event.set()
        await fill.drain(TIMEOUT)
        assert (fill.open_gaps, fill.pending, len(out.filled), len(out.snapshots)) == (0, 0, 3, 2)


async def test_drain_gives_up_waiting_at_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """drain returns after its timeout while a gap is still open, and says how many."""
    down: list[Exception] = [Unreachable("https://x", "connection refused")]
    fill = backfiller(FakeRest(failures={"BTCUSDT": down}), Recorded(),
                      delays=lambda: itertools.repeat(30.0))
    with caplog.at_level(logging.WARNING, "binance_streamer.io.backfill"):
        async with running(fill, agg_gap()):
            await fill.drain(0.05)
    assert fill.open_gaps == 1 and "stopping with 1 gap(s) still open" in caplog.text


def test_a_weight_budget_past_the_snapshot_reserve_is_refused() -> None:
    """A bulk weight budget leaving snapshots no reserve raises ValueError."""
    with pytest.raises(ValueError, match="weight budget"):
        backfiller(FakeRest(), Recorded(), weight_budget=0.99)


# -- periodic snapshots --------------------------------------------------------------------------


async def test_each_stream_gets_a_fresh_snapshot_one_interval_after_its_last() -> None:
    """With snapshot_every, a stream with a stored snapshot gets a full-depth one again at least
    that long after its last, reported with no gap; without it, only the one asked for."""
    out, rest = Recorded(), FakeRest()
    stream = "btcusdt@depth@100ms"
    async with running(backfiller(rest, out, snapshot_every=0.05), NeedSnapshot(stream, "initial")):
        await out.until(lambda: len(out.snapshots) >= 3)
    assert out.snapshots[:3] == [(stream, 77, None), (stream, 78, None), (stream, 79, None)]
    assert rest.asked("depth")[:3] == [1000] * 3 and out.filled == []
    times = [at for name, _, _, at in rest.calls if name == "depth"]
    assert all(later - earlier >= 0.05 for earlier, later in itertools.pairwise(times))
    once, alone = Recorded(), FakeRest()
    await run_until_idle(backfiller(alone, once), NeedSnapshot(stream, "initial"))
    assert once.snapshots == [(stream, 77, None)]


async def test_a_periodic_snapshot_waits_past_its_share_while_a_gap_snapshot_goes() -> None:
    """Past the periodic snapshots' share of the weight, a due one waits for the next minute,
    while a depth gap of the same stream takes it over and is fetched at once, 1000 levels
    deep."""
    out, rest = Recorded(), FakeRest()
    rest.used_weight = 3_000  # of 6000: past the 2400 of periodic snapshots, within the 4750
    stream = "btcusdt@depth@100ms"
    wall = StoppedWall()
    fill = backfiller(rest, out, snapshot_every=0.01, wall=wall)
    async with running(fill, NeedSnapshot(stream, "initial")):
        await out.until(lambda: len(out.snapshots) == 1)
        await wall.looked_at()  # the next look weighs the periodic snapshot, due by then
        fill.request(DEPTH_GAP)
        await out.until(lambda: len(out.snapshots) == 2)
        assert rest.asked("depth") == [1000, 1000]
    assert out.snapshots == [(stream, 77, None), (stream, 78, DEPTH_GAP)]


async def test_a_periodic_snapshot_given_up_counts_once_and_is_tried_again_later() -> None:
    """A periodic snapshot refused for good counts one failure, and the stream gets its next
    periodic snapshot one interval later."""
    rest, stream = FakeRest(), "btcusdt@depth@100ms"

    class RefuseTheNext(Recorded):
        """Once the first snapshot is stored, REST refuses the next request for good."""

        def snapshot(self, stream: str, last_update_id: int, gap: GapDetected | None) -> None:
            if not self.snapshots:
                rest.failures["BTCUSDT"] = [RestError(400, -1121, "Invalid symbol")]
            super().snapshot(stream, last_update_id, gap)

    out = RefuseTheNext()
    async with running(backfiller(rest, out, snapshot_every=0.05),
                       NeedSnapshot(stream, "initial")) as fill:
        await out.until(lambda: len(out.snapshots) == 2)
    assert fill.failures == 1 and len(rest.asked("depth")) == 3
    assert out.snapshots == [(stream, 77, None), (stream, 78, None)]


async def test_drain_does_not_wait_for_a_periodic_snapshot() -> None:
    """A periodic snapshot waiting for the next minute's weight holds no request, so drain
    returns at once."""
    out, rest = Recorded(), FakeRest()
    rest.used_weight = 3_000  # past the periodic snapshots' share: the due one waits
    wall = StoppedWall()
    fill = backfiller(rest, out, snapshot_every=0.01, wall=wall)
    async with running(fill, NeedSnapshot("btcusdt@depth", "initial")):
        await out.until(lambda: len(out.snapshots) == 1)
        await wall.looked_at()  # the next look weighs the periodic snapshot, due by then
        await asyncio.wait_for(fill.drain(TIMEOUT), TIMEOUT / 10)
        assert fill.pending == 0 and len(rest.asked("depth")) == 1


async def test_a_forgotten_stream_gets_no_more_snapshots_but_its_gaps_are_filled() -> None:
    """A delisted symbol (record --all): its periodic snapshots stop while another stream's go
    on; a gap of its trades is still filled; asked again (listed again), it starts afresh."""
    out, rest = Recorded(), FakeRest()
    gone, kept = "bnbusdt@depth@100ms", "btcusdt@depth@100ms"
    fill = backfiller(rest, out, snapshot_every=0.02)
    async with running(fill, NeedSnapshot(gone, "initial"), NeedSnapshot(kept, "initial")):
        await out.until(lambda: {s for s, _, _ in out.snapshots} == {gone, kept})
        fill.forget(gone)
        fill.request(GapDetected("bnbusdt@aggTrade", 5, 9, "gap"))
        await out.until(lambda: sum(s == kept for s, _, _ in out.snapshots) >= 5
                        and len(out.filled) == 1)
        assert sum(s == gone for s, _, _ in out.snapshots) <= 2  # at most one already running
        fill.request(NeedSnapshot(gone, "initial"))
        count = sum(s == gone for s, _, _ in out.snapshots)
        await out.until(lambda: sum(s == gone for s, _, _ in out.snapshots) >= count + 2)
    assert out.filled[0][0].stream == "bnbusdt@aggTrade"
