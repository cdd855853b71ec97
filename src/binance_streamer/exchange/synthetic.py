"""A deterministic synthetic market for any symbol (seeded; only event times follow the clock).

Each `step` is one aggregate trade of 1-3 trades at the best bid or ask, the book changes it
causes and a ``bookTicker``; each 100 ms grid point publishes the accumulated depth diff on
``@depth@100ms`` and, every 1000 ms, on ``@depth``. Ids are contiguous: trade ``t``, aggTrade
``a`` (with ``f``/``l`` covering its trades), depth ``U == previous u + 1``. Payload shapes are
Binance's (web-socket-streams.md); derived streams come from `Market.periodic`.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal
from typing import Any

from binance_streamer.exchange.market import Market
from binance_streamer.exchange.stats import fmt8

__all__ = ["SyntheticSymbol"]

LEVELS = 20


class _Diff:
    """Changed levels since the last publication of one diff stream."""

    def __init__(self) -> None:
        self.first_id = 0
        self.bids: dict[int, Decimal] = {}
        self.asks: dict[int, Decimal] = {}


class SyntheticSymbol:
    """The synthetic market of one symbol (upper case), publishing into ``market``."""

    def __init__(self, market: Market, symbol: str, seed: int) -> None:
        self.market = market
        self.symbol = symbol
        self.lower = symbol.lower()
        self.state = market.symbol(symbol, synthetic=True)
        rng = self.rng = random.Random(f"{seed}:{symbol}")
        price = 10 ** rng.uniform(-1.0, 4.7)
        self.tick = Decimal(1).scaleb(max(-8, math.floor(math.log10(price)) - 6))
        self.mid = int(Decimal(str(price)) / self.tick)
        self.trade_id = rng.randrange(1_000_000, 500_000_000)
        self.agg_id = rng.randrange(1_000_000, 200_000_000)
        self.update_id = rng.randrange(1_000_000_000, 9_000_000_000)
        self.block_id = rng.randrange(100, 10_000)
        self.bids: dict[int, Decimal] = {}
        self.asks: dict[int, Decimal] = {}
        self._diffs = {"@depth@100ms": _Diff(), "@depth": _Diff()}
        self._prices: dict[int, str] = {}
        self._reshape()
        self.state.refresh = self._sync_book
        for diff in self._diffs.values():
            diff.first_id = 0
            diff.bids.clear()
            diff.asks.clear()

    def _price(self, ticks: int) -> str:
        text = self._prices.get(ticks)
        if text is None:
            text = self._prices[ticks] = fmt8(ticks * self.tick)
        return text

    def _qty(self) -> Decimal:
        return Decimal(self.rng.randrange(1, 500_000)).scaleb(-5)

    def _set(self, side: dict[int, Decimal], is_bid: bool, ticks: int, qty: Decimal) -> None:
        """Change one level; every change is one order-book update id."""
        if qty <= 0:
            side.pop(ticks, None)
            qty = Decimal(0)
        else:
            side[ticks] = qty
        self.update_id += 1
        for diff in self._diffs.values():
            if not diff.first_id:
                diff.first_id = self.update_id
            (diff.bids if is_bid else diff.asks)[ticks] = qty

    def _reshape(self) -> None:
        """Make the book exactly LEVELS levels per side around ``mid`` (spread of 2 ticks)."""
        want_bids = set(range(self.mid - LEVELS, self.mid))
        want_asks = set(range(self.mid + 1, self.mid + 1 + LEVELS))
        for side, is_bid, want in ((self.bids, True, want_bids), (self.asks, False, want_asks)):
            for ticks in sorted(set(side) - want):
                self._set(side, is_bid, ticks, Decimal(0))
            for ticks in sorted(want - set(side)):
                self._set(side, is_bid, ticks, self._qty())

    def step(self, now_ms: int) -> None:
        """One aggregate trade and its book changes, published at ``now_ms``."""
        rng = self.rng
        if rng.random() < 0.3:
            self.mid += 1 if rng.random() < 0.5 else -1
            if self.mid < LEVELS + 2:
                self.mid = LEVELS + 2
            self._reshape()
        self._trade(now_ms, rng.random() < 0.5)
        if rng.random() < 0.01:
            self._block_trade(now_ms)
        level = self.mid - rng.randrange(1, LEVELS + 1)
        self._set(self.bids, True, level, self._qty())
        self._book_ticker()

    def _trade(self, now_ms: int, sell: bool) -> None:
        side = self.bids if sell else self.asks
        ticks = max(side) if sell else min(side)
        price = self._price(ticks)
        first = self.trade_id + 1
        total = Decimal(0)
        for _ in range(self.rng.choice((1, 1, 1, 2, 3))):
            self.trade_id += 1
            qty = self._qty()
            total += qty
            self.market.publish(f"{self.lower}@trade", {
                "e": "trade", "E": now_ms, "s": self.symbol, "t": self.trade_id, "p": price,
                "q": fmt8(qty), "T": now_ms, "m": sell, "M": True})
        self.agg_id += 1
        self.market.publish(f"{self.lower}@aggTrade", {
            "e": "aggTrade", "E": now_ms, "s": self.symbol, "a": self.agg_id, "p": price,
            "q": fmt8(total), "f": first, "l": self.trade_id, "T": now_ms, "m": sell, "M": True})
        left = side[ticks] - total
        self._set(side, sell, ticks, left if left > 0 else self._qty())

    def _block_trade(self, now_ms: int) -> None:
        """A block trade (web-socket-streams.md "Block Trade Streams"): off-book, own ids."""
        self.block_id += 1
        self.market.publish(f"{self.lower}@blockTrade", {
            "e": "blockTrade", "E": now_ms, "s": self.symbol, "t": self.block_id,
            "p": self._price(self.mid), "q": fmt8(self._qty() * 100), "T": now_ms,
            "m": self.rng.random() < 0.5})

    def _sync_book(self) -> None:
        """Copy the book into the symbol state (done lazily, when a snapshot is read)."""
        book = self.state.book
        book.bids = {self._price(t): fmt8(q) for t, q in self.bids.items()}
        book.asks = {self._price(t): fmt8(q) for t, q in self.asks.items()}
        book.last_update_id = self.update_id

    def _book_ticker(self) -> None:
        bid, ask = max(self.bids), min(self.asks)
        self.market.publish(f"{self.lower}@bookTicker", {
            "u": self.update_id, "s": self.symbol, "b": self._price(bid),
            "B": fmt8(self.bids[bid]), "a": self._price(ask), "A": fmt8(self.asks[ask])})

    def grid(self, now_ms: int, step_ms: int) -> None:
        """Publish the depth diffs due at this 100 ms grid point."""
        self._publish_diff("@depth@100ms", now_ms)
        if step_ms % 1000 == 0:
            self._publish_diff("@depth", now_ms)

    def _publish_diff(self, suffix: str, now_ms: int) -> None:
        diff = self._diffs[suffix]
        if not diff.first_id:
            return
        payload: dict[str, Any] = {
            "e": "depthUpdate", "E": now_ms, "s": self.symbol, "U": diff.first_id,
            "u": self.update_id,
            "b": [[self._price(t), fmt8(q)] for t, q in sorted(diff.bids.items(), reverse=True)],
            "a": [[self._price(t), fmt8(q)] for t, q in sorted(diff.asks.items())]}
        self._diffs[suffix] = _Diff()
        self.market.publish(self.lower + suffix, payload)

    def __repr__(self) -> str:
        return (f"<SyntheticSymbol {self.symbol} mid={self._price(self.mid)} "
                f"trade={self.trade_id} agg={self.agg_id} update={self.update_id}>")
