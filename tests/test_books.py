"""Order books rebuilt from recordings: equal to Binance's own best bid/ask, never wrong."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from binance_streamer import BookUnknown, Recorder, RecorderConfig
from binance_streamer.books import Book, order_book, order_books, parse_every
from binance_streamer.cli import main
from binance_streamer.errors import ConfigError
from binance_streamer.exchange import LocalExchange
from binance_streamer.samples import bundled_session
from tests.helpers import TIMEOUT, record_capture

FIXTURES = Path(__file__).parent / "fixtures"
# Captures holding both @depth@100ms and Binance's own @bookTicker for the same symbols.
SESSIONS = [bundled_session("cf_2021-04-05"), FIXTURES / "cf_2021-08-14.session.jsonl.gz",
            FIXTURES / "cf_2021-10-12.session.jsonl.gz"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The three captures, each recorded through the local exchange into its own database."""
    folder = tmp_path_factory.mktemp("books")
    dbs = []
    for session in SESSIONS:
        db = folder / (session.name.split(".")[0] + ".db")
        asyncio.run(record_capture(session, db, ["depth@100ms", "bookTicker"], speed=25))
        dbs.append(db)
    return dbs


def _rows(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def _busiest(db: Path) -> tuple[str, int, int]:
    """The symbol with the most diffs after its snapshot, its first and last diff times."""
    symbol, first, last = _rows(
        db, "SELECT d.symbol, MIN(d.event_time), MAX(d.event_time) FROM depth_update d "
            "JOIN depth_snapshot s ON s.symbol = d.symbol GROUP BY d.symbol "
            "ORDER BY SUM(d.final_update_id > s.last_update_id) DESC LIMIT 1")[0]
    return str(symbol), int(str(first)), int(str(last))


def test_rebuilt_best_prices_equal_binance_book_ticker_at_every_shared_update_id(
        recorded: list[Path]) -> None:
    """Wherever a recorded @bookTicker's update id is the final id of a recorded diff, the
    rebuilt book's best bid and ask equal Binance's; every comparison counts, none differs."""
    compared = 0
    for db in recorded:
        tickers = {(s, u): (b, a) for s, u, b, a in _rows(
            db, "SELECT symbol, update_id, best_bid_price, best_ask_price FROM book_ticker")}
        for symbol, final, time in _rows(db, "SELECT symbol, final_update_id, event_time "
                                             "FROM depth_update ORDER BY symbol, final_update_id"):
            if (symbol, final) not in tickers:
                continue
            try:
                book = order_book(db, str(symbol), int(str(time)), depth=1)
            except BookUnknown:
                continue  # before the snapshot: unknown, and said so
            if book.last_update_id != final:
                continue  # another diff with the same event time came later
            compared += 1
            assert (book.bids[0][0], book.asks[0][0]) == tickers[(symbol, final)], (db, final)
    assert compared >= 1000  # 1222 today: 04-05, 08-14 and 10-12 together


def test_rebuilt_books_are_never_crossed(recorded: list[Path]) -> None:
    """Every 100 ms of every recorded symbol where the book is known, best bid < best ask."""
    books = 0
    for db in recorded:
        for symbol, first, last in _rows(db, "SELECT symbol, MIN(event_time), MAX(event_time) "
                                             "FROM depth_update GROUP BY symbol"):
            for book in order_books(db, str(symbol), int(str(first)), int(str(last)), depth=1,
                                    every="100ms"):
                books += 1
                if book.bids and book.asks:
                    assert float(book.bids[0][0]) < float(book.asks[0][0]), (db, book)
    assert books > 1000


def test_before_the_first_snapshot_the_book_is_unknown_and_the_later_time_is_named(
        recorded: list[Path]) -> None:
    """A moment before any usable snapshot raises BookUnknown naming when it becomes known,
    and the book at that named time exists."""
    db = recorded[0]
    symbol, first_time, _ = _busiest(db)
    with pytest.raises(BookUnknown) as unknown:
        order_book(db, symbol, first_time)
    assert unknown.value.earlier is None and unknown.value.later is not None
    assert order_book(db, str(symbol), unknown.value.later).symbol == symbol


def _broken_copy(db: Path, tmp_path: Path) -> tuple[Path, str, int, int]:
    """A copy of ``db`` with one diff deleted in the middle of a chain after a snapshot; the
    symbol, the deleted diff's event time and the last diff's event time."""
    copy = tmp_path / "broken.db"
    shutil.copy(db, copy)
    symbol = _busiest(copy)[0]
    [(snapshot_id,)] = _rows(copy, "SELECT last_update_id FROM depth_snapshot WHERE symbol = ?",
                             symbol)
    after = _rows(copy, "SELECT final_update_id, event_time FROM depth_update WHERE symbol = ? "
                        "AND final_update_id > ? ORDER BY final_update_id", symbol, snapshot_id)
    final, time = after[len(after) // 2]
    with sqlite3.connect(copy) as conn:
        conn.execute("DELETE FROM depth_update WHERE symbol = ? AND final_update_id = ?",
                     (symbol, final))
    return copy, str(symbol), int(str(time)), int(str(after[-1][1]))


def test_a_missing_diff_makes_later_books_unknown_never_wrong(recorded: list[Path],
                                                               tmp_path: Path) -> None:
    """With one diff deleted, books from the diff before it on are refused, naming the last
    moment the book was known; there it is unchanged; a series stops at that moment."""
    broken, symbol, deleted_at, end = _broken_copy(recorded[0], tmp_path)
    for at in (end, deleted_at, deleted_at - 1):  # the missing updates came before deleted_at
        with pytest.raises(BookUnknown, match="breaks before") as unknown:
            order_book(broken, symbol, at)
    earlier = unknown.value.earlier
    assert earlier is not None and earlier < deleted_at
    assert unknown.value.later is None  # no later snapshot in this recording
    assert order_book(broken, symbol, earlier) == order_book(recorded[0], symbol, earlier)
    series = list(order_books(broken, symbol, deleted_at - 5000, end, every="1ms"))
    assert series and series[-1].time_ms == earlier


def test_a_later_snapshot_makes_the_book_known_again(recorded: list[Path],
                                                     tmp_path: Path) -> None:
    """After a break, a snapshot stored later and bridged by a stored diff makes the book known
    again from that diff's time; the book there equals the unbroken recording's."""
    broken, symbol, deleted_at, end = _broken_copy(recorded[0], tmp_path)
    good = order_book(recorded[0], symbol, end - 2000, depth=100_000)  # every level
    with sqlite3.connect(broken) as conn:
        conn.execute("INSERT INTO depth_snapshot (symbol, last_update_id, bids, asks, "
                     "received_ns, source) VALUES (?, ?, ?, ?, ?, 'rest')",
                     (symbol, good.last_update_id, json.dumps(good.bids), json.dumps(good.asks),
                      1))
    with pytest.raises(BookUnknown) as unknown:
        order_book(broken, symbol, deleted_at)
    assert unknown.value.later is not None and deleted_at < unknown.value.later <= end
    assert order_book(broken, symbol, end, depth=50) == order_book(recorded[0], symbol, end,
                                                                   depth=50)
    times = [b.time_ms for b in order_books(broken, symbol, deleted_at - 3000, end)]
    assert times[0] < deleted_at and times[-1] >= unknown.value.later
    assert not [t for t in times if deleted_at <= t < unknown.value.later]


def test_order_books_tick_at_a_fixed_interval_with_the_book_at_each_tick(
        recorded: list[Path]) -> None:
    """Series books are ``every`` apart and each equals the book asked for at its time."""
    db = recorded[0]
    symbol, _, last = _busiest(db)
    series = list(order_books(db, symbol, last - 20_000, last, depth=25, every="250ms"))
    assert len(series) > 40
    assert {b.time_ms - a.time_ms for a, b in itertools.pairwise(series)} == {250}
    for book in series[::7]:
        assert book == order_book(db, symbol, book.time_ms, depth=25)


def test_interval_text_is_parsed_or_refused() -> None:
    """Intervals take a number and a unit; anything else is a ConfigError naming the forms."""
    assert [parse_every(t) for t in ("100ms", "1s", "5m", "2h")] == [100, 1000, 300_000,
                                                                       7_200_000]
    for bad in ("0s", "1d", "fast", ""):
        with pytest.raises(ConfigError, match=r"e\.g\. 100ms"):
            parse_every(bad)


def test_book_command_prints_asks_above_bids_with_spread_and_mid(recorded: list[Path]) -> None:
    """`book` prints the asks (highest first) above the bids, the spread and the mid price."""
    db = recorded[0]
    symbol, last = _rows(db, "SELECT symbol, MAX(event_time) FROM depth_update GROUP BY symbol "
                             "ORDER BY symbol LIMIT 1")[0]
    book = order_book(db, str(symbol), int(str(last)), depth=3)
    run = CliRunner().invoke(main, ["book", str(symbol), "--at", str(last), "--depth", "3",
                                    "--db", str(db)], terminal_width=120)
    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    prices = [p for p, _ in reversed(book.asks)] + [p for p, _ in book.bids]
    positions = [next(i for i, line in enumerate(lines) if p in line) for p in prices]
    assert positions == sorted(positions)
    spread_line = next(i for i, line in enumerate(lines) if "spread" in line)
    assert positions[2] < spread_line < positions[3]
    assert f"mid {book.mid:f}".rstrip("0") in run.output.replace("\n", " ")


def test_book_command_json_and_csv_carry_the_same_book(recorded: list[Path]) -> None:
    """--format json gives the levels, ids, spread and mid; --format csv one row per level."""
    db = recorded[0]
    symbol, last = _rows(db, "SELECT symbol, MAX(event_time) FROM depth_update GROUP BY symbol "
                             "ORDER BY symbol LIMIT 1")[0]
    book: Book = order_book(db, str(symbol), int(str(last)), depth=5)
    args = ["book", str(symbol), "--at", str(last), "--depth", "5", "--db", str(db)]
    as_json = json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).output)
    assert as_json["bids"] == [list(x) for x in book.bids]
    assert as_json["lastUpdateId"] == book.last_update_id
    assert as_json["spread"] == str(book.spread)
    rows = CliRunner().invoke(main, [*args, "--format", "csv"]).output.splitlines()
    assert rows[0] == "side,level,price,quantity"
    assert rows[1] == f"ask,1,{book.asks[0][0]},{book.asks[0][1]}"
    assert len(rows) == 1 + len(book.asks) + len(book.bids)


