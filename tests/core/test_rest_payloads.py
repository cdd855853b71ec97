"""REST payloads: documented bodies decode into typed structs; other shapes are refused."""

from __future__ import annotations

import json

import msgspec
import pytest

from binance_streamer.core.rest_payloads import (
    DepthSnapshot,
    ExchangeInfo,
    RestAggTrade,
    RestKline,
    RestTrade,
)
from tests.helpers import frames

# rest-api.md, "Market Data endpoints": the documented example answers.
AGG_TRADES = (b'[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,'
              b'"T":1498793709153,"m":true,"M":true}]')
TRADES = (b'[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",'
          b'"time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}]')
KLINES = (b'[[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100",'
          b'"148976.11427815",1499644799999,"2434.19055334",308,"1756.87402397",'
          b'"28.46694368","0"]]')
DEPTH = (b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],'
         b'"asks":[["4.00000200","12.00000000"]]}')


def test_documented_answers_decode_field_by_field() -> None:
    """The documented aggTrades, historicalTrades, klines and depth answers decode exactly."""
    assert msgspec.json.decode(AGG_TRADES, type=list[RestAggTrade]) == [RestAggTrade(
        26129, "0.01633102", "4.70443515", 27781, 27781, 1498793709153, True, True)]
    assert msgspec.json.decode(TRADES, type=list[RestTrade]) == [RestTrade(
        28457, "4.00000100", "12.00000000", 1499865549590, True, True)]
    assert msgspec.json.decode(KLINES, type=list[RestKline]) == [RestKline(
        1499040000000, "0.01634790", "0.80000000", "0.01575800", "0.01577100",
        "148976.11427815", 1499644799999, "2434.19055334", 308, "1756.87402397", "28.46694368")]
    assert msgspec.json.decode(DEPTH, type=DepthSnapshot) == DepthSnapshot(
        1027024, [("4.00000000", "431.00000000")], [("4.00000200", "12.00000000")])


def test_optional_best_match_flags_default_to_none() -> None:
    """An item without the best-match flag (M, isBestMatch) decodes with None, never False."""
    no_m = msgspec.json.decode(AGG_TRADES.replace(b',"M":true', b""), type=list[RestAggTrade])
    assert no_m[0].best_match is None
    no_best = msgspec.json.decode(TRADES.replace(b',"isBestMatch":true', b""),
                                  type=list[RestTrade])
    assert no_best[0].best_match is None


def test_real_depth_snapshots_decode() -> None:
    """Every real REST depth snapshot of the capture decodes with all its levels."""
    for line in frames("binance_spot_rest_depth_snapshots.0404.jsonl"):
        body = json.loads(line)["body"]
        snapshot = msgspec.json.decode(json.dumps(body), type=DepthSnapshot)
        assert snapshot.last_update_id == body["lastUpdateId"]
        assert [list(level) for level in snapshot.bids] == body["bids"]


def test_exchange_info_keeps_symbols_and_their_status() -> None:
    """exchangeInfo decodes to its symbols and status; a symbol without status gets ''."""
    body = b'{"timezone":"UTC","symbols":[{"symbol":"BTCUSDT","status":"TRADING"},{"symbol":"X"}]}'
    info = msgspec.json.decode(body, type=ExchangeInfo)
    assert [(s.symbol, s.status) for s in info.symbols] == [("BTCUSDT", "TRADING"), ("X", "")]


@pytest.mark.parametrize(("body", "kind", "where"), [
    (b'{"a":1}', list[RestAggTrade], "Expected `array`"),
    (AGG_TRADES.replace(b'"a":26129', b'"a":"26129"'), list[RestAggTrade], "$[0].a"),
    (TRADES.replace(b'"qty":"12.00000000",', b""), list[RestTrade], "qty"),
    (b'[[1499040000000,"0.1"]]', list[RestKline], "at least length 11"),
    (b'{"lastUpdateId":1,"bids":[["1"]],"asks":[]}', DepthSnapshot, "$.bids[0]"),
    (b'{"lastUpdateId":99999999999999999999,"bids":[],"asks":[]}', DepthSnapshot,
     "lastUpdateId"),
    (b'{"symbols":{}}', ExchangeInfo, "$.symbols"),
])
def test_bodies_of_another_shape_are_refused_saying_where(body: bytes, kind: object,
                                                          where: str) -> None:
    """A body of the wrong shape raises ValidationError naming the offending place."""
    with pytest.raises(msgspec.ValidationError) as refused:
        msgspec.json.decode(body, type=kind)
    assert where in str(refused.value)
