"""Candles folded from trades: exact sums, Binance's grid and formatting, any split adds up."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binance_streamer.core.candles import (
    Bar,
    Candle,
    CandleFolder,
    format_units,
    kline_bar,
    parse_interval,
    to_units,
    trade_bar,
)

T0 = 1_617_566_580_000  # 2021-04-04T20:03:00Z, on every grid up to 1 minute


def fold(bars: list[Bar], interval_ms: int) -> list[Bar]:
    """Every candle ``bars`` make at ``interval_ms``, in order."""
    folder = CandleFolder(interval_ms)
    done = [b for b in (folder.add(bar) for bar in bars) if b is not None]
    last = folder.finish()
    return done + ([last] if last is not None else [])


def test_kline_intervals_and_divisors_of_a_day_are_accepted() -> None:
    """Binance's intervals 1s..1d and other divisors of a day parse to their length in ms."""
    assert parse_interval("1s") == 1_000
    assert parse_interval("15m") == 900_000
    assert parse_interval("1d") == 86_400_000
    assert parse_interval("10s") == 10_000
    assert parse_interval("20m") == 1_200_000


@pytest.mark.parametrize("text", ["7m", "1w", "1M", "3d", "0s", "m", "1.5h", "25h"])
def test_other_intervals_are_refused_naming_the_accepted_ones(text: str) -> None:
    """An interval that is not one or does not divide a day raises ValueError listing 1s..1d."""
    with pytest.raises(ValueError, match=r"unsupported interval .*1s, 1m, 3m.*12h, 1d,") as err:
        parse_interval(text)
    accepted = str(err.value).split(":", 1)[1]
    assert "1M" not in accepted and "1w" not in accepted and "3d" not in accepted


def test_decimal_strings_become_exact_units() -> None:
    """Decimal strings become integers of 1e-8, whatever their number of trailing zeros."""
    assert to_units("2063.88000000") == 206_388_000_000
    assert to_units("0.00000001") == 1
    assert to_units("5") == 500_000_000
    assert to_units("1.1000000000") == 110_000_000
    assert to_units("-0.5") == -50_000_000


def test_more_than_eight_decimals_are_refused() -> None:
    """A value finer than 1e-8 raises ValueError rather than being rounded."""
    with pytest.raises(ValueError, match="more than 8 decimals"):
        to_units("0.000000001")


def test_formatting_has_eight_decimals_rounding_half_even() -> None:
    """Units print with 8 decimals; quote units (1e-16) round half to even."""
    assert format_units(206_388_000_000) == "2063.88000000"
    assert format_units(1) == "0.00000001"
    assert format_units(15 * 10**7, 16) == "0.00000002"  # 1.5e-8 -> 2e-8
    assert format_units(25 * 10**7, 16) == "0.00000002"  # 2.5e-8 -> 2e-8
    assert format_units(25 * 10**7 + 1, 16) == "0.00000003"
    assert format_units(10**8 * 7, 16) == "0.00000007"


def test_a_candle_matches_binance_s_kline_fields() -> None:
    """Two agg trades make the candle Binance reports: ids f..L, taker buys where m is false."""
    a = trade_bar("100.5", "2", T0 + 5, False, 10, 12)
    b = trade_bar("99.25", "0.1", T0 + 59_999, True, 13, 13)
    [bar] = fold([a, b], 60_000)
    assert Candle.of(bar, 60_000) == Candle(
        T0, T0 + 59_999, "100.50000000", "100.50000000", "99.25000000", "99.25000000",
        "2.10000000", "210.92500000", 4, "2.00000000", "201.00000000", 10, 13)


def test_a_trade_counts_once_and_an_agg_trade_counts_its_trades() -> None:
    """A trade (one id) counts 1; an aggregate trade f..l counts l - f + 1."""
    assert trade_bar("1", "1", T0, True, 7).trades == 1
    assert trade_bar("1", "1", T0, True, 7, 9).trades == 3


def test_a_later_interval_closes_the_open_candle_and_empty_ones_are_skipped() -> None:
    """A trade two intervals later closes the open candle; the empty interval between yields
    nothing."""
    folder = CandleFolder(1_000)
    assert folder.add(trade_bar("1", "1", T0 + 10, True, 1)) is None
    assert folder.add(trade_bar("2", "1", T0 + 999, True, 2)) is None
    closed = folder.add(trade_bar("3", "1", T0 + 2_500, True, 3))
    assert closed is not None and (closed.time, closed.close, closed.trades) == (T0, 2 * 10**8, 2)
    last = folder.finish()
    assert last is not None and last.time == T0 + 2_000
    assert folder.finish() is None
    assert repr(folder) == "<CandleFolder 1000ms open=None>"


def test_an_older_bar_is_refused() -> None:
    """A bar older than the open candle raises ValueError: input must be in time order."""
    folder = CandleFolder(1_000)
    folder.add(trade_bar("1", "1", T0 + 1_000, True, 1))
    assert repr(folder) == f"<CandleFolder 1000ms open={T0 + 1_000}>"
    with pytest.raises(ValueError, match="older"):
        folder.add(trade_bar("1", "1", T0, True, 0))


def test_stored_klines_fold_into_a_longer_candle() -> None:
    """Two 1m klines make the 2m candle: first open, extreme high and low, summed volumes."""
    even = T0 - 60_000  # 20:02, on the 2m grid
    one = kline_bar(even, "10", "12", "9", "11", "1", "10.5", 3, "0.5", "5.25", 1, 3)
    two = kline_bar(T0, "11", "13", "10", "10.5", "2", "21", 2, "0", "0", 4, 5)
    [bar] = fold([one, two], 120_000)
    assert Candle.of(bar, 120_000) == Candle(
        even, even + 119_999, "10.00000000", "13.00000000", "9.00000000", "10.50000000",
        "3.00000000", "31.50000000", 5, "0.50000000", "5.25000000", 1, 5)


decimals = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("100000"),
                       places=8, allow_nan=False, allow_infinity=False)
trades = st.lists(st.tuples(decimals, decimals, st.integers(0, 179_999), st.booleans(),
                            st.integers(1, 3)), min_size=1, max_size=60)


@given(trades)
def test_one_second_candles_sum_to_the_minute_candle(drawn: list[tuple[Any, ...]]) -> None:
    """Folding trades into 1s candles and those into 1m candles gives exactly the 1m candles
    folded from the trades directly, and their volumes equal the Decimal sums."""
    drawn.sort(key=lambda t: t[2])
    bars, next_id = [], 1
    for price, qty, offset, maker, count in drawn:
        bars.append(trade_bar(f"{price:.8f}", f"{qty:.8f}", T0 + offset, maker, next_id,
                              next_id + count - 1))
        next_id += count
    direct = fold(bars, 60_000)
    assert fold(fold(bars, 1_000), 60_000) == direct
    for bar in direct:
        inside = [t for t in drawn if (T0 + t[2]) // 60_000 * 60_000 == bar.time]
        candle = Candle.of(bar, 60_000)
        assert Decimal(candle.volume) == sum(t[1] for t in inside)
        quote = sum(t[0] * t[1] for t in inside)
        assert abs(Decimal(candle.quote_volume) - quote) <= Decimal("0.000000005")
        assert candle.high == f"{max(t[0] for t in inside):.8f}"
