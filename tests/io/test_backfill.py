"""The backfill with an injected REST client: complete fills only, retries, give-ups."""

from __future__ import annotations

import asyncio
from typing import Any

from binance_streamer.core.sequencing import GapDetected
from binance_streamer.errors import RestError
from binance_streamer.io.backfill import Backfiller
from tests.conftest import TIMEOUT


class LaggingRest:
    """A REST client whose aggTrades history ends at ``known_up_to`` until ``catch_up``."""

    used_weight, weight_limit, microseconds = 0, 6000, False

    def __init__(self, known_up_to: int, catch_up_after: int | None = None) -> None:
        self.known_up_to = known_up_to
        self.catch_up_after = catch_up_after  # calls after which REST has everything
        self.calls = 0

    async def agg_trades(self, symbol: str, from_id: int, limit: int) -> list[dict[str, Any]]:
        if self.calls == self.catch_up_after:
            self.known_up_to = 10**9
        self.calls += 1
        last = min(from_id + limit - 1, self.known_up_to)
        return [{"a": i, "p": "1.0", "q": "2.0", "f": i, "l": i, "T": i, "m": True, "M": True}
                for i in range(from_id, last + 1)]


async def run_until_idle(backfiller: Backfiller) -> None:
    task = asyncio.create_task(backfiller.run())
    await backfiller.drain(TIMEOUT)
    task.cancel()


async def test_a_gap_rest_can_only_partly_fill_is_not_marked_filled() -> None:
    """REST lagging behind the stream: rows it has are stored, the gap is retried, and after the
    last attempt it stays unfilled (the next start queues it again)."""
    stored: list[tuple[Any, ...]] = []
    filled: list[tuple[GapDetected, int]] = []
    rest = LaggingRest(known_up_to=104)
    backfiller = Backfiller(rest, lambda t, rows: stored.extend(rows),  # type: ignore[arg-type]
                            lambda g, n: filled.append((g, n)), max_attempts=3,
                            delays=iter(lambda: 0.0, None))
    backfiller.request(GapDetected("btcusdt@aggTrade", 100, 200, "id gap"))
    await run_until_idle(backfiller)
    # Each of the 3 attempts asks for the missing ids, then once more past what REST has.
    assert filled == [] and backfiller.failures == 1 and rest.calls == 2 * 3
    assert sorted({r[1] for r in stored}) == [100, 101, 102, 103, 104]


async def test_a_gap_filled_after_rest_catches_up_is_reported_once() -> None:
    """When a retry finds every missing id, the gap is reported filled with its row count."""
    filled: list[tuple[GapDetected, int]] = []
    rest = LaggingRest(known_up_to=150, catch_up_after=2)  # the first attempt falls short
    backfiller = Backfiller(rest, lambda t, rows: None,  # type: ignore[arg-type]
                            lambda g, n: filled.append((g, n)), delays=iter(lambda: 0.0, None))
    backfiller.request(GapDetected("btcusdt@aggTrade", 100, 200, "id gap"))
    await run_until_idle(backfiller)
    assert [(g.first_missing, n) for g, n in filled] == [(100, 101)]


async def test_client_errors_are_given_up_at_once() -> None:
    """A 4xx answer (our request is wrong) is not retried."""
    class Rejecting(LaggingRest):
        async def agg_trades(self, symbol: str, from_id: int, limit: int) -> list[Any]:
            self.calls += 1
            raise RestError(400, -1100, "Illegal characters found in parameter")
    rest = Rejecting(0)
    backfiller = Backfiller(rest, lambda t, r: None, lambda g, n: None)  # type: ignore[arg-type]
    backfiller.request(GapDetected("btcusdt@aggTrade", 1, 2, "id gap"))
    await run_until_idle(backfiller)
    assert rest.calls == 1 and backfiller.failures == 1
