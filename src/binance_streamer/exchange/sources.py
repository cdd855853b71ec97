"""Recorded data to replay: capture files with receive timestamps and JSONL frame files.

Accepted line formats (``../shared/data/PROVENANCE.md``):

- session capture (``*.session.jsonl[.gz]``):
  ``{"recv_ts":"<unix s>","kind":"ws","raw":"<frame>"}``, ``{"kind":"http","url":..,"raw":..}``
  and ``{"kind":"ws_connect",..}``; paced by ``recv_ts``;
- a frame file: one frame per line, combined (``{"stream":..,"data":..}``) or bare (the stream
  name is derived from the payload); paced by the event time ``E``;
- a REST file: ``{"recv_ts":..,"url":..,"body":..}`` (depth snapshots, exchangeInfo);
- a recorded database, SQLite or a ``postgresql://`` URL (`db_source`), paced by the recorded
  receive times, optionally filtered by symbol and receive time (`ReplayFilter`).

Frame files concatenating several captures jump in time; any jump back, or forward by more than
``MAX_GAP_MS``, is replayed as no pause.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from binance_streamer.errors import ConfigError

if TYPE_CHECKING:
    from binance_streamer.exchange.db_source import ReplayFilter

__all__ = ["MAX_GAP_MS", "Recorded", "ReplaySource", "load_source", "stream_of"]

MAX_GAP_MS = 60_000


@dataclass(slots=True)
class Recorded:
    """One recorded item: a frame (``stream`` set) or a REST depth snapshot (``snapshot``)."""

    offset_ms: float
    stream: str
    payload: Any
    snapshot_symbol: str = ""


@dataclass(slots=True)
class ReplaySource:
    """A loaded file: items in timeline order, ``base_ms`` = exchange clock at offset 0;
    ``history``: ``(stream, payload)`` events REST answers from but no stream sends (a
    database's backfilled klines, `db_source.preload_history`)."""

    path: str
    items: list[Recorded] = field(default_factory=list)
    base_ms: int = 0
    exchange_info: dict[str, Any] | None = None
    history: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        """The offset of the last item."""
        return self.items[-1].offset_ms if self.items else 0.0


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield line


def stream_of(payload: Any) -> str | None:
    """The stream name a bare payload was most likely received on, or None if unknowable."""
    if isinstance(payload, list):
        return "!miniTicker@arr" if payload and payload[0].get("e") == "24hrMiniTicker" else None
    if not isinstance(payload, dict):
        return None
    sym = str(payload.get("s", "")).lower()
    kind = payload.get("e")
    simple = {"trade": "trade", "aggTrade": "aggTrade", "24hrTicker": "ticker",
              "24hrMiniTicker": "miniTicker", "depthUpdate": "depth", "avgPrice": "avgPrice",
              "blockTrade": "blockTrade", "referencePrice": "referencePrice"}
    if kind in simple and sym:
        return f"{sym}@{simple[kind]}"
    if kind == "kline" and sym:
        return f"{sym}@kline_{payload['k']['i']}"
    if kind in ("1hTicker", "4hTicker", "1dTicker") and sym:
        return f"{sym}@ticker_{kind[:2]}"
    if kind is None and sym and {"u", "b", "B", "a", "A"} <= payload.keys():
        return f"{sym}@bookTicker"
    return None


def _time_of(payload: Any) -> int | None:
    if isinstance(payload, dict):
        value = payload.get("E", payload.get("T"))
        return value if isinstance(value, int) else None
    if isinstance(payload, list) and payload:
        return _time_of(payload[0])
    return None


def _snapshot(url: str, body: Any, offset: float) -> Recorded | None:
    parts = urlsplit(url)
    if not parts.path.endswith("/depth") or not isinstance(body, dict):
        return None
    symbol = parse_qs(parts.query).get("symbol", [""])[0].upper()
    return Recorded(offset, "", body, snapshot_symbol=symbol) if symbol else None


def load_source(path: str | Path, replay_filter: ReplayFilter | None = None) -> ReplaySource:
    """Read one replay file of any accepted format, or a recorded database (``replay_filter``
    chooses its symbols and receive times; files are replayed whole, so a filter with a file
    is a ValueError). Raises `ConfigError` for a file that is neither (`InvalidDatabase` for a
    database that holds no recording)."""
    from binance_streamer.exchange.db_source import is_database, load_database

    if is_database(path):
        return load_database(path, replay_filter)
    if replay_filter is not None:
        raise ValueError(f"--symbol, --since and --until choose from a recorded database; "
                         f"{path} is a file, replayed whole")
    try:
        return _load_file(Path(path))
    except (ValueError, KeyError, TypeError, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigError(f"{path} is not a recording (JSON lines of frames, a session "
                          f"capture, or a database): {exc}") from exc


def _load_file(p: Path) -> ReplaySource:
    src = ReplaySource(str(p))
    clock: float | None = None  # the file's clock (ms) of the previous item
    offset = 0.0
    for line in _lines(p):
        rec = json.loads(line)
        now, item = _parse_line(rec, src)
        if item is None:
            continue
        if now is not None:
            if clock is None:
                src.base_ms = int(now)
            elif 0 <= now - clock <= MAX_GAP_MS:
                offset += now - clock
            clock = now
        item.offset_ms = offset
        src.items.append(item)
    return src


def _parse_line(rec: Any, src: ReplaySource) -> tuple[float | None, Recorded | None]:
    """The item's own clock (ms, or None) and the item, or None for lines to skip."""
    if isinstance(rec, dict) and "kind" in rec and "recv_ts" in rec:
        now = float(rec["recv_ts"]) * 1000
        if rec["kind"] == "ws":
            frame = json.loads(rec["raw"])
            return now, _frame_item(frame)
        if rec["kind"] == "http":
            body = json.loads(rec["raw"])
            if "exchangeInfo" in rec["url"]:
                src.exchange_info = body
            return now, _snapshot(rec["url"], body, 0.0)
        return None, None
    if isinstance(rec, dict) and "url" in rec and "body" in rec:
        if "exchangeInfo" in rec["url"]:
            src.exchange_info = rec["body"]
            return None, None
        return None, _snapshot(rec["url"], rec["body"], 0.0)
    item = _frame_item(rec)
    return (_time_of(item.payload) if item else None), item


def _frame_item(frame: Any) -> Recorded | None:
    if isinstance(frame, dict) and "stream" in frame and "data" in frame:
        return Recorded(0.0, str(frame["stream"]), frame["data"])
    name = stream_of(frame)
    return Recorded(0.0, name, frame) if name else None
