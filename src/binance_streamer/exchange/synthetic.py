"""A deterministic synthetic market for any symbol (seeded; only event times follow the clock).

Prices are whole ticks and quantities whole steps of the symbol's `listings.listing`, the
``PRICE_FILTER`` ``tickSize`` and ``LOT_SIZE`` ``stepSize`` the exchange serves in
``exchangeInfo``; the book starts around the listing's base price (a real one for well-known
symbols). Each `step` is one taker order: an aggregate trade of one trade (mostly; up to five)
at the best bid or ask, which consumes that level's quantity (the whole level, and no more,
when the order is larger: the best price then moves), then `MAKERS` maker changes (a new level
inside the spread, or a level of the top 20, mostly near the best, changed or cancelled). A
``bookTicker`` follows every change of the best bid or ask, as on Binance ("Individual Symbol
Book Ticker Streams": any update to the best bid or ask's price or quantity). Each 100 ms grid
point publishes the levels changed since the last one on ``@depth@100ms`` and, every 1000 ms,
on ``@depth``. The book is never crossed nor empty. Ids are contiguous: trade ``t``, aggTrade
``a`` (with ``f``/``l`` covering its trades), depth ``U == previous u + 1``; every level change
is one update id. Payload shapes are Binance's (web-socket-streams.md); derived streams come
from `Market.periodic`.

The work per event is kept small for markets of thousands of symbols: integer ticks and lots,
cached price and quantity strings, ``bookTicker`` text built directly, depth changes tracked
only while a depth stream of the symbol is subscribed (or the history keeps everything), and
events encoded only when somebody receives them.
"""

from __future__ import annotations

import random
from typing import Any

from binance_streamer.exchange.frames import Event, decode
from binance_streamer.exchange.listings import fmt_units, listing
from binance_streamer.exchange.market import Market

__all__ = ["SyntheticSymbol"]

LEVELS = 20  # levels per side kept near the top (a side may briefly hold up to twice as many)
# Trades per aggregate trade, 100 draws: in the recorded aggTrade streams (2021) 91 % are one
# trade, 6 % two, 2 % three and about 1 % more.
_FILLS = (1,) * 91 + (2,) * 6 + (3,) * 2 + (5,)
# Maker changes per step, so that there are about 4.4 ``bookTicker`` updates per aggregate trade
# (as in the recorded capture of 2021-04-05: 5,408 to 1,240); about 40 % touch the best level.
MAKERS = 9
_SIZES = 64  # precomputed order sizes per symbol
# A maker's distance from the best level by 8 random bits: most orders go to the top levels.
_DEPTHS = tuple(int(((i + 0.5) / 256) ** 3 * LEVELS) for i in range(256))


def _sizes(rng: random.Random, lot_usd: float, low: float, high: float) -> list[int]:
    """Order sizes in lots worth about 10**low to 10**high USD each (at least one lot)."""
    return [max(1, round(10 ** rng.uniform(low, high) / lot_usd)) for _ in range(_SIZES)]