def test_book_command_refuses_an_unknown_moment_with_exit_2(recorded: list[Path]) -> None:
    """Before the first snapshot `book` prints one line naming when the book is known, exit 2."""
    db = recorded[0]
    symbol, first, _ = _busiest(db)
    run = CliRunner().invoke(main, ["book", symbol, "--at", str(first), "--db", str(db)])
    assert run.exit_code == 2
    assert "known again from 20" in run.output and "Traceback" not in run.output


def test_partial_depth_recordings_give_the_latest_partial_book(db_path: Path) -> None:
    """A recording of @depth5 only gives the latest partial book at the asked time."""

    async def record() -> None:
        async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
            config = RecorderConfig(symbols=["BTCUSDT"], streams=["depth5@100ms"],
                                    database=db_path, ws_url=ex.ws_url, rest_url=ex.rest_url)
            recorder = Recorder(config)
            task = asyncio.create_task(recorder.run())
            await recorder.wait_until(lambda s: s.stored["partial_depth"] >= 5, TIMEOUT)
            recorder.stop()
            await asyncio.wait_for(task, TIMEOUT)

    asyncio.run(record())
    last_id, received_ns, bids = _rows(db_path, "SELECT last_update_id, received_ns, bids FROM "
                                                "partial_depth ORDER BY received_ns DESC")[0]
    book = order_book(db_path, "btcusdt", int(str(received_ns)) // 1_000_000 + 1, depth=3)
    assert (book.source, book.last_update_id) == ("partial", last_id)
    assert book.bids == [tuple(x) for x in json.loads(str(bids))][:3]
    with pytest.raises(BookUnknown, match="no depth"):
        order_book(db_path, "BTCUSDT", 1_000_000_000_000)


def test_postgresql_recordings_give_the_same_books(recorded: list[Path], pg_url: str) -> None:
    """The same capture recorded into PostgreSQL rebuilds book for book what SQLite does."""
    asyncio.run(record_capture(SESSIONS[1], pg_url, ["depth@100ms", "bookTicker"], speed=25))
    db = recorded[1]
    symbol, first, last = _busiest(db)
    sqlite_books = list(order_books(db, symbol, first, last, depth=10, every="500ms"))
    assert len(sqlite_books) > 10
    assert list(order_books(pg_url, symbol, first, last, depth=10, every="500ms")) == sqlite_books
    with pytest.raises(BookUnknown):
        order_book(pg_url, symbol, first)


def _book_ticker_mismatches(db: Path, symbol: str) -> tuple[int, int]:
    """Comparisons of rebuilt best prices with stored @bookTicker at shared update ids, and how
    many differ."""
    tickers = {u: (b, a) for u, b, a in _rows(
        db, "SELECT update_id, best_bid_price, best_ask_price FROM book_ticker WHERE symbol = ?",
        symbol)}
    compared = differ = 0
    for final, time in _rows(db, "SELECT final_update_id, event_time FROM depth_update WHERE "
                                 "symbol = ? ORDER BY final_update_id", symbol):
        if final not in tickers:
            continue
        try:
            book = order_book(db, symbol, int(str(time)), depth=1)
        except BookUnknown:
            continue
        if book.last_update_id == final:
            compared += 1
            differ += (book.bids[0][0], book.asks[0][0]) != tickers[final]
    return compared, differ


def test_a_dropped_connection_is_refused_over_its_gap_then_rebuilt_from_the_next_snapshot(
        db_path: Path) -> None:
    """On the synthetic market, with the connection dropped mid-stream: books before the drop
    and after the next snapshot equal Binance-style book tickers; the moments in between are
    refused (BookUnknown naming both edges), never guessed."""

    async def record() -> None:
        async with LocalExchange(synthetic=["BTCUSDT"], rate=40) as ex:
            config = RecorderConfig(symbols=["BTCUSDT"], streams=["depth@100ms", "bookTicker"],
                                    database=db_path, ws_url=ex.ws_url, rest_url=ex.rest_url)
            recorder = Recorder(config)
            task = asyncio.create_task(recorder.run())
            await recorder.wait_until(lambda s: s.stored["depth_update"] >= 10, TIMEOUT)
            ex.faults.refuse_connections(0.5)  # the market goes on while the recorder is away
            ex.faults.drop_now()
            await recorder.wait_until(lambda s: s.stored["depth_snapshot"] >= 2 and
                                      s.gaps_filled >= 1, TIMEOUT)
            done = recorder.stats.stored["depth_update"]
            await recorder.wait_until(lambda s: s.stored["depth_update"] >= done + 30, TIMEOUT)
            recorder.stop()
            await asyncio.wait_for(task, TIMEOUT)

    asyncio.run(record())
    compared, differ = _book_ticker_mismatches(db_path, "BTCUSDT")
    assert compared >= 5 and differ == 0
    ids = _rows(db_path, "SELECT first_update_id, final_update_id, event_time FROM depth_update "
                         "ORDER BY final_update_id")
    [(before, after)] = [(a, b) for a, b in itertools.pairwise(ids) if b[0] != a[1] + 1]
    with pytest.raises(BookUnknown) as unknown:
        order_book(db_path, "BTCUSDT", int(str(after[2])) - 1)
    assert unknown.value.earlier is not None and unknown.value.later is not None
    assert unknown.value.earlier < int(str(after[2])) <= unknown.value.later
    assert order_book(db_path, "BTCUSDT", unknown.value.earlier).last_update_id < int(str(after[0]))
    assert order_book(db_path, "BTCUSDT", unknown.value.later).last_update_id >= int(str(after[1]))
    assert before[1] < after[0]


def _hand_db(path: Path, snapshots: list[tuple[int, int]],
             diffs: list[tuple[int, int, int]], received_after_ms: int = 0) -> Path:
    """A recording written by hand: snapshots ``(lastUpdateId, bid qty)`` with one bid and one
    ask, diffs ``(U, u, E)`` each setting the bid at 10 to ``u`` and received at ``E`` ms; one
    last diff of another symbol received ``received_after_ms`` after the last one."""
    from binance_streamer.storage.open import open_sink

    open_sink(path).close()
    with sqlite3.connect(path) as conn:
        for last_id, qty in snapshots:
            conn.execute("INSERT INTO depth_snapshot (symbol, last_update_id, bids, asks, "
                         "received_ns, source) VALUES ('BTCUSDT', ?, ?, ?, 1, 'rest')",
                         (last_id, json.dumps([["10", str(qty)]]), json.dumps([["11", "1"]])))
        for first, final, time in diffs:
            conn.execute("INSERT INTO depth_update (symbol, first_update_id, final_update_id, "
                         "event_time, bids, asks, received_ns, source) VALUES ('BTCUSDT', ?, ?, "
                         "?, ?, '[]', ?, 'ws')", (first, final, time,
                                                  json.dumps([["10", str(final)]]),
                                                  time * 1_000_000))
        end = max(t for _, _, t in diffs) + received_after_ms
        conn.execute("INSERT INTO depth_update (symbol, first_update_id, final_update_id, "
                     "event_time, bids, asks, received_ns, source) VALUES ('ETHUSDT', 1, 1, ?, "
                     "'[]', '[]', ?, 'ws')", (end, end * 1_000_000))
    return path


def test_after_the_recording_stopped_the_book_is_unknown(tmp_path: Path) -> None:
    """The book is known until the recording stopped receiving, not forever after the
    symbol's last diff; a series stops there too."""
    db = _hand_db(tmp_path / "a.db", [(100, 1)], [(101, 101, 1000), (102, 102, 1100)],
                  received_after_ms=5000)
    assert order_book(db, "BTCUSDT", 6100).bids == [("10", "102")]
    with pytest.raises(BookUnknown, match="ends at") as unknown:
        order_book(db, "BTCUSDT", 6101)
    assert (unknown.value.earlier, unknown.value.later) == (6100, None)
    times = [b.time_ms for b in order_books(db, "BTCUSDT", 1000, 90_000, every="1s")]
    assert times == [1000, 2000, 3000, 4000, 5000, 6000]


def test_many_snapshots_too_old_do_not_hide_a_later_bridged_one(tmp_path: Path) -> None:
    """Five snapshots that no stored diff bridges, then one that is bridged: the book is known
    again from the bridging diff, and that named time gives a book."""
    diffs = [(101, 101, 1000), (110, 110, 2000), (120, 121, 3000), (122, 122, 3100)]
    db = _hand_db(tmp_path / "b.db", [(102, 1), (103, 1), (104, 1), (105, 1), (106, 1),
                                      (119, 7)], diffs)
    with pytest.raises(BookUnknown) as unknown:
        order_book(db, "BTCUSDT", 2500)
    assert unknown.value.later == 3000
    assert order_book(db, "BTCUSDT", 3000).bids == [("10", "121")]
    assert next(order_books(db, "BTCUSDT", 0, 3100, every="100ms")).time_ms == 3000


def test_a_named_time_is_one_at_which_the_book_is_given(tmp_path: Path) -> None:
    """A snapshot whose first diff is followed by a break is not 'known again': the named
    time is after the next bridged snapshot instead."""
    diffs = [(101, 101, 1000), (110, 110, 1100), (111, 111, 1200), (112, 112, 1300)]
    db = _hand_db(tmp_path / "c.db", [(100, 1), (101, 1), (110, 1)], diffs)
    with pytest.raises(BookUnknown) as unknown:
        order_book(db, "BTCUSDT", 1050)  # after 101 the chain breaks (102..109 missing)
    assert unknown.value.earlier is None and unknown.value.later == 1100
    assert order_book(db, "BTCUSDT", unknown.value.later).last_update_id == 110


def test_diffs_out_of_event_time_order_are_refused(tmp_path: Path) -> None:
    """A later update id with an earlier event time makes the book there unknowable."""
    db = _hand_db(tmp_path / "d.db", [(100, 1)], [(101, 101, 1000), (102, 102, 1300),
                                                  (103, 103, 1200), (104, 104, 1400)])
    with pytest.raises(BookUnknown, match="event-time order"):
        order_book(db, "BTCUSDT", 1250)
    assert order_book(db, "BTCUSDT", 1100).bids == [("10", "101")]


def test_levels_past_a_cut_snapshot_are_never_reported(tmp_path: Path) -> None:
    """A snapshot side of exactly a REST limit (5 levels) hides what lies past its worst price:
    when its bids are all removed, the book shows no bids rather than deeper invented ones."""
    from binance_streamer.storage.open import open_sink

    db = tmp_path / "e.db"
    open_sink(db).close()
    bids = [[str(p), "1"] for p in range(20, 15, -1)]  # 20..16: cut at 5 levels
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO depth_snapshot (symbol, last_update_id, bids, asks, "
                     "received_ns, source) VALUES ('BTCUSDT', 100, ?, '[[\"30\",\"1\"]]', 1, "
                     "'rest')", (json.dumps(bids),))
        removals = [[str(p), "0"] for p in range(20, 15, -1)] + [["12", "4"]]
        conn.execute("INSERT INTO depth_update (symbol, first_update_id, final_update_id, "
                     "event_time, bids, asks, received_ns, source) VALUES ('BTCUSDT', 101, 101, "
                     "1000, ?, '[]', 1000000000, 'ws')", (json.dumps(removals),))
    book = order_book(db, "BTCUSDT", 1000)
    assert book.bids == [] and book.asks == [("30", "1")]
