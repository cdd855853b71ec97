"""Stored rows become Binance's own frames again: same keys, same order, same values."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from binance_streamer.core.decoding import Decoded, FrameDecoder
from binance_streamer.core.feed import FRAME_BUILDERS, frame_line
from tests.helpers import frames

# Fields the 2020 trade frames carried (buyer and seller order ids) that Binance no longer sends
# and the trade table does not keep.
_DROPPED = {"trade": {"b", "a"}}

CAPTURES = ["binance_spot_aggTrade.head400.jsonl", "binance_spot_bookTicker.head300.jsonl",
            "binance_spot_depthUpdate_100ms.head600.jsonl", "binance_spot_kline_1m.0404.jsonl",
            "binance_spot_24hrTicker.singletons.jsonl",
            "binance_spot_miniTicker.singletons.jsonl", "binance_spot_trade.singletons.jsonl"]

# Documented shapes (web-socket-streams.md) of the kinds no capture holds.
DOCUMENTED = [
    {"stream": "btcusdt@blockTrade", "data": {"e": "blockTrade", "E": 5, "s": "BTCUSDT",
                                              "t": 9, "p": "1.5", "q": "2", "T": 4, "m": True}},
    {"stream": "btcusdt@referencePrice", "data": {"e": "referencePrice", "s": "BTCUSDT",
                                                  "r": "1.25", "t": 7}},
    {"stream": "btcusdt@avgPrice", "data": {"e": "avgPrice", "E": 5, "s": "BTCUSDT", "i": "5m",
                                            "w": "2.5", "T": 4}},
    {"stream": "btcusdt@ticker_1h", "data": {"e": "1hTicker", "E": 5, "s": "BTCUSDT", "p": "1",
                                             "P": "2", "o": "3", "h": "4", "l": "5", "c": "6",
                                             "w": "7", "v": "8", "q": "9", "O": 1, "C": 2,
                                             "F": 3, "L": 4, "n": 2}},
    {"stream": "bnbbtc@depth5@100ms", "data": {"lastUpdateId": 160, "bids": [["0.0024", "10"]],
                                               "asks": [["0.0026", "100"]]}},
]


def _round_trip(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the frame as sent, the frame rebuilt from its stored row) for one raw frame."""
    out = FrameDecoder().decode(raw)
    assert isinstance(out, Decoded)
    [row] = out.route.rows(out.event, 7, "ws")
    sent = json.loads(raw)
    speed = "@100ms" if sent["stream"].endswith("@100ms") else ""
    received, _, frame = frame_line(out.route.table.name, row, 7, speed).partition(b" ")
    assert received == b"7"
    for key in _DROPPED.get(sent["data"].get("e", ""), ()):
        del sent["data"][key]
    return sent, json.loads(frame)


@pytest.mark.parametrize("name", CAPTURES)
def test_captured_frames_come_back_from_their_rows(name: str) -> None:
    """Every captured frame, stored as a row and rebuilt, equals the frame with its keys in
    Binance's order."""
    for raw in frames(name):
        sent, rebuilt = _round_trip(raw)
        assert rebuilt == sent
        assert list(rebuilt["data"]) == list(sent["data"])


@pytest.mark.parametrize("frame", DOCUMENTED, ids=lambda f: f["stream"])
def test_documented_frames_come_back_from_their_rows(frame: dict[str, Any]) -> None:
    """The documented kinds no capture holds round-trip the same way."""
    sent, rebuilt = _round_trip(msgspec.json.encode(frame))
    assert rebuilt == sent and list(rebuilt["data"]) == list(sent["data"])


def test_every_market_table_but_snapshots_has_a_frame_builder() -> None:
    """Only depth_snapshot (a REST answer, never a stream frame) has no builder."""
    from binance_streamer.core.tables import TABLES

    assert set(FRAME_BUILDERS) == {t.name for t in TABLES} - {"depth_snapshot"}