class SyntheticSymbol:
    """The synthetic market of one symbol (upper-case letters and digits, else ValueError),
    publishing into ``market``.

    With ``rest_history=False`` its trades and aggregate trades are not kept for REST (nor
    for the rolling windows of tickers and klines): for load tests whose clients never read
    them, as that bookkeeping is about a quarter of the work per event.
    """

    def __init__(self, market: Market, symbol: str, seed: int, *,
                 rest_history: bool = True) -> None:
        if not (symbol.isascii() and symbol.isalnum() and symbol.isupper()):
            raise ValueError(f"not a symbol: {symbol!r} (upper-case letters and digits)")
        self.market = market
        self.symbol = symbol
        lower = symbol.lower()
        self.state = market.symbol(symbol, synthetic=True)
        self.listing = item = listing(symbol)
        self.rng = rng = random.Random(f"{seed}:{symbol}")
        self.trade_id = rng.randrange(1_000_000, 500_000_000)
        self.agg_id = rng.randrange(1_000_000, 200_000_000)
        self.update_id = rng.randrange(1_000_000_000, 9_000_000_000)
        self.block_id = rng.randrange(100, 10_000)
        self._trade_sizes = _sizes(rng, item.lot_usd, 1.0, 3.3)
        self._level_sizes = _sizes(rng, item.lot_usd, 2.0, 4.5)
        self._prices: dict[int, str] = {}  # ticks -> price text
        self._qtys: dict[int, str] = {}  # lots -> quantity text
        self._names = (f"{lower}@trade", f"{lower}@aggTrade", f"{lower}@bookTicker",
                       f"{lower}@blockTrade", f"{lower}@depth@100ms", f"{lower}@depth")
        self._rest = rest_history
        self._subs = market.hub.subs
        self._history = market.history if market.history.limit is None else None
        # Changed levels (price tick -> None) since the last 100 ms and 1000 ms diff; the first
        # update id of each (0: none yet). Tracked only while a depth stream is subscribed (or
        # the history keeps everything).
        self._tracking = False
        self._version = -1
        self._changed: tuple[dict[int, None], dict[int, None]] = ({}, {})
        self._changed_s: tuple[dict[int, None], dict[int, None]] = ({}, {})
        self._first = self._first_s = 0
        mid = item.price // item.tick
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        for d in range(LEVELS):
            self.bids[mid - 1 - d] = self._level_size()
            self.asks[mid + 1 + d] = self._level_size()
        self.best_bid, self.best_ask = mid - 1, mid + 1
        self._floor = mid // 10  # no selling below: the price stays positive
        self.state.refresh = self._sync_book
        self.watch()

    # -- text -------------------------------------------------------------------------------

    def _price(self, ticks: int) -> str:
        text = self._prices.get(ticks)
        if text is None:
            if len(self._prices) > 4096:
                self._prices.clear()
            text = self._prices[ticks] = fmt_units(ticks * self.listing.tick)
        return text

    def _qty(self, lots: int) -> str:
        text = self._qtys.get(lots)
        if text is None:
            if len(self._qtys) > 16384:
                self._qtys.clear()
            text = self._qtys[lots] = fmt_units(lots * self.listing.step)
        return text

    def _level_size(self) -> int:
        return self._level_sizes[int(self.rng.random() * _SIZES)]

    # -- publication ------------------------------------------------------------------------

    def _publish(self, stream: str, payload: dict[str, Any]) -> None:
        """`Market.publish` for events with no REST state: history (when unbounded; a bounded
        history keeps only recorded streams) and subscribers."""
        if self._history is not None:
            self._history.add(stream, payload)
        conns = self._subs.get(stream)
        if conns:  # `Hub.publish`, inlined: this runs for every event
            event = Event(stream, payload)
            for conn in conns:
                conn.deliver(event)

    def _publish_text(self, stream: str, data: bytes) -> None:
        """`_publish` of an event given as its JSON text."""
        if self._history is not None:
            self._history.add(stream, decode(data))
        conns = self._subs.get(stream)
        if conns:
            event = Event(stream, None, data)
            for conn in conns:
                conn.deliver(event)

    def watch(self) -> None:
        """Track depth changes while a depth stream of this symbol is subscribed (checked at
        each grid point and REST snapshot, so a diff after a pause starts at the first change
        after the snapshot a client syncs from, at the latest)."""
        if self._version == self.market.hub.version:
            return
        self._version = self.market.hub.version
        subs = self._subs
        tracking = (self._history is not None or self._names[4] in subs
                    or self._names[5] in subs)
        if tracking != self._tracking:
            self._tracking = tracking
            for changed in (*self._changed, *self._changed_s):
                changed.clear()
            self._first = self._first_s = 0

    # -- the book ---------------------------------------------------------------------------

    def _set(self, is_bid: bool, ticks: int, lots: int) -> None:
        """Change one level (0 lots: remove it); every change is one order-book update id."""
        side = self.bids if is_bid else self.asks
        if lots:
            side[ticks] = lots
        else:
            del side[ticks]
        self.update_id += 1
        if self._tracking:
            if not self._first:
                self._first = self.update_id
            self._changed[0 if is_bid else 1][ticks] = None

    def step(self, now_ms: int) -> None:
        """One taker order and `MAKERS` maker changes, published at ``now_ms``; a
        ``bookTicker`` after each change of the best bid or ask (price or quantity)."""
        random_ = self.rng.random
        self._trade(now_ms, random_() < 0.5 and self.best_bid > self._floor)
        self._book_ticker()
        if random_() < 0.01:
            self._block_trade(now_ms)
        self._make()

    def _book_ticker(self) -> None:
        """The best bid and ask ("Individual Symbol Book Ticker Streams"), as JSON text."""
        stream = self._names[2]
        if self._history is None and stream not in self._subs:
            return
        bid, ask = self.best_bid, self.best_ask
        prices, qtys = self._prices, self._qtys
        bid_q, ask_q = self.bids[bid], self.asks[ask]
        # Symbols are [A-Z0-9] and amounts digits: nothing to escape.
        text = (f'{{"u":{self.update_id},"s":"{self.symbol}",'
                f'"b":"{prices.get(bid) or self._price(bid)}",'
                f'"B":"{qtys.get(bid_q) or self._qty(bid_q)}",'
                f'"a":"{prices.get(ask) or self._price(ask)}",'
                f'"A":"{qtys.get(ask_q) or self._qty(ask_q)}"}}')
        self._publish_text(stream, text.encode())

    def _trade(self, now_ms: int, sell: bool) -> None:
        """A taker order against the best bid (``sell``) or ask: trades at that price,
        together at most the level's quantity."""
        ticks = self.best_bid if sell else self.best_ask
        level = (self.bids if sell else self.asks)[ticks]
        price = self._price(ticks)
        first = self.trade_id + 1
        left = level
        random_, sizes, symbol, stream = self.rng.random, self._trade_sizes, self.symbol, \
            self._names[0]
        qtys = self._qtys
        add_trade = self.state.add_trade if self._rest else None
        for _ in range(_FILLS[int(random_() * 100)]):
            lots = min(left, sizes[int(random_() * _SIZES)])
            left -= lots
            self.trade_id += 1
            payload = {"e": "trade", "E": now_ms, "s": symbol, "t": self.trade_id, "p": price,
                       "q": qtys.get(lots) or self._qty(lots), "T": now_ms, "m": sell,
                       "M": True}
            if add_trade is not None:
                add_trade(payload)
            self._publish(stream, payload)
            if not left:
                break
        self.agg_id += 1
        payload = {"e": "aggTrade", "E": now_ms, "s": symbol, "a": self.agg_id, "p": price,
                   "q": self._qty(level - left), "f": first, "l": self.trade_id, "T": now_ms,
                   "m": sell, "M": True}
        if self._rest:
            self.state.add_agg(payload)
        self._publish(self._names[1], payload)
        self._set(sell, ticks, left)
        if not left:
            self._refill(sell)

    def _refill(self, is_bid: bool) -> None:
        """The best level of a side is gone: the next one is the best; an almost empty side
        gets a level behind its worst."""
        side = self.bids if is_bid else self.asks
        if len(side) < LEVELS // 2:
            worst = (min(side) if is_bid else max(side)) if side else (
                self.best_bid if is_bid else self.best_ask)
            self._set(is_bid, worst - 1 if is_bid else worst + 1, self._level_size())
        if is_bid:
            self.best_bid = max(self.bids)
        else:
            self.best_ask = min(self.asks)

    def _make(self) -> None:
        """`MAKERS` maker changes, each a new best level inside the spread (60 % when there is
        room), else a level among the top `LEVELS` set or cancelled (30 %, never the best),
        with a ``bookTicker`` when the best bid or ask changed; a side grown past twice
        `LEVELS` loses its worst level. One 32-bit draw decides each change."""
        getrandbits, sizes, changed = self.rng.getrandbits, self._level_sizes, self._changed
        for _ in range(MAKERS):
            bits = getrandbits(32)
            is_bid = bits & 1
            side = self.bids if is_bid else self.asks
            best = self.best_bid if is_bid else self.best_ask
            if self.best_ask - self.best_bid > 1 and (bits >> 1) & 255 < 154:
                ticks = best + 1 if is_bid else best - 1
            else:
                depth = _DEPTHS[(bits >> 9) & 255]
                ticks = best - depth if is_bid else best + depth
            if ticks != best and (bits >> 17) & 255 < 77 and ticks in side:
                self._set(bool(is_bid), ticks, 0)
                continue
            side[ticks] = sizes[(bits >> 25) & 63]  # `_set`, inlined
            self.update_id += 1
            if self._tracking:
                if not self._first:
                    self._first = self.update_id
                changed[0 if is_bid else 1][ticks] = None
            if len(side) > 2 * LEVELS:
                self._set(bool(is_bid), min(side) if is_bid else max(side), 0)
            if is_bid and ticks >= best:
                self.best_bid = ticks
                self._book_ticker()
            elif not is_bid and ticks <= best:
                self.best_ask = ticks
                self._book_ticker()

    def _block_trade(self, now_ms: int) -> None:
        """A block trade (web-socket-streams.md "Block Trade Streams"): off-book, own ids."""
        self.block_id += 1
        self._publish(self._names[3], {
            "e": "blockTrade", "E": now_ms, "s": self.symbol, "t": self.block_id,
            "p": self._price(self.best_bid), "q": self._qty(100 * self._trade_sizes[0]),
            "T": now_ms, "m": self.rng.random() < 0.5})

    def _sync_book(self) -> None:
        """Copy the book into the symbol state (done lazily, when a snapshot is read)."""
        self.watch()
        book = self.state.book
        book.bids = {self._price(t): self._qty(q) for t, q in self.bids.items()}
        book.asks = {self._price(t): self._qty(q) for t, q in self.asks.items()}
        book.last_update_id = self.update_id

    # -- depth diffs ------------------------------------------------------------------------

    def grid(self, now_ms: int, step_ms: int) -> None:
        """Publish the depth diffs due at this 100 ms grid point."""
        self.watch()
        if not self._first:
            if step_ms % 1000 == 0:
                self._publish_second(now_ms)
            return
        bids, asks = self._changed
        if self._history is not None or self._names[5] in self._subs:  # 1000 ms: the 100 ms ones
            self._changed_s[0].update(bids)
            self._changed_s[1].update(asks)
            self._first_s = self._first_s or self._first
        if self._history is not None or self._names[4] in self._subs:
            self._publish(self._names[4], self._diff(now_ms, self._first, bids, asks))
        self._changed = ({}, {})
        self._first = 0
        if step_ms % 1000 == 0:
            self._publish_second(now_ms)

    def _publish_second(self, now_ms: int) -> None:
        if self._first_s:
            bids, asks = self._changed_s
            self._publish(self._names[5], self._diff(now_ms, self._first_s, bids, asks))
            self._changed_s = ({}, {})
            self._first_s = 0

    def _diff(self, now_ms: int, first: int, bids: dict[int, None], asks: dict[int, None]
              ) -> dict[str, Any]:
        """A ``depthUpdate`` of the current quantity of each changed level (0: removed)."""
        return {"e": "depthUpdate", "E": now_ms, "s": self.symbol, "U": first,
                "u": self.update_id, "b": self._levels(bids, self.bids, True),
                "a": self._levels(asks, self.asks, False)}

    def _levels(self, changed: dict[int, None], side: dict[int, int], bids: bool
                ) -> list[list[str]]:
        """``[price, quantity]`` of each changed level, best first."""
        prices, qtys, out = self._prices, self._qtys, []
        for ticks in sorted(changed, reverse=bids):
            lots = side.get(ticks, 0)
            out.append([prices.get(ticks) or self._price(ticks),
                        qtys.get(lots) or self._qty(lots)])
        return out

    def __repr__(self) -> str:
        return (f"<SyntheticSymbol {self.symbol} bid={self._price(self.best_bid)} "
                f"ask={self._price(self.best_ask)} trade={self.trade_id} agg={self.agg_id} "
                f"update={self.update_id}>")
