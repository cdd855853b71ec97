"""The backfill with an injected REST client: complete fills only, typed rows, one retry policy."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

import pytest

from binance_streamer.core.rest_payloads import DepthSnapshot, RestAggTrade, RestKline, RestTrade
from binance_streamer.core.sequencing import GapDetected, NeedSnapshot
from binance_streamer.core.tables import AGG_TRADE, DEPTH_SNAPSHOT, KLINE, TRADE, Row
from binance_streamer.errors import BadResponse, RateLimited, RestError
from binance_streamer.io.backfill import Backfiller
from binance_streamer.io.rest import RestClient
from tests.conftest import TIMEOUT


class FakeRest:
    """A REST client whose history ends at id ``known_up_to`` until ``catch_up_after`` calls,
    failing first with each of ``failures`` (per symbol)."""

    used_weight, weight_limit, microseconds = 0, 6000, False

    def __init__(self, known_up_to: int = 10**9, catch_up_after: int | None = None,
                 failures: dict[str, list[Exception]] | None = None) -> None:
        self.known_up_to = known_up_to
        self.catch_up_after = catch_up_after  # calls after which REST has everything
        self.failures = failures or {}
        self.calls = 0
        self.kline_lag_ms = 0  # > 0: klines answered from before the time asked (a faulty server)
        self.id_lag = 0  # > 0: trades answered from before the id asked (a faulty server)

    def _call(self, symbol: str) -> None:
        if self.calls == self.catch_up_after:
            self.known_up_to = 10**9
        self.calls += 1
        pending = self.failures.get(symbol)
        if pending:
            raise pending.pop(0)

    def _ids(self, from_id: int, limit: int) -> range:
        return range(from_id - self.id_lag, min(from_id + limit - 1, self.known_up_to) + 1)

    async def agg_trades(self, symbol: str, from_id: int, limit: int) -> list[RestAggTrade]:
        self._call(symbol)
        return [RestAggTrade(i, "1.0", "2.0", i, i, i, True, True)
                for i in self._ids(from_id, limit)]

    async def historical_trades(self, symbol: str, from_id: int, limit: int) -> list[RestTrade]:
        self._call(symbol)
        return [RestTrade(i, "1.0", "2.0", i, False) for i in self._ids(from_id, limit)]

    async def klines(self, symbol: str, interval: str, start: int, end: int | None
                     ) -> list[RestKline]:
        self._call(symbol)
        assert end is not None
        first = start + (-start) % 1_000 - self.kline_lag_ms
        opens = range(first, min(end, self.known_up_to) + 1, 1_000)
        return [RestKline(t, "1", "2", "0.5", "1.5", "10", t + 999, "15", 3, "4", "6")
                for t in opens]

    async def depth(self, symbol: str, limit: int) -> DepthSnapshot:
        self._call(symbol)
        return DepthSnapshot(77, [("1.0", "2.0")], [("1.1", "3.0")])


class Recorded:
    """What a Backfiller hands back: rows by table, and the gaps it reports filled."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Row]] = {}
        self.filled: list[tuple[GapDetected, int]] = []

    def submit(self, table: str, rows: list[Row]) -> None:
        self.rows.setdefault(table, []).extend(rows)

    def fill(self, gap: GapDetected, n: int) -> None:
        self.filled.append((gap, n))


def backfiller(rest: FakeRest, out: Recorded, **kw: Any) -> Backfiller:
    """A Backfiller over ``rest`` that waits no time between tries."""
    return Backfiller(cast(RestClient, rest), out.submit, out.fill,
                      delays=itertools.repeat(0.0), **kw)


async def run_until_idle(backfiller: Backfiller, *requests: GapDetected | NeedSnapshot) -> None:
    task = asyncio.create_task(backfiller.run())
    for request in requests:
        backfiller.request(request)
    await backfiller.drain(TIMEOUT)
    task.cancel()


async def test_a_gap_rest_can_only_partly_fill_is_not_marked_filled() -> None:
    """REST lagging behind the stream: rows it has are stored, the gap is retried, and after the
    last attempt it stays unfilled (the next start queues it again)."""
    out, rest = Recorded(), FakeRest(known_up_to=104)
    fill = backfiller(rest, out, max_attempts=3)
    await run_until_idle(fill, GapDetected("btcusdt@aggTrade", 100, 200, "id gap"))
    # Each of the 3 attempts asks for the missing ids, then once more past what REST has.
    assert out.filled == [] and fill.failures == 1 and rest.calls == 2 * 3
    assert sorted({r[1] for r in out.rows[AGG_TRADE.name]}) == [100, 101, 102, 103, 104]


async def test_a_gap_filled_after_rest_catches_up_is_reported_once() -> None:
    """When a retry finds every missing id, the gap is reported filled with its row count."""
    out = Recorded()
    fill = backfiller(FakeRest(known_up_to=150, catch_up_after=2), out)
    await run_until_idle(fill, GapDetected("btcusdt@aggTrade", 100, 200, "id gap"))
    assert [(g.first_missing, n) for g, n in out.filled] == [(100, 101)]
    assert fill.failures == 0


async def test_agg_trade_rows_are_the_table_rows_of_the_missing_ids_only() -> None:
    """A filled aggTrade gap stores exactly its ids, each row in agg_trade's column order."""
    out = Recorded()
    await run_until_idle(backfiller(FakeRest(), out),
                         GapDetected("btcusdt@aggTrade", 1_500, 2_600, "id gap"))
    rows = out.rows[AGG_TRADE.name]
    assert [r[1] for r in rows] == list(range(1_500, 2_601))
    assert rows[0] == ("BTCUSDT", 1_500, "1.0", "2.0", 1_500, 1_500, 1_500, True, True, None,
                       None, "rest")
    assert out.filled[0][1] == 1_101


