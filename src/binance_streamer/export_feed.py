"""The raw feed: ``<local receive time ns> <combined-stream JSON frame>`` lines in receive order.

Frames come verbatim from the ``raw_frame`` archive when the recording kept one (``--raw``)
over the asked time range; otherwise they are rebuilt from the typed rows (`core.feed`), one
cursor per table ordered by receive time, merged k-way (memory: one page per table). Rows
fetched over REST were never received and have no receive time: they are not in the feed.
Depth stream names carry an update speed rows do not store: the one named (``depth@100ms``),
else ``@100ms`` when the recording's diffs come faster than once a second.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Generator, Iterator
from typing import Any

import msgspec

from binance_streamer.core.feed import FRAME_BUILDERS, frame_line
from binance_streamer.core.streams import InvalidStreamName
from binance_streamer.errors import ConfigError
from binance_streamer.storage.export_rows import (
    SPECS,
    Selection,
    count_rows,
    feed_pages,
    select,
    time_unit,
)
from binance_streamer.storage.query import table_for

__all__ = ["feed_lines"]

_CHUNK = 4096
Lines = Generator[list[bytes], None, None]


class _Stream(msgspec.Struct):
    stream: str | None = None  # control replies and rejects are archived too: no stream


_stream_of = msgspec.json.Decoder(_Stream).decode


def feed_lines(conn: Any, mark: str, streams: list[str], symbols: list[str],
               since: int | None, until: int | None, *, from_raw: bool = False
               ) -> tuple[Lines, Callable[[], int]]:
    """Chunks of feed lines for ``streams`` (every market table when empty) of ``symbols``
    (all when empty) received from ``since`` until ``until`` (epoch ms), and a function
    counting them. ``from_raw``: the frames of the ``raw_frame`` archive, exactly as received
    (it holds only what was recorded with ``--raw``); else frames rebuilt from every row."""
    scale = 1000 if time_unit(conn, mark) == "us" else 1
    kinds = streams or [t for t in FRAME_BUILDERS]
    sels = [select(k, symbols, since, until, mark, scale, by_receive_time=True) for k in kinds]
    for sel in sels:
        if sel.spec.name not in FRAME_BUILDERS:
            raise InvalidStreamName(f"{sel.stream!r} has no stream frames (a REST answer)")
    raw = _raw_range(since, until, mark)
    if from_raw:
        if not conn.execute("SELECT 1 FROM raw_frame LIMIT 1").fetchone():
            raise ConfigError("this recording holds no raw frames (they are kept by `record "
                              "--raw`): leave out --from-raw to rebuild the frames from its rows")
        accept = _raw_filter(streams, symbols)
        return _raw_lines(conn, mark, raw, accept), lambda: _count_raw(conn, raw)
    speeds = [_speed(conn, sel, scale) for sel in sels]
    return _merged(conn, mark, sels, speeds), lambda: sum(count_rows(conn, s) for s in sels)


def _merged(conn: Any, mark: str, sels: list[Selection],
            speeds: list[Callable[[tuple[Any, ...]], str]]) -> Lines:
    def keyed(i: int, sel: Selection) -> Iterator[tuple[int, int, tuple[Any, ...]]]:
        for page in feed_pages(conn, sel, mark):
            for row in page:
                yield row[-2], i, row  # received_ns: every market row ends (received_ns, source)

    merged = heapq.merge(*(keyed(i, s) for i, s in enumerate(sels)), key=lambda item: item[:2])
    tables = [s.spec.name for s in sels]
    while chunk := [frame_line(tables[i], r, ns, speeds[i](r))
                    for ns, i, r in itertools.islice(merged, _CHUNK)]:
        yield chunk


# A depth stream whose rows came closer than this is the @100ms one (the 1000 ms streams send
# at most one event a second; event time for diffs, receive time for partial books).
_FAST_EVENT_MS = 900
_FAST_RECEIVE_NS = 500_000_000


def _speed(conn: Any, sel: Selection, scale: int) -> Callable[[tuple[Any, ...]], str]:
    """The speed suffix (``@100ms`` or empty) of each row's stream: as the asked name says
    when it names one, else from how often the first stored rows of each stream came (per
    symbol, and per level count for partial books: speeds are not stored)."""
    table = sel.spec.name
    if table not in ("partial_depth", "depth_update"):
        return lambda _row: ""
    if "@100ms" in sel.stream or "@1000ms" in sel.stream:
        suffix = "@100ms" if "@100ms" in sel.stream else ""
        return lambda _row: suffix
    if table == "depth_update":
        sql, limit, width = ("SELECT symbol, event_time FROM depth_update ORDER BY id "
                             "LIMIT 20000", _FAST_EVENT_MS * scale, 1)
    else:
        sql, limit, width = ("SELECT symbol, levels, received_ns FROM partial_depth ORDER BY "
                             "id LIMIT 20000", _FAST_RECEIVE_NS, 2)
    last: dict[tuple[Any, ...], int] = {}
    fast: set[tuple[Any, ...]] = set()
    for row in conn.execute(sql).fetchall():
        key, t = tuple(row[:width]), row[width]
        if key in last and 0 <= t - last[key] < limit:
            fast.add(key)
        last[key] = t
    return lambda row: "@100ms" if tuple(row[:width]) in fast else ""


def _raw_range(since: int | None, until: int | None, mark: str) -> tuple[str, tuple[int, ...]]:
    where, params = [], []
    for bound, op in ((since, ">="), (until, "<")):
        if bound is not None:
            where.append(f"received_ns {op} {mark}")
            params.append(bound * 1_000_000)
    return (" WHERE " + " AND ".join(where) if where else ""), tuple(params)


def _count_raw(conn: Any, raw: tuple[str, tuple[int, ...]]) -> int:
    sql = f"SELECT COUNT(*) FROM raw_frame{raw[0]}"  # noqa: S608
    return int(conn.execute(sql, raw[1]).fetchone()[0])


def _raw_filter(streams: list[str], symbols: list[str]) -> Callable[[str], bool]:
    """Whether a frame of stream ``name`` is asked for (by symbol, and by stream type or table)."""
    wanted = {s.lower() for s in symbols}

    def accept(name: str) -> bool:
        symbol, _, kind = name.partition("@")
        if wanted and not name.startswith("!") and symbol not in wanted:
            return False
        return not streams or any(_matches(name, kind, asked) for asked in streams)

    return accept


def _matches(name: str, kind: str, asked: str) -> bool:
    if asked in (name, kind):
        return True
    if asked not in SPECS:
        return False
    try:
        return table_for(name if name.startswith("!") else kind) == asked
    except InvalidStreamName:
        return False


def _raw_lines(conn: Any, mark: str, raw: tuple[str, tuple[int, ...]],
               accept: Callable[[str], bool]) -> Lines:
    sql = f"SELECT received_ns, frame FROM raw_frame{raw[0]} ORDER BY received_ns, id"  # noqa: S608
    cur = conn.execute(sql, raw[1]) if mark == "?" else _server_cursor(conn, sql, raw[1])
    try:
        while page := cur.fetchmany(_CHUNK):
            chunk = [b"%d %s\n" % (ns, frame.encode()) for ns, frame in page
                     if _accepted(frame, accept)]
            if chunk:
                yield chunk
    finally:
        cur.close()


def _accepted(frame: str, accept: Callable[[str], bool]) -> bool:
    """Whether an archived frame is a market frame of an asked stream (control replies,
    rejects and malformed frames are archived too, and never in a feed)."""
    try:
        name = _stream_of(frame).stream
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return name is not None and accept(name)


def _server_cursor(conn: Any, sql: str, params: tuple[int, ...]) -> Any:
    cur = conn.cursor(name="export_raw_feed")
    cur.itersize = _CHUNK
    cur.execute(sql, params)
    return cur
