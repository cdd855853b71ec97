"""The backfill against the local exchange: a trade gap goes ahead of 200 queued snapshots, the
weight the exchange counts never passes the gaps' share of its limit, and a 429's Retry-After
holds every request back."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import msgspec
import pytest

from binance_streamer.core.backfill_queue import GAP_SHARE
from binance_streamer.core.sequencing import GapDetected, NeedSnapshot
from binance_streamer.core.tables import DEPTH_SNAPSHOT, Row
from binance_streamer.errors import RateLimited
from binance_streamer.exchange import LocalExchange
from binance_streamer.exchange.limits import Limits
from binance_streamer.io.backfill import Backfiller
from binance_streamer.io.rest import RestClient
from binance_streamer.samples import bundled_session
from tests.helpers import Signal

_T = TypeVar("_T")
LIMIT = 300  # the exchange's weight per minute, small so that 200 snapshots overrun it


class CountingRest(RestClient, Signal):
    """A RestClient noting when each request is sent, and each answer's path, the used weight
    the exchange reported (``X-MBX-USED-WEIGHT-1M``), whether it was a 429, and when."""

    def __init__(self, base_url: str, weight_limit: int) -> None:
        RestClient.__init__(self, base_url, weight_limit=weight_limit)
        Signal.__init__(self)
        self.sent: list[tuple[str, float]] = []
        self.answers: list[tuple[str, int, bool, float]] = []

    async def _get(self, decoder: msgspec.json.Decoder[_T], path: str, params: dict[str, Any]
                   ) -> _T:
        loop = asyncio.get_running_loop()
        self.sent.append((path, loop.time()))
        limited = False
        try:
            return await super()._get(decoder, path, params)
        except RateLimited:
            limited = True
            raise
        finally:
            self.answers.append((path, self.used_weight, limited, loop.time()))
            self.changed()


class Out(Signal):
    """What the Backfiller hands back: snapshots stored and gaps filled."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[str] = []
        self.filled: list[GapDetected] = []

    def submit(self, table: str, rows: list[Row]) -> None:
        if table == DEPTH_SNAPSHOT.name:
            self.snapshots.extend(str(row[0]) for row in rows)
        self.changed()

    def fill(self, gap: GapDetected, _rows: int) -> None:
        self.filled.append(gap)
        self.changed()


@asynccontextmanager
async def exchange_and_rest() -> AsyncIterator[tuple[LocalExchange, CountingRest]]:
    """A finished replay plus 200 synthetic symbols on an exchange allowing `LIMIT` weight a
    minute, and a client that knows that limit."""
    async with LocalExchange(replay=[bundled_session("cf_2021-04-04")], speed=None,
                             start="manual", synthetic_market=200,
                             limits=Limits(rest_weight_per_min=LIMIT)) as ex, \
            CountingRest(ex.rest_url, LIMIT) as rest:
        await ex.start()
        await ex.finished()
        yield ex, rest


@asynccontextmanager
async def running(fill: Backfiller) -> AsyncIterator[Backfiller]:
    task = asyncio.create_task(fill.run())
    try:
        yield fill
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def agg_gap(ex: LocalExchange) -> GapDetected:
    """A gap of 500 aggregate trades the exchange has (one aggTrades page)."""
    ids = [event["a"] for event in ex.history.events("btcusdt@aggTrade")]
    return GapDetected("btcusdt@aggTrade", ids[10], ids[509], "id gap")


async def test_a_gap_behind_200_snapshots_is_filled_first_within_the_weight_limit() -> None:
    """With 200 snapshots queued against a 300-weight limit, a trade gap asked for after them
    is filled while most still wait; the weight the exchange reports never passes 95 % of its
    limit and it never answers 429."""
    async with exchange_and_rest() as (ex, rest):
        symbols = sorted(s for s in ex.market.symbols if s != "BTCUSDT")[:200]
        out = Out()
        async with running(Backfiller(rest, out.submit, out.fill)) as fill:
            for symbol in symbols:
                fill.request(NeedSnapshot(f"{symbol.lower()}@depth@100ms", "initial"))
            await out.until(lambda: len(out.snapshots) >= 2)
            fill.request(agg_gap(ex))
            await out.until(lambda: bool(out.filled))
            assert fill.budget().snapshots_queued >= 160  # at most 2 minutes of 15 snapshots
            # 4 of 1000 levels (50 each) to 200, then 100 levels (5 each) up to 255: the
            # snapshots' share, 15 at most a minute
            await out.until(lambda: len(out.snapshots) >= 14)
            await rest.until(lambda: len(rest.answers) == len(rest.sent))
        assert out.filled == [agg_gap(ex)] and fill.rate_limited == 0
        assert [p for p, *_ in rest.answers].count("aggTrades") == 1
        assert not any(limited for *_, limited, _ in rest.answers)
        assert max(used for _, used, *_ in rest.answers) <= GAP_SHARE * LIMIT


async def test_a_retry_after_holds_every_request_back() -> None:
    """After the exchange answers 429 with Retry-After: 1, no request is sent for a second, and
    the gap and the snapshot asked for are then fetched."""
    async with exchange_and_rest() as (ex, rest):
        out = Out()
        ex.faults.rest_error(429, retry_after=1)
        at_once = Backfiller(rest, out.submit, out.fill, delays=lambda: itertools.repeat(0.0))
        async with running(at_once) as fill:
            fill.request(agg_gap(ex))
            await rest.until(lambda: bool(rest.answers))
            fill.request(NeedSnapshot("ethusdt@depth@100ms", "initial"))
            await out.until(lambda: bool(out.filled) and bool(out.snapshots))
        [(path, _, limited, limited_at)] = rest.answers[:1]
        assert (path, limited, fill.rate_limited) == ("aggTrades", True, 1)
        later = [at for _, at in rest.sent[1:]]
        assert len(later) == 2 and all(at >= limited_at + 1.0 for at in later)
