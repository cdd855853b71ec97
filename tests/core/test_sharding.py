"""Shards: every stream in exactly one, the same everywhere, few moves when the count changes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from binance_streamer.core.sharding import Shard, parse_shard, shard_of, split
from binance_streamer.core.streams import streams_for

SYMBOLS = [f"SYM{i:04d}USDT" for i in range(1500)]
STREAMS = streams_for(SYMBOLS, ["trade", "bookTicker", "depth@100ms"])


def test_every_stream_in_exactly_one_shard_and_shards_are_balanced() -> None:
    parts = split(STREAMS, 4)
    assert sorted(s for part in parts for s in part) == sorted(STREAMS)
    for part in parts:  # 4,500 streams: each shard near 1,125
        assert 1000 < len(part) < 1250
    for i, part in enumerate(parts, start=1):
        assert Shard(i, 4).select(STREAMS) == part


def test_one_shard_takes_everything() -> None:
    assert split(STREAMS[:10], 1) == [STREAMS[:10]]
    assert Shard(1, 1).select(STREAMS[:10]) == STREAMS[:10]


@pytest.mark.parametrize("count", [2, 3, 8])
def test_adding_a_shard_moves_only_its_share(count: int) -> None:
    moved = [s for s in STREAMS if shard_of(s, count) != shard_of(s, count + 1)]
    assert all(shard_of(s, count + 1) == count + 1 for s in moved)  # only to the new shard
    assert len(moved) < 1.3 * len(STREAMS) / (count + 1)


def test_the_same_in_another_interpreter() -> None:
    """Not Python's salted hash: another process (other PYTHONHASHSEED) agrees."""
    code = ("from binance_streamer.core.sharding import shard_of; "
            "print([shard_of(f'sym{i}usdt@trade', 5) for i in range(50)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == str([shard_of(f"sym{i}usdt@trade", 5) for i in range(50)])


@pytest.mark.parametrize(("text", "shard"), [("1/4", Shard(1, 4)), (" 3 / 3 ", Shard(3, 3))])
def test_parse(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard
    assert str(shard) == text.replace(" ", "")


@pytest.mark.parametrize(("text", "message"), [
    ("1of4", "write it as I/N"), ("0/4", "first number is 1 to 4"),
    ("5/4", "does not exist"), ("1/0", "between 1 and"), ("1/2000", "between 1 and"),
])
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_shard(text)
