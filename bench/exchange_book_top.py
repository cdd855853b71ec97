"""The local exchange's partial depth (`OrderBook.top`): prices parsed once (cached) against
the previous full sort with a `Decimal` parsed per level per call, same run, same book.

    .venv/bin/python bench/exchange_book_top.py

The book is the real BTCUSDT snapshot of the bundled 2021-04-04 capture (1000 levels a side);
``@depth20@100ms`` calls ``top(20)`` ten times a second per symbol, REST ``/api/v3/depth``
``top(limit)`` once per request.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from binance_streamer.exchange import BUNDLED_SESSIONS
from binance_streamer.exchange.book import OrderBook
from binance_streamer.exchange.sources import load_source

ROUNDS = 300


def sorted_top(book: OrderBook, limit: int) -> dict[str, Any]:
    """The previous `OrderBook.top`: every level sorted, each price parsed on every call."""
    bids = sorted(book.bids.items(), key=lambda kv: Decimal(kv[0]), reverse=True)[:limit]
    asks = sorted(book.asks.items(), key=lambda kv: Decimal(kv[0]))[:limit]
    return {"lastUpdateId": book.last_update_id, "bids": [[p, q] for p, q in bids],
            "asks": [[p, q] for p, q in asks]}


def per_call_us(call: Any) -> float:
    start = time.perf_counter()
    for _ in range(ROUNDS):
        call()
    return (time.perf_counter() - start) / ROUNDS * 1e6


def main() -> None:
    path = next(p for p in BUNDLED_SESSIONS if "04-04" in p.name)
    snap = next(i.payload for i in load_source(path).items if i.snapshot_symbol == "BTCUSDT")
    book = OrderBook.from_snapshot(snap)
    print(f"{'call':<12}{'full sort (us)':>16}{'cached keys (us)':>20}{'ratio':>8}")
    for limit in (5, 20, 1000, 5000):
        assert book.top(limit) == sorted_top(book, limit)
        old = per_call_us(lambda limit=limit: sorted_top(book, limit))
        new = per_call_us(lambda limit=limit: book.top(limit))
        print(f"top({limit}){'':<{7 - len(str(limit))}}{old:>16.0f}{new:>20.0f}{old / new:>8.1f}")


if __name__ == "__main__":
    main()
