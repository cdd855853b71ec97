"""Which shard records which stream: rendezvous (highest random weight) hashing of stream names.

Every stream goes to exactly one of ``count`` shards, the same one in every process and on every
machine (the hash is BLAKE2b, not Python's salted ``hash``), and changing the shard count from N
to N+1 moves only about 1/(N+1) of the streams: a stream stays where it was unless the new shard
wins it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Shard", "parse_shard", "shard_of", "split"]

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
MAX_SHARDS = 1024


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` (1-based, as written ``index/count``) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the shard count must be between 1 and {MAX_SHARDS}, "
                             f"not {self.count}")
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count} does not exist: the first "
                             f"number is 1 to {self.count}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, stream: str) -> bool:
        """True when ``stream`` belongs to this shard."""
        return shard_of(stream, self.count) == self.index

    def select(self, streams: Iterable[str]) -> list[str]:
        """The streams of ``streams`` this shard records, in their order."""
        return [s for s in streams if self.owns(s)]


def parse_shard(text: str) -> Shard:
    """``"2/4"`` -> ``Shard(2, 4)``; raises ValueError with a readable reason otherwise."""
    match = _SHARD.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid shard {text!r}: write it as I/N, e.g. 1/4 (shard 1 of 4)")
    return Shard(int(match[1]), int(match[2]))


def _weight(stream: str, index: int) -> int:
    digest = hashlib.blake2b(f"{index}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(stream: str, count: int) -> int:
    """The shard (1 to ``count``) that records ``stream``."""
    if count == 1:
        return 1
    return max(range(1, count + 1), key=lambda index: _weight(stream, index))


def split(streams: Iterable[str], count: int) -> list[list[str]]:
    """``streams`` divided among ``count`` shards: element ``i`` is shard ``i + 1``'s streams."""
    out: list[list[str]] = [[] for _ in range(count)]
    for stream in streams:
        out[shard_of(stream, count) - 1].append(stream)
    return out
