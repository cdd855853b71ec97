"""Stream names: every documented spot stream parses; anything else is rejected."""

from __future__ import annotations

import pytest

from binance_streamer.core.streams import (
    KLINE_INTERVALS,
    InvalidStreamName,
    StreamKind,
    parse_stream,
    parse_stream_spec,
    streams_for,
)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("btcusdt@trade", StreamKind.TRADE),
        ("btcusdt@aggTrade", StreamKind.AGG_TRADE),
        ("btcusdt@miniTicker", StreamKind.MINI_TICKER),
        ("btcusdt@ticker", StreamKind.TICKER),
        ("btcusdt@ticker_4h", StreamKind.WINDOW_TICKER),
        ("btcusdt@bookTicker", StreamKind.BOOK_TICKER),
        ("btcusdt@avgPrice", StreamKind.AVG_PRICE),
        ("btcusdt@depth5", StreamKind.PARTIAL_DEPTH),
        ("btcusdt@depth20@100ms", StreamKind.PARTIAL_DEPTH),
        ("btcusdt@depth", StreamKind.DIFF_DEPTH),
        ("btcusdt@depth@100ms", StreamKind.DIFF_DEPTH),
        ("btcusdt@kline_1m@+08:00", StreamKind.KLINE),
        ("!miniTicker@arr", StreamKind.ALL_MINI_TICKERS),
        ("!ticker_1d@arr", StreamKind.ALL_WINDOW_TICKERS),
        ("btcusdt@blockTrade", StreamKind.BLOCK_TRADE),
        ("btcusdt@referencePrice", StreamKind.REFERENCE_PRICE),
    ],
)
def test_documented_streams_parse_to_their_kind(name: str, kind: StreamKind) -> None:
    """Each documented stream name parses to the kind that decides its payload and table."""
    assert parse_stream(name).kind is kind


@pytest.mark.parametrize("interval", KLINE_INTERVALS)
def test_every_kline_interval_parses(interval: str) -> None:
    """All 16 documented kline intervals are accepted and kept."""
    assert parse_stream(f"ethbtc@kline_{interval}").interval == interval


@pytest.mark.parametrize(
    "name",
    ["BTCUSDT@ticker", "btcusdt", "btcusdt@tickr", "btcusdt@kline_2m", "btcusdt@depth7",
     "@ticker", "btc usdt@ticker", "btcusdt@ticker_2h", "!ticker@arr"],
)
def test_malformed_names_are_rejected(name: str) -> None:
    """Upper-case symbols, unknown types and bad intervals are invalid stream names."""
    with pytest.raises(InvalidStreamName):
        parse_stream(name)


def test_partial_depth_keeps_levels_and_speed() -> None:
    """A partial-depth name carries its level count and update speed."""
    s = parse_stream("bnbbtc@depth10@100ms")
    assert (s.symbol, s.levels, s.speed_ms) == ("bnbbtc", 10, 100)


def test_streams_for_crosses_symbols_and_types_once() -> None:
    """Symbols are lower-cased and each symbol x type appears once, market-wide streams once."""
    assert streams_for(["BTCUSDT", "ethusdt", "BTCUSDT"], ["ticker", "!miniTicker@arr"]) == [
        "btcusdt@ticker", "ethusdt@ticker", "!miniTicker@arr",
    ]


def test_spec_validation_names_the_bad_item() -> None:
    """A bad --streams item raises with the item in the message."""
    with pytest.raises(InvalidStreamName, match="tickers"):
        parse_stream_spec("tickers")
