"""Tables: REST payloads and stream events of one table give the same rows, in one column order."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from binance_streamer.core.decoding import Decoded, FrameDecoder
from binance_streamer.core.rest_payloads import DepthSnapshot, RestAggTrade, RestKline, RestTrade
from binance_streamer.core.streams import StreamKind
from binance_streamer.core.tables import (
    AGG_TRADE,
    DEPTH_SNAPSHOT,
    KLINE,
    TABLE_FOR_KIND,
    TABLES,
    TRADE,
    Row,
    agg_trade_rows,
    depth_snapshot_row,
    kline_rows,
    trade_rows,
)
from tests.helpers import frames

NOW = 1_617_566_700_000  # after every candle of the kline capture closed


def stream_rows(name: str) -> list[tuple[dict[str, Any], Row]]:
    """(payload, stream row) for every frame of fixture ``name``, received at 5 over ``ws``."""
    decoder = FrameDecoder()
    out = []
    for raw in frames(name):
        d = decoder.decode(raw)
        assert isinstance(d, Decoded)
        [row] = d.route.rows(d.event, 5, "ws")
        out.append((json.loads(raw)["data"], row))
    return out


def named(columns: tuple[str, ...], row: Row) -> dict[str, Any]:
    return dict(zip(columns, row, strict=True))


def test_rest_agg_trades_give_the_stream_rows_without_event_or_receive_time() -> None:
    """An aggTrades item (the stream payload without e, E and s) gives the stream's row, with no
    event time, no receive time and source rest."""
    for payload, ws_row in stream_rows("binance_spot_aggTrade.head400.jsonl"):
        item = msgspec.json.encode({k: payload[k] for k in "apqflTmM"})
        [rest_row] = agg_trade_rows(payload["s"], [msgspec.json.decode(item, type=RestAggTrade)])
        expected = named(AGG_TRADE.column_names, ws_row) | {
            "event_time": None, "received_ns": None, "source": "rest"}
        assert named(AGG_TRADE.column_names, rest_row) == expected


def test_rest_historical_trades_give_the_stream_rows() -> None:
    """A historicalTrades item gives the trade stream's row, with no event or receive time."""
    [(payload, ws_row)] = stream_rows("binance_spot_trade.singletons.jsonl")
    item = {"id": payload["t"], "price": payload["p"], "qty": payload["q"], "quoteQty": "9.47",
            "time": payload["T"], "isBuyerMaker": payload["m"], "isBestMatch": payload["M"]}
    [rest_row] = trade_rows("BTCUSDT", [msgspec.convert(item, RestTrade)])
    assert named(TRADE.column_names, rest_row) == named(TRADE.column_names, ws_row) | {
        "event_time": None, "received_ns": None, "source": "rest"}


def test_rest_klines_give_the_final_stream_rows_without_trade_ids() -> None:
    """A klines array gives the row of the stream's closing update, without the trade ids and
    event time REST does not have."""
    final = [(p, r) for p, r in stream_rows("binance_spot_kline_1m.0404.jsonl") if p["k"]["x"]]
    assert final
    for payload, ws_row in final:
        k = payload["k"]
        array = [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"], k["V"],
                 k["Q"], "0"]
        [rest_row] = kline_rows(payload["s"], "1m", [msgspec.convert(array, RestKline)], NOW)
        assert named(KLINE.column_names, rest_row) == named(KLINE.column_names, ws_row) | {
            "first_trade_id": None, "last_trade_id": None, "event_time": None,
            "received_ns": None, "source": "rest"}


def test_rest_kline_rows_keep_the_stored_layout() -> None:
    """The kline row of a REST array is, position by position, the layout the database holds."""
    k = [1499040000000, "0.01634790", "0.80000000", "0.01575800", "0.01577100",
         "148976.11427815", 1499644799999, "2434.19055334", 308, "1756.87402397",
         "28.46694368", "0"]
    rows = kline_rows("LTCBTC", "1w", [msgspec.convert(k, RestKline)], 1499644800000)
    assert rows == [("LTCBTC", "1w", k[0], k[6], None, None, k[1], k[4], k[2], k[3], k[5], k[8],
                     True, k[7], k[9], k[10], None, None, "rest")]


@pytest.mark.parametrize(("now", "closed"), [(1_999, True), (1_998, False), (0, False)])
def test_a_rest_kline_is_closed_once_its_close_time_has_passed(now: int, closed: bool) -> None:
    """is_closed is close_time < now: a kline whose close time is now or later is still open."""
    k = msgspec.convert([1_000, "1", "1", "1", "1", "0", 1_998, "0", 0, "0", "0"], RestKline)
    [row] = kline_rows("S", "1s", [k], now)
    assert named(KLINE.column_names, row)["is_closed"] is closed


