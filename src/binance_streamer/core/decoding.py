"""Raw WebSocket frame -> typed outcome, in one decoder pass per message.

A combined-stream frame starts with ``{"stream":"<name>"`` (web-socket-streams.md, "General WSS
information": combined stream events are wrapped as ``{"stream":"<streamName>","data":
<rawPayload>}``); the name picks the typed msgspec decoder of the stream's kind, which then decodes
the whole frame once. Everything else is a control reply, a ``serverShutdown`` or a reject carrying
the reason and the raw text, so nothing that arrives is silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from binance_streamer.core.events import (
    AggTrade,
    AvgPrice,
    BlockTrade,
    BookTicker,
    Combined,
    DiffDepth,
    KlineEvent,
    MiniTicker,
    PartialDepth,
    ReferencePrice,
    ServerShutdown,
    Ticker,
    Trade,
    WindowTicker,
)
from binance_streamer.core.streams import InvalidStreamName, StreamKind, StreamName, parse_stream
from binance_streamer.core.tables import TABLE_FOR_KIND, RowBuilder, TableSpec, row_builder

__all__ = ["ControlReply", "Decoded", "FrameDecoder", "Reject", "Route", "Shutdown"]

_PREFIX = b'{"stream":"'
_MAX_ROUTES = 100_000
# One decoder per stream kind, shared by every stream of that kind (a decoder keeps no state).
_DECODERS: dict[StreamKind, msgspec.json.Decoder[Any]] = {
    StreamKind.TRADE: msgspec.json.Decoder(Combined[Trade]),
    StreamKind.BLOCK_TRADE: msgspec.json.Decoder(Combined[BlockTrade]),
    StreamKind.REFERENCE_PRICE: msgspec.json.Decoder(Combined[ReferencePrice]),
    StreamKind.ALL_WINDOW_TICKERS: msgspec.json.Decoder(Combined[list[WindowTicker]]),
    StreamKind.AGG_TRADE: msgspec.json.Decoder(Combined[AggTrade]),
    StreamKind.KLINE: msgspec.json.Decoder(Combined[KlineEvent]),
    StreamKind.TICKER: msgspec.json.Decoder(Combined[Ticker]),
    StreamKind.WINDOW_TICKER: msgspec.json.Decoder(Combined[WindowTicker]),
    StreamKind.MINI_TICKER: msgspec.json.Decoder(Combined[MiniTicker]),
    StreamKind.ALL_MINI_TICKERS: msgspec.json.Decoder(Combined[list[MiniTicker]]),
    StreamKind.BOOK_TICKER: msgspec.json.Decoder(Combined[BookTicker]),
    StreamKind.AVG_PRICE: msgspec.json.Decoder(Combined[AvgPrice]),
    StreamKind.PARTIAL_DEPTH: msgspec.json.Decoder(Combined[PartialDepth]),
    StreamKind.DIFF_DEPTH: msgspec.json.Decoder(Combined[DiffDepth]),
}


@dataclass(frozen=True, slots=True)
class Route:
    """What to do with frames of one stream: decode them, and build rows of which table."""

    stream: StreamName
    decoder: msgspec.json.Decoder[Any]
    table: TableSpec
    rows: RowBuilder


class Decoded:
    """A market event of ``route.stream``.

    A plain slotted class: made for every market message, and a frozen dataclass's
    ``__init__`` (``object.__setattr__`` per field) costs about four times as much.
    """

    __slots__ = ("event", "route")

    def __init__(self, route: Route, event: Any) -> None:
        self.route = route
        self.event = event

    def __repr__(self) -> str:
        return f"Decoded(route={self.route!r}, event={self.event!r})"

    def __eq__(self, other: object) -> bool:
        return (type(other) is Decoded and self.route == other.route
                and self.event == other.event)

    __hash__ = None  # type: ignore[assignment]  # mutable: like the dataclass it replaces


@dataclass(frozen=True, slots=True)
class ControlReply:
    """A reply to SUBSCRIBE and friends: ``{"result": ..., "id": ...}`` or ``{"error": ...}``."""

    id: Any
    result: Any = None
    error: Any = None


@dataclass(frozen=True, slots=True)
class Shutdown:
    """A ``serverShutdown`` event: the connection is about to be closed by the server."""

    event_time: int


@dataclass(frozen=True, slots=True)
class Reject:
    """A frame that could not be decoded: kept with its reason for the quarantine table."""

    reason: str
    raw: bytes
    stream: str = ""


Outcome = Decoded | ControlReply | Shutdown | Reject


class FrameDecoder:
    """Decodes combined-stream frames; routes are built once per stream name and cached."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._by_key: dict[bytes, Route] = {}  # the frame's first bytes up to the name's end
        self._generic = msgspec.json.Decoder()

    def __repr__(self) -> str:
        return f"<FrameDecoder routes={len(self._routes)}>"

    def route(self, name: str) -> Route:
        """The route of stream ``name``; raises `InvalidStreamName` for an unknown stream."""
        route = self._routes.get(name)
        if route is None:
            stream = parse_stream(name)
            route = Route(stream, _DECODERS[stream.kind], TABLE_FOR_KIND[stream.kind],
                          row_builder(stream))
            if len(self._routes) < _MAX_ROUTES:  # a server inventing names cannot grow this
                self._routes[name] = route
        return route

    def decode(self, frame: bytes) -> Outcome:
        """Decode one frame; never raises."""
        if frame.startswith(_PREFIX):
            end = frame.find(b'"', len(_PREFIX))
            route = self._by_key.get(frame[:end])
            if route is None:
                return self._first_of_stream(frame, end)
            try:  # the hot path: a stream seen before
                return Decoded(route, route.decoder.decode(frame).data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return self._typed(route, frame)
        return self._other(frame)

    @staticmethod
    def _typed(route: Route, frame: bytes) -> Outcome:
        try:
            return Decoded(route, route.decoder.decode(frame).data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return Reject(f"malformed {route.stream.kind} event: {exc}", frame, route.stream.name)

    def _first_of_stream(self, frame: bytes, end: int) -> Outcome:
        name = frame[len(_PREFIX):end].decode("utf-8", "replace")
        if name == "!serverShutdown":
            return self._shutdown(frame)
        try:
            route = self.route(name)
        except InvalidStreamName:
            return Reject("unknown stream", frame, name)
        if len(self._by_key) < _MAX_ROUTES:  # a server inventing names cannot grow this forever
            self._by_key[frame[:end]] = route
        return self._typed(route, frame)

    def _other(self, frame: bytes) -> Outcome:
        try:
            obj = self._generic.decode(frame)
        except msgspec.DecodeError as exc:
            return Reject(f"invalid JSON: {exc}", frame)
        if isinstance(obj, dict):
            if "result" in obj or "error" in obj:
                return ControlReply(obj.get("id"), obj.get("result"), obj.get("error"))
            if obj.get("e") == "serverShutdown" and isinstance(obj.get("E"), int):
                return Shutdown(obj["E"])
        return Reject("not a combined-stream frame", frame)

    def _shutdown(self, frame: bytes) -> Outcome:
        try:
            msg = msgspec.json.decode(frame, type=Combined[ServerShutdown])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return Reject(f"malformed serverShutdown: {exc}", frame, "!serverShutdown")
        return Shutdown(msg.data.event_time)
