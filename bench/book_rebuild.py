"""How long does rebuilding an order book from a day's recording take? (issue 10: a book at any
moment of a day of BTCUSDT ``@depth@100ms``, about 864,000 diffs, in under 1 s).

Builds, once (cached in ``--dir``), a SQLite recording in the recorder's own schema, through
`storage.open.open_sink` and `Batch` as the recorder writes it: ``--hours`` (24) of BTCUSDT
diffs, one every 100 ms (864,000 ``depth_update`` rows), each changing 1-30 price levels of a
book around 60,000.00 (a quarter of them deletions, quantity ``0.00000000``), chained
``U = previous u + 1`` with 1-40 update ids each, event times 100 ms apart; and a
``depth_snapshot`` (1000 levels a side, the book at that point, ``lastUpdateId`` the last
diff's ``u``, so the next diff bridges it) at the start and then every hour. Row shapes are
the recorder's (`core.tables`): levels as Binance's ``[["price","qty"], ...]`` JSON text.

Then times `binance_streamer.books.order_book(db, "BTCUSDT", at)` at ``--moments`` (20) random
moments of the day (seeded), each rebuild on its own, on two copies of that recording:

* **one snapshot at the start** (baseline): what the recorder stored before
  ``--snapshot-every``; a rebuild replays every diff since midnight;
* **a snapshot every hour**: ``record --snapshot-every 1h``, the default.

For each it prints p50 and max of the whole rebuild and of its first step alone (opening the
database and `DepthReader.last_diff_at`: the diff with the highest ``u`` at or before the
moment); the rest is loading the snapshot and replaying the diffs after it. The books must be
the same in both.

    .venv/bin/python bench/book_rebuild.py [--moments 20] [--hours 24] [--dir /tmp/book_rebuild]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from binance_streamer.books import order_book
from binance_streamer.core.tables import DEPTH_SNAPSHOT, DIFF_DEPTH, Row
from binance_streamer.storage.base import Batch
from binance_streamer.storage.depth import DepthReader
from binance_streamer.storage.open import open_reader, open_sink

SYMBOL = "BTCUSDT"
DAY_START_MS = 1_617_580_800_000  # 2021-04-05T00:00:00Z
STEP_MS = 100  # @depth@100ms
HOUR_MS = 3_600_000
MID = 6_000_000  # 60,000.00 in ticks of 0.01
SNAPSHOT_LEVELS = 1000
ROWS_PER_BATCH = 50_000
_ENCODE = msgspec.json.encode


class Market:
    """A BTCUSDT-like book that changes 1-30 levels per diff, mostly near the touch."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.qtys = [f"{self.rng.uniform(0.0001, 3.0):.8f}" for _ in range(997)]
        self.bids = {MID - k: self.rng.choice(self.qtys) for k in range(1, 2001)}
        self.asks = {MID + k: self.rng.choice(self.qtys) for k in range(1, 2001)}
        self.update_id = 10_000_000_000

    def diff(self) -> tuple[int, int, str, str]:
        """The next diff: U, u, bids JSON, asks JSON (applied to the book)."""
        rng = self.rng
        bids: dict[int, str] = {}
        asks: dict[int, str] = {}
        for _ in range(rng.randint(1, 30)):
            distance = 1 + min(int(rng.expovariate(1 / 40)), 2999)
            qty = "0.00000000" if rng.random() < 0.25 else rng.choice(self.qtys)
            if rng.random() < 0.5:
                bids[MID - distance] = qty
            else:
                asks[MID + distance] = qty
        first = self.update_id + 1
        self.update_id += rng.randint(max(1, len(bids) + len(asks)), 40)
        _apply(self.bids, bids)
        _apply(self.asks, asks)
        return (first, self.update_id, _levels(sorted(bids.items(), reverse=True)),
                _levels(sorted(asks.items())))

    def snapshot(self) -> tuple[str, str]:
        """The book's best `SNAPSHOT_LEVELS` a side, as a REST depth snapshot stores them."""
        bids = sorted(self.bids.items(), reverse=True)[:SNAPSHOT_LEVELS]
        asks = sorted(self.asks.items())[:SNAPSHOT_LEVELS]
        return _levels(bids), _levels(asks)


def _apply(side: dict[int, str], changes: dict[int, str]) -> None:
    for price, qty in changes.items():
        if qty == "0.00000000":
            side.pop(price, None)
        else:
            side[price] = qty


def _levels(levels: list[tuple[int, str]]) -> str:
    return _ENCODE([(f"{p // 100}.{p % 100:02d}000000", q) for p, q in levels]).decode()