def test_a_depth_snapshot_keeps_its_levels_as_compact_json_text() -> None:
    """A real REST depth snapshot's row holds its lastUpdateId and its levels as JSON text."""
    for line in frames("binance_spot_rest_depth_snapshots.0404.jsonl"):
        body = json.loads(line)["body"]
        snapshot = msgspec.convert(body, DepthSnapshot)
        row = depth_snapshot_row("BTCUSDT", snapshot, 123)
        assert named(DEPTH_SNAPSHOT.column_names, row) == {
            "symbol": "BTCUSDT", "last_update_id": body["lastUpdateId"],
            "bids": json.dumps(body["bids"], separators=(",", ":")),
            "asks": json.dumps(body["asks"], separators=(",", ":")),
            "received_ns": 123, "source": "rest"}


def test_every_table_ends_with_receive_time_and_source() -> None:
    """Each table's last two columns are received_ns and source, and its key columns exist."""
    for table in TABLES:
        assert table.column_names[-2:] == ("received_ns", "source")
        assert set(table.key) <= set(table.column_names)


FRAMES = {
    "btcusdt@blockTrade": {"e": "blockTrade", "E": 5, "s": "BTCUSDT", "t": 9, "p": "1.5",
                           "q": "2", "T": 4, "m": True},
    "btcusdt@referencePrice": {"e": "referencePrice", "s": "BTCUSDT", "r": "1.25", "t": 7},
    "btcusdt@avgPrice": {"e": "avgPrice", "E": 5, "s": "BTCUSDT", "i": "5m", "w": "2.5",
                         "T": 4},
    "btcusdt@ticker_1h": {"e": "1hTicker", "E": 5, "s": "BTCUSDT", "p": "1", "P": "2", "o": "3",
                          "h": "4", "l": "5", "c": "6", "w": "7", "v": "8", "q": "9", "O": 1,
                          "C": 2, "F": 3, "L": 4, "n": 2},
}
EXPECTED = {
    "btcusdt@blockTrade": {"symbol": "BTCUSDT", "block_trade_id": 9, "price": "1.5",
                           "quantity": "2", "trade_time": 4, "buyer_is_maker": True,
                           "event_time": 5},
    "btcusdt@referencePrice": {"symbol": "BTCUSDT", "time": 7, "price": "1.25"},
    "btcusdt@avgPrice": {"symbol": "BTCUSDT", "event_time": 5, "interval": "5m", "price": "2.5",
                         "last_trade_time": 4},
    "btcusdt@ticker_1h": {"symbol": "BTCUSDT", "window": "1h", "event_time": 5,
                          "price_change": "1", "price_change_percent": "2",
                          "weighted_avg_price": "7", "last_price": "6", "open": "3", "high": "4",
                          "low": "5", "base_volume": "8", "quote_volume": "9", "open_time": 1,
                          "close_time": 2, "first_trade_id": 3, "last_trade_id": 4,
                          "trade_count": 2},
}


@pytest.mark.parametrize("stream", sorted(FRAMES))
def test_documented_payloads_fill_every_column(stream: str) -> None:
    """blockTrade, referencePrice, avgPrice and rolling-window ticker payloads fill each column
    of their table with the value of its key."""
    frame = msgspec.json.encode({"stream": stream, "data": FRAMES[stream]})
    out = FrameDecoder().decode(frame)
    assert isinstance(out, Decoded)
    [row] = out.route.rows(out.event, 8, "ws")
    assert named(out.route.table.column_names, row) == EXPECTED[stream] | {
        "received_ns": 8, "source": "ws"}


def test_all_market_window_tickers_give_a_row_per_symbol() -> None:
    """A ``!ticker_1h@arr`` frame gives one window_ticker row per element, window ``1h``."""
    second = FRAMES["btcusdt@ticker_1h"] | {"s": "ETHUSDT"}
    frame = msgspec.json.encode({"stream": "!ticker_1h@arr",
                                 "data": [FRAMES["btcusdt@ticker_1h"], second]})
    out = FrameDecoder().decode(frame)
    assert isinstance(out, Decoded)
    assert out.route.table is TABLE_FOR_KIND[StreamKind.ALL_WINDOW_TICKERS]
    rows = out.route.rows(out.event, None, "ws")
    assert [(r[0], r[1]) for r in rows] == [("BTCUSDT", "1h"), ("ETHUSDT", "1h")]

