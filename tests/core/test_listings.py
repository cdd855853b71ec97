"""core/listings: symbol selection, listing diffs, stream placement and control pacing."""

from __future__ import annotations

import msgspec
import pytest

from binance_streamer.core.listings import (
    TRADING,
    ControlMessage,
    ControlPacer,
    ExchangeListing,
    ListedSymbol,
    ListingChange,
    Selection,
    diff_listings,
    next_control,
    place_streams,
    quotes,
)


def sym(symbol: str, status: str = TRADING, quote: str = "USDT", spot: bool = True
        ) -> ListedSymbol:
    return ListedSymbol(symbol, status, symbol[: -len(quote)], quote, spot)


def test_exchange_info_body_decodes_with_defaults() -> None:
    body = (b'{"timezone":"UTC","symbols":[{"symbol":"BTCUSDT","status":"TRADING",'
            b'"baseAsset":"BTC","quoteAsset":"USDT","isSpotTradingAllowed":false},'
            b'{"symbol":"X"}]}')
    listing = msgspec.json.decode(body, type=ExchangeListing)
    assert listing.symbols == [ListedSymbol("BTCUSDT", "TRADING", "BTC", "USDT", False),
                               ListedSymbol("X")]
    assert msgspec.json.decode(b"{}", type=ExchangeListing).symbols == []


def test_recordable_needs_trading_and_spot() -> None:
    assert sym("BTCUSDT").recordable
    assert not sym("BTCUSDT", "HALT").recordable
    assert not sym("BTCUSDT", spot=False).recordable


def test_selection_by_quote_and_exclude() -> None:
    listing = [sym("BTCUSDT"), sym("ETHBTC", quote="BTC"), sym("XRPUSDT", "BREAK"),
               sym("BNBUSDT"), sym("LTCUSDT", spot=False)]
    assert Selection().symbols(listing) == ["BTCUSDT", "ETHBTC", "BNBUSDT"]
    assert Selection("usdt").symbols(listing) == ["BTCUSDT", "BNBUSDT"]
    assert Selection("USDT", frozenset({"BNBUSDT"})).symbols(listing) == ["BTCUSDT"]
    assert quotes(listing) == ["BTC", "USDT"]
    assert quotes([ListedSymbol("ODD", TRADING)]) == []


def test_diff_listings_names_each_kind_of_change() -> None:
    old = [sym("AAAUSDT"), sym("BBBUSDT"), sym("CCCUSDT"), sym("DDDUSDT", "BREAK"),
           sym("EEEBTC", quote="BTC"), sym("FFFUSDT")]
    new = [sym("AAAUSDT"), sym("BBBUSDT", "HALT"), sym("DDDUSDT"), sym("GGGUSDT"),
           sym("EEEBTC", "HALT", quote="BTC"), sym("FFFUSDT", spot=False)]
    changes = diff_listings(old, new, Selection("USDT"))
    assert changes == [
        ListingChange("BBBUSDT", "status", TRADING, "HALT"),
        ListingChange("CCCUSDT", "delisted", TRADING, None),
        ListingChange("DDDUSDT", "status", "BREAK", TRADING),
        ListingChange("FFFUSDT", "status", TRADING, "TRADING (not spot)"),
        ListingChange("GGGUSDT", "listed", None, TRADING),
    ]
    assert [(c.recorded_before, c.recorded_now) for c in changes] == [
        (True, False), (True, False), (False, True), (True, False), (False, True)]
    assert diff_listings(old, old, Selection()) == []
    assert diff_listings(old, new, Selection("USDT", frozenset({"GGGUSDT"})))[-1].symbol \
        == "FFFUSDT"


def test_place_streams_fills_the_least_loaded_then_opens_new_connections() -> None:
    assert place_streams({0: 3, 1: 1}, ["a", "b", "c", "a"], cap=4) == {1: ["a", "b", "c"]}
    assert place_streams({0: 3, 1: 4}, ["a", "b", "c"], cap=4) == {0: ["a"], 2: ["b", "c"]}
    assert place_streams({0: 2}, list("abcdefg"), cap=2) == {1: ["a", "b"], 2: ["c", "d"],
                                                            3: ["e", "f"], 4: ["g"]}
    assert place_streams({}, ["a"], cap=1024) == {0: ["a"]}
    assert place_streams({0: 1}, [], cap=5) == {}
    for cap in (0, 1025):
        with pytest.raises(ValueError, match=r"1\.\.1024"):
            place_streams({}, ["a"], cap)


def test_next_control_unsubscribes_first_then_subscribes_in_chunks() -> None:
    assert next_control(["a", "b"], ["b", "c"]) == ControlMessage("UNSUBSCRIBE", ("a",))
    assert next_control(["b"], ["b", "c", "d", "e"], max_params=2) == ControlMessage(
        "SUBSCRIBE", ("c", "d"))
    assert next_control(["a", "b"], ["b", "a"]) is None
    assert ControlMessage("SUBSCRIBE", ("x@trade",)).body(7) == {
        "method": "SUBSCRIBE", "params": ["x@trade"], "id": 7}


def test_control_pacer_keeps_a_sliding_window() -> None:
    pacer = ControlPacer(per_second=2)
    assert pacer.delay(0.0) == 0.0
    pacer.record(0.0)
    pacer.record(0.25)
    assert pacer.delay(0.5) == pytest.approx(0.5)
    assert pacer.delay(-5.0) == 1.0  # a clock going backwards waits at most the window
    assert pacer.delay(1.0) == 0.0
    pacer.record(1.0)
    assert pacer.delay(1.0) == pytest.approx(0.25)
    assert "2/1s recent=2" in repr(pacer)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"per_second": 0}, "per_second"), ({"per_second": 6}, "per_second"),
    ({"window_s": 0.0}, "window_s"), ({"window_s": float("inf")}, "window_s")])
def test_control_pacer_rejects_bad_limits(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ControlPacer(**kwargs)  # type: ignore[arg-type]
