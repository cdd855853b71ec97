"""How active each stream is lately: an exponentially decaying count of the messages it sent,
fed once per round (the recorder's one-second staleness round) with the counts of that round.

The backfill takes the most active streams' depth snapshots first (core/backfill_queue.py,
`by_activity`): their books move fastest, and most readers want them first.

Pure: rounds are counted, no clock is read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["ActivityMeter"]


class ActivityMeter:
    """Messages per round per stream, averaged with a half-life of ``half_life`` rounds.

    `observe` takes one round's counts; `rate` is about the messages per round a stream sent
    lately (0.0 for a stream never seen). A stream whose rate decays below ``floor`` is
    forgotten, so memory stays bounded by the streams still sending. ``half_life`` must be
    positive: `ValueError`.
    """

    __slots__ = ("_decay", "_floor", "_scores")

    def __init__(self, half_life: float = 30.0, floor: float = 1e-3) -> None:
        if not half_life > 0:
            raise ValueError(f"the activity half-life must be positive, got {half_life!r}")
        self._decay = math.exp(-math.log(2.0) / half_life)
        self._floor = floor
        self._scores: dict[str, float] = {}

    def observe(self, counts: Mapping[str, int]) -> None:
        """Age every score by one round, then add this round's message ``counts``."""
        decay, floor = self._decay, self._floor / (1.0 - self._decay)
        self._scores = {s: v * decay for s, v in self._scores.items() if v * decay >= floor}
        for stream, count in counts.items():
            self._scores[stream] = self._scores.get(stream, 0.0) + count

    def rate(self, stream: str) -> float:
        """About how many messages per round ``stream`` sent lately."""
        return self._scores.get(stream, 0.0) * (1.0 - self._decay)

    def __len__(self) -> int:
        return len(self._scores)

    def __repr__(self) -> str:
        busiest = max(self._scores, key=self._scores.__getitem__, default=None)
        top = "" if busiest is None else f" busiest={busiest}@{self.rate(busiest):.1f}/round"
        return f"<ActivityMeter streams={len(self._scores)}{top}>"
