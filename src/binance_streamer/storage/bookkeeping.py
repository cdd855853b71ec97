"""The bookkeeping both backends share: gaps, quarantine, raw frames, listing changes, ``meta``
and resume points.

Each function takes a DB-API connection or cursor (sqlite3 or psycopg) and the `Statements` of
its dialect; the caller owns the transaction.
"""

from __future__ import annotations

from typing import Any

from binance_streamer.core.streams import StreamKind, parse_stream
from binance_streamer.storage.base import Batch, ResumePoint
from binance_streamer.storage.schema import Statements, statements

__all__ = ["exchange_time_scale", "last_id_params", "last_ids", "read_meta", "unfilled_gaps",
           "write_bookkeeping"]


def write_bookkeeping(cur: Any, sql: Statements, batch: Batch, stored: dict[str, int]) -> None:
    """Apply the bookkeeping part of ``batch`` with cursor ``cur``, counting new rows in
    ``stored``: gaps first, so their fills and silence ends in the same batch find them."""
    for statement, rows, table in ((sql.gap_insert, batch.gaps, "gaps"),
                                   (sql.gap_fill, batch.gap_fills, ""),
                                   (sql.silence_end, batch.silence_ends, ""),
                                   (sql.quarantine_insert, batch.quarantine, "quarantine"),
                                   (sql.raw_frame_insert, batch.raw_frames, "raw_frame"),
                                   (sql.listing_change_insert, batch.listing_changes,
                                    "listing_change")):
        if rows:
            cur.executemany(statement, rows)
            if table:
                stored[table] = cur.rowcount


def read_meta(conn: Any, sql: Statements, key: str, default: str) -> str:
    """The stored value of ``key``, storing ``default`` first if there is none."""
    conn.execute(sql.meta_insert, (key, default))
    return str(conn.execute(sql.meta_select, (key,)).fetchone()[0])


def exchange_time_scale(conn: Any, mark: str) -> int:
    """1 for a database storing exchange times in ms, 1000 for one recorded with
    ``timeUnit=MICROSECOND`` (meta ``time_unit``); reads only, stores nothing."""
    sql = statements("sqlite" if mark == "?" else "postgres").meta_select
    row = conn.execute(sql, ("time_unit",)).fetchone()
    return 1000 if row and row[0] == "microsecond" else 1


def last_id_params(stream: str) -> tuple[StreamKind, tuple[str, ...]] | None:
    """Which ``Statements.last_id`` query, with which parameters, gives ``stream``'s last stored
    id; None for a stream without ids."""
    s = parse_stream(stream)
    if s.kind in (StreamKind.AGG_TRADE, StreamKind.TRADE, StreamKind.DIFF_DEPTH):
        return s.kind, (s.symbol.upper(),)
    if s.kind is StreamKind.KLINE:
        return s.kind, (s.symbol.upper(), s.interval)
    return None


def last_ids(conn: Any, sql: Statements, streams: list[str]) -> dict[str, ResumePoint]:
    """Where each sequenced stream resumes: its last stored id (trade, aggTrade), kline open
    time or final depth update id, and whether that item is complete (a kline closed)."""
    found: dict[str, ResumePoint] = {}
    for stream in streams:
        spec = last_id_params(stream)
        if spec is None:
            continue
        kind, params = spec
        row = conn.execute(sql.last_id[kind], params).fetchone()
        if row and row[0] is not None:
            found[stream] = (int(row[0]), bool(row[1]))
    return found


def unfilled_gaps(conn: Any, sql: Statements, streams: list[str]
                  ) -> list[tuple[str, int, int, str]]:
    """Gaps of ``streams`` recorded but not filled yet (a stop or crash came first)."""
    wanted = set(streams)
    return [(str(r[0]), int(r[1]), int(r[2]), str(r[3]))
            for r in conn.execute(sql.unfilled_gaps).fetchall() if r[0] in wanted]
