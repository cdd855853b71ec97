"""What the writer hands a storage backend: a `Batch`, written in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from binance_streamer.core.tables import Row

__all__ = ["Batch", "GapFill", "GapRow", "ListingChangeRow", "ResumePoint", "SilenceEnd", "Sink",
           "WriteResult"]

GapRow = tuple[str, int, int, str, int]  # stream, first_missing, last_missing, cause, detected_ns
GapFill = tuple[int, int, str, int, int]  # filled_ns, rows_filled, stream, first, last
# last id / kline open time / final depth update id, and whether that item is complete
ResumePoint = tuple[int, bool]
# last_missing, stream, first_missing: where a silence (a 'stale...' gap row) ended.
SilenceEnd = tuple[int, str, int]
# changed_ns, symbol, change, old_status, new_status, streams_added, streams_removed, detail
ListingChangeRow = tuple[int, str, str, str | None, str | None, str, str, str]


@dataclass(slots=True)
class Batch:
    """Rows for several tables, stored atomically: all of them or none."""

    rows: dict[str, list[Row]] = field(default_factory=dict)
    quarantine: list[Row] = field(default_factory=list)  # received_ns, stream, reason, raw
    raw_frames: list[Row] = field(default_factory=list)  # received_ns, connection, frame
    gaps: list[GapRow] = field(default_factory=list)
    gap_fills: list[GapFill] = field(default_factory=list)
    silence_ends: list[SilenceEnd] = field(default_factory=list)  # applied after ``gaps``
    listing_changes: list[ListingChangeRow] = field(default_factory=list)
    first_received_ns: int = 0
    market_rows: int = 0  # rows in ``rows``, kept as they are added (read on every frame)

    def add(self, table: str, rows: list[Row]) -> None:
        """Append market rows for ``table``."""
        bucket = self.rows.get(table)
        if bucket is None:
            self.rows[table] = rows
        else:
            bucket.extend(rows)
        self.market_rows += len(rows)

    def __len__(self) -> int:
        return (self.market_rows + len(self.quarantine) + len(self.raw_frames) + len(self.gaps)
                + len(self.gap_fills) + len(self.silence_ends) + len(self.listing_changes))

    def __repr__(self) -> str:
        tables = " ".join(f"{t}={len(r)}" for t, r in self.rows.items())
        return (f"<Batch {tables} quarantine={len(self.quarantine)} gaps={len(self.gaps)} "
                f"silence_ends={len(self.silence_ends)}>")


@dataclass(slots=True)
class WriteResult:
    """Rows newly stored per table by one batch (duplicates are not counted)."""

    stored: dict[str, int]


class Sink(Protocol):
    """A storage backend. Used from one writer thread only."""

    def write(self, batch: Batch) -> WriteResult:
        """Store ``batch`` in one transaction; raise StorageBusy or StorageFatal on failure."""
        ...

    def last_ids(self, streams: list[str]) -> dict[str, ResumePoint]:
        """Where each sequenced stream resumes: (last id, kline open time or final depth
        update id; whether that item is complete)."""
        ...

    def unfilled_gaps(self, streams: list[str]) -> list[tuple[str, int, int, str]]:
        """Gaps of ``streams`` recorded but not filled yet: (stream, first, last, cause)."""
        ...

    def meta(self, key: str, default: str) -> str:
        """The stored value of ``key``, storing ``default`` first if there is none."""
        ...

    def close(self) -> None:
        """Release the connection (called on the writer thread, as its last act)."""
        ...
