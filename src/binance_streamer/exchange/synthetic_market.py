"""A synthetic market of many symbols with skewed activity: a few busy, a long quiet tail.

Symbol ``k`` (0-based, in the order given, busiest first) gets a share of the total step rate
proportional to ``1 / (k + 1) ** skew`` (Zipf's law; ``skew=0`` is uniform), and a seeded phase,
so the quiet symbols do not all step at the same instant. With ``n_symbols`` the symbols are
`listings.market_symbols`: the real TRADING spot symbols first, then invented ones.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from binance_streamer.exchange.listings import market_symbols
from binance_streamer.exchange.market import Market
from binance_streamer.exchange.synthetic import SyntheticSymbol
from binance_streamer.exchange.synthetic_timeline import Schedule, run_synthetic

__all__ = ["HaltableSymbol", "SyntheticMarket", "zipf_rates"]


def zipf_rates(n: int, total: float, skew: float) -> list[float]:
    """``n`` rates summing to ``total``, the ``k``-th proportional to ``1 / (k + 1) ** skew``."""
    weights = [1.0 / (k + 1) ** skew for k in range(n)]
    scale = total / sum(weights)
    return [w * scale for w in weights]


class SyntheticMarket:
    """``symbols`` (or the first ``n_symbols`` of `market_symbols`) publishing into ``market``
    at ``total_rate`` aggregate-trade steps per second in all, Zipf-skewed by ``skew``
    (``rest_history``: see `SyntheticSymbol`)."""

    def __init__(self, market: Market, symbols: Sequence[str] = (), *, n_symbols: int = 0,
                 total_rate: float = 1000.0, skew: float = 1.0, seed: int = 0,
                 rest_history: bool = True) -> None:
        names = [s.upper() for s in symbols] or market_symbols(n_symbols)
        if not names:
            raise ValueError("a synthetic market needs symbols or n_symbols > 0")
        if total_rate <= 0 or skew < 0:
            raise ValueError("total_rate must be positive and skew not negative")
        self.market = market
        self.symbols: list[SyntheticSymbol] = [
            HaltableSymbol(market, name, seed, rest_history=rest_history) for name in names]
        self.rates = zipf_rates(len(names), total_rate, skew)
        rng = random.Random(f"{seed}:phases")
        self.phases = [rng.random() for _ in names]

    def schedule(self, t0: int) -> Schedule:
        """The schedule of this market from ``t0`` (wall ms), to drive by hand."""
        return Schedule(self.market, self.symbols, self.rates, t0, self.phases)

    async def run(self) -> None:
        """Publish forever (`run_synthetic`), from now."""
        await run_synthetic(self.market, self.symbols, self.rates, phases=self.phases)

    def __repr__(self) -> str:
        return (f"<SyntheticMarket symbols={len(self.symbols)} "
                f"rate={sum(self.rates):,.0f}/s busiest={self.symbols[0].symbol}>")


class HaltableSymbol(SyntheticSymbol):
    """A `SyntheticSymbol` that publishes nothing while ``halted`` (a halted or delisted
    symbol: `LocalExchange.set_status`)."""

    halted = False

    def step(self, now_ms: int) -> None:
        """`SyntheticSymbol.step`, unless halted."""
        if not self.halted:
            super().step(now_ms)

    def grid(self, now_ms: int, step_ms: int) -> None:
        """`SyntheticSymbol.grid`, unless halted."""
        if not self.halted:
            super().grid(now_ms, step_ms)
