"""Stream names as users read and type them: the help's spellings and a name's text."""

from __future__ import annotations

import pytest

from binance_streamer.core.streams import StreamKind, kind_names, parse_stream, parse_stream_spec

# An example for each placeholder the help text uses.
EXAMPLES = {"<interval>": "1m", "<1h|4h|1d>": "4h", "<5|10|20>": "10", "[@100ms]": "@100ms"}


def filled(spelling: str) -> str:
    for placeholder, example in EXAMPLES.items():
        spelling = spelling.replace(placeholder, example)
    return spelling


@pytest.mark.parametrize("spelling", kind_names())
def test_every_spelling_in_the_help_is_accepted(spelling: str) -> None:
    """Each --streams spelling the help lists is a valid item once its placeholders are filled."""
    assert parse_stream_spec(filled(spelling)) == filled(spelling)


def test_the_help_names_every_kind() -> None:
    """The help's spellings cover every stream kind there is."""
    kinds = {parse_stream(s if s.startswith("!") else f"btcusdt@{s}").kind
             for s in map(filled, kind_names())}
    assert kinds == set(StreamKind)


def test_a_stream_name_reads_as_its_name() -> None:
    """str() of a parsed stream name is the name exactly as Binance spells it."""
    assert str(parse_stream("btcusdt@kline_1m@+08:00")) == "btcusdt@kline_1m@+08:00"