def recording(market: Market, hours: int) -> Iterator[tuple[str, Row]]:
    """(table, row) of a day's recording: a snapshot on the hour, diffs every 100 ms."""
    diffs_per_hour = HOUR_MS // STEP_MS
    for i in range(hours * diffs_per_hour):
        event_ms = DAY_START_MS + i * STEP_MS
        if i % diffs_per_hour == 0:
            bids, asks = market.snapshot()
            yield DEPTH_SNAPSHOT.name, (SYMBOL, market.update_id, bids, asks,
                                        event_ms * 1_000_000, "rest")
        first, final, bids, asks = market.diff()
        yield DIFF_DEPTH.name, (SYMBOL, first, final, event_ms + 3, bids, asks,
                                (event_ms + 5) * 1_000_000, "ws")


def build(path: Path, hours: int, seed: int) -> None:
    """Write the recording into a new database at ``path`` through the recorder's sink."""
    sink = open_sink(path)
    sink.meta("time_unit", "millisecond")
    batch, started = Batch(), time.perf_counter()
    for table, row in recording(Market(seed), hours):
        batch.add(table, [row])
        if batch.market_rows >= ROWS_PER_BATCH:
            sink.write(batch)
            batch = Batch()
    sink.write(batch)
    sink.close()
    print(f"built {path} ({path.stat().st_size / 1e6:,.0f} MB) in "
          f"{time.perf_counter() - started:.0f} s")


def variants(base: Path) -> dict[str, Path]:
    """The recordings compared: ``base`` (hourly), and a copy keeping its first snapshot only."""
    start = base.with_name(base.stem + "_start_only.db")
    if not start.exists():
        shutil.copy(base, start)
        with sqlite3.connect(start) as conn:
            conn.execute("DELETE FROM depth_snapshot WHERE last_update_id > "
                         "(SELECT MIN(last_update_id) FROM depth_snapshot)")
    return {"start": start, "hourly": base}


def last_diff_at(db: Path, at: int) -> float:
    """Seconds the rebuild's first query takes (opening the database included, as there)."""
    started = time.perf_counter()
    with open_reader(db) as reader:
        DepthReader(reader.conn, reader.mark).last_diff_at(SYMBOL, at)
    return time.perf_counter() - started


def measure(db: Path, moments: list[int]) -> tuple[list[float], list[float], int]:
    """Seconds per rebuild, seconds of its last_diff_at query, and the books' update-id sum
    (the same in both recordings if they agree)."""
    totals, lookups, check = [], [], 0
    for at in moments:
        started = time.perf_counter()
        book = order_book(db, SYMBOL, at)
        totals.append(time.perf_counter() - started)
        lookups.append(last_diff_at(db, at))
        check += book.last_update_id
    return totals, lookups, check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moments", type=int, default=20)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/book_rebuild"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    base = args.dir / f"hourly_{args.hours}h_seed{args.seed}.db"
    if not base.exists():
        build(base, args.hours, args.seed)
    paths = variants(base)
    rng = random.Random(args.seed)
    span = args.hours * HOUR_MS
    moments = sorted(DAY_START_MS + rng.randrange(STEP_MS, span) for _ in range(args.moments))
    diffs = args.hours * HOUR_MS // STEP_MS
    print(f"book rebuild: {SYMBOL} @depth@100ms, {args.hours} h = {diffs:,} diffs of 1-30 levels,"
          f" {args.moments} random moments, order_book(db, {SYMBOL!r}, at), depth 20")
    print(f"{'recording':<52} {'rebuild p50':>11} {'max':>8}   {'last_diff_at p50':>16} "
          f"{'max':>8}")
    labels = {"start": "one snapshot at the start (baseline, before)",
              "hourly": "a snapshot every hour (--snapshot-every 1h)"}
    results = {}
    for name, path in paths.items():
        totals, lookups, check = measure(path, moments)
        results[name] = (statistics.median(totals), max(totals), check)
        print(f"{labels[name]:<52} {statistics.median(totals):>10.3f}s {max(totals):>7.3f}s   "
              f"{statistics.median(lookups):>15.3f}s {max(lookups):>7.3f}s")
    assert len({check for *_, check in results.values()}) == 1, "the variants disagree"
    before, after = results["start"], results["hourly"]
    print(f"hourly snapshots: p50 {before[0] / after[0]:.0f}x and max {before[1] / after[1]:.0f}x "
          f"faster than the baseline; the same books in both")


if __name__ == "__main__":
    main()
