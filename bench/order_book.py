"""How fast does the core order book apply recorded depth diffs? (issue 10, target >= 1,000,000
price-level updates per second).

Reads real ``@depth@100ms`` diffs (``../shared/data/binance_spot_depthUpdate_100ms.jsonl``,
decoded once with msgspec as the recorder does), keeps each symbol's longest contiguous U/u
chain, and applies the chains ``--passes`` times to `binance_streamer.core.order_book.OrderBook`
(each pass starts from a snapshot just before its chain). Baseline in the same run: the same
diffs applied with `decimal.Decimal` parsing of every quantity into a dict keyed by Decimal
prices, the way hand-written books usually do it.

    .venv/bin/python bench/order_book.py [--passes 60]
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal
from pathlib import Path

import msgspec

from binance_streamer.core.order_book import OrderBook

DATA = Path(__file__).resolve().parents[2] / "shared/data/binance_spot_depthUpdate_100ms.jsonl"


class _Diff(msgspec.Struct):
    U: int
    u: int
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    s: str


class _Frame(msgspec.Struct):
    data: _Diff


def chains(path: Path) -> list[list[_Diff]]:
    """Each symbol's longest run of diffs with ``U == previous u + 1``."""
    decoder = msgspec.json.Decoder(_Frame)
    runs: dict[str, list[list[_Diff]]] = {}
    for line in path.read_bytes().splitlines():
        diff = decoder.decode(line).data
        symbol_runs = runs.setdefault(diff.s, [[]])
        current = symbol_runs[-1]
        if current and current[-1].u + 1 != diff.U:
            current = []
            symbol_runs.append(current)
        current.append(diff)
    return [max(r, key=len) for r in runs.values()]


def run_core(data: list[list[_Diff]], passes: int) -> tuple[int, float]:
    """Level updates applied and seconds taken by the core book."""
    updates, start = 0, time.perf_counter()
    for _ in range(passes):
        for chain in data:
            book = OrderBook()
            book.load_snapshot(chain[0].U - 1, [], [])
            for d in chain:
                book.apply(d.U, d.u, d.b, d.a)
            updates += book.updates
    return updates, time.perf_counter() - start


def run_decimal(data: list[list[_Diff]], passes: int) -> tuple[int, float]:
    """The same with Decimal prices and quantities, as hand-written books do."""
    updates, start = 0, time.perf_counter()
    for _ in range(passes):
        for chain in data:
            bids: dict[Decimal, Decimal] = {}
            asks: dict[Decimal, Decimal] = {}
            last = chain[0].U - 1
            for d in chain:
                if d.u <= last or last + 1 < d.U:
                    continue
                for side, levels in ((bids, d.b), (asks, d.a)):
                    for p, q in levels:
                        qty = Decimal(q)
                        if qty:
                            side[Decimal(p)] = qty
                        else:
                            side.pop(Decimal(p), None)
                        updates += 1
                last = d.u
    return updates, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=60)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    data = chains(args.data)
    diffs = sum(len(c) for c in data)
    print(f"{len(data)} symbols, {diffs} chained diffs x {args.passes} passes")
    print(f"{'book':<34}{'level updates':>15}{'seconds':>10}{'updates/s':>14}")
    rates = {}
    for name, run in (("Decimal dict (baseline)", run_decimal), ("core OrderBook", run_core)):
        updates, seconds = run(data, args.passes)
        rates[name] = updates / seconds
        print(f"{name:<34}{updates:>15,}{seconds:>10.2f}{rates[name]:>14,.0f}")
    ratio = rates["core OrderBook"] / rates["Decimal dict (baseline)"]
    print(f"core / baseline: {ratio:.1f}x  (target: >= 1,000,000 updates/s)")


if __name__ == "__main__":
    main()