async def test_trades_before_the_id_asked_are_neither_stored_nor_asked_again() -> None:
    """A server answering from before fromId gets only the gap's ids stored, and a page with no
    new id ends the attempt instead of asking for the same ids forever."""
    out, rest = Recorded(), FakeRest(known_up_to=104)
    rest.id_lag = 3
    fill = backfiller(rest, out, max_attempts=2)
    await run_until_idle(fill, GapDetected("btcusdt@trade", 100, 110, "id gap"))
    assert {r[1] for r in out.rows[TRADE.name]} == {100, 101, 102, 103, 104}
    assert out.filled == [] and fill.failures == 1 and rest.calls == 2 * 2


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


async def test_a_kline_gap_rest_cannot_fill_is_given_up() -> None:
    """Klines REST does not have yet leave the gap unfilled after the last attempt."""
    out, rest = Recorded(), FakeRest(known_up_to=5_999)
    fill = backfiller(rest, out, max_attempts=2)
    await run_until_idle(fill, GapDetected("btcusdt@kline_1s", 5_000, 7_000, "kline gap"))
    assert out.filled == [] and fill.failures == 1


async def test_klines_outside_the_gap_are_neither_stored_nor_counted() -> None:
    """A server answering klines from before the start asked for gets only the gap's klines
    stored and counted."""
    out, rest = Recorded(), FakeRest()
    rest.kline_lag_ms = 2_000
    await run_until_idle(backfiller(rest, out),
                         GapDetected("btcusdt@kline_1s", 5_000, 9_000, "kline gap"))
    assert [r[2] for r in out.rows[KLINE.name]] == [5_000, 6_000, 7_000, 8_000, 9_000]
    assert [n for _, n in out.filled] == [5]


async def test_a_server_answering_only_old_klines_does_not_make_the_fill_loop() -> None:
    """When the next page holds nothing after the start asked for, the attempt ends (short)
    instead of asking for the same start forever."""
    out, rest = Recorded(), FakeRest(known_up_to=6_999)
    rest.kline_lag_ms = 2_000
    fill = backfiller(rest, out, max_attempts=2)
    await run_until_idle(fill, GapDetected("btcusdt@kline_1s", 5_000, 9_000, "kline gap"))
    assert out.filled == [] and fill.failures == 1 and rest.calls == 2 * 2
    assert {r[2] for r in out.rows[KLINE.name]} == {5_000, 6_000}


async def test_snapshots_are_stored_with_their_receive_time() -> None:
    """A NeedSnapshot, and a diff-depth gap, each store one depth snapshot row."""
    out = Recorded()
    gap = GapDetected("btcusdt@depth@100ms", 5, 9, "depth chain broken")
    await run_until_idle(backfiller(FakeRest(), out), NeedSnapshot("btcusdt@depth", "initial"),
                         gap)
    rows = out.rows[DEPTH_SNAPSHOT.name]
    assert [r[:4] + r[5:] for r in rows] == [
        ("BTCUSDT", 77, '[["1.0","2.0"]]', '[["1.1","3.0"]]', "rest")] * 2
    assert all(isinstance(r[4], int) and r[4] > 0 for r in rows)
    assert out.filled == [(gap, 1)]


async def test_rate_limits_are_waited_out_and_counted() -> None:
    """429 answers are counted in rate_limited and retried; the gap is still filled."""
    out = Recorded()
    limited: list[Exception] = [RateLimited(429, 0.0), RateLimited(429, 0.0)]
    fill = backfiller(FakeRest(failures={"BTCUSDT": limited}), out)
    await run_until_idle(fill, GapDetected("btcusdt@aggTrade", 1, 2, "id gap"))
    assert fill.rate_limited == 2 and fill.failures == 0
    assert [n for _, n in out.filled] == [2]


async def test_client_errors_and_bad_answers_are_given_up_at_once() -> None:
    """A 4xx answer (our request is wrong) or a body of the wrong shape is not retried."""
    for failure in (RestError(400, -1100, "Illegal characters found in parameter"),
                    BadResponse("unexpected shape")):
        out, rest = Recorded(), FakeRest(failures={"BTCUSDT": [failure]})
        fill = backfiller(rest, out)
        await run_until_idle(fill, GapDetected("btcusdt@aggTrade", 1, 2, "id gap"))
        assert rest.calls == 1 and fill.failures == 1 and out.filled == []


async def test_each_gap_gets_all_its_attempts() -> None:
    """A gap given up on does not use up the tries of the next one."""
    busy = [RestError(503, None, "busy") for _ in range(10)]
    two = [RestError(503, None, "busy") for _ in range(2)]
    out = Recorded()
    fill = backfiller(FakeRest(failures={"BTCUSDT": busy, "ETHUSDT": two}), out, max_attempts=3)
    await run_until_idle(fill, GapDetected("btcusdt@aggTrade", 1, 2, "id gap"),
                         GapDetected("ethusdt@aggTrade", 1, 2, "id gap"))
    assert fill.failures == 1 and len(busy) == 7
    assert [(g.stream, n) for g, n in out.filled] == [("ethusdt@aggTrade", 2)]


def test_fewer_than_two_attempts_is_refused() -> None:
    """max_attempts below 2 (no retry at all) raises ValueError."""
    with pytest.raises(ValueError, match="max_attempts"):
        Backfiller(cast(RestClient, FakeRest()), Recorded().submit, Recorded().fill,
                   max_attempts=1)
