"""WebSocket framing and event encoding, done once per event and shared by every connection.

Server-to-client frames are unmasked (RFC 6455 section 5.1), so a frame is just a header plus the
payload. An `Event` keeps its payload and builds the frame for each output format lazily: raw or
combined (``{"stream":..,"data":..}``, web-socket-streams.md "General WSS information") and
millisecond or microsecond times (``timeUnit=MICROSECOND``).
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

__all__ = [
    "FMT_COMBINED",
    "FMT_MICROS",
    "Event",
    "close_frame",
    "decode",
    "encode",
    "frame",
    "to_micros",
]

FMT_COMBINED = 1
FMT_MICROS = 2

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_encoder = msgspec.json.Encoder()
encode = _encoder.encode
decode = msgspec.json.Decoder().decode
_prefixes: dict[str, bytes] = {}  # stream name -> the start of its combined-stream wrapper

# Time fields per event type `e`; other fields (trade "t" is an id) are left alone.
_TIME_FIELDS: dict[str, tuple[str, ...]] = {
    "trade": ("E", "T"),
    "aggTrade": ("E", "T"),
    "blockTrade": ("E", "T"),
    "kline": ("E",),
    "24hrTicker": ("E", "O", "C"),
    "1hTicker": ("E", "O", "C"),
    "4hTicker": ("E", "O", "C"),
    "1dTicker": ("E", "O", "C"),
    "24hrMiniTicker": ("E",),
    "depthUpdate": ("E",),
    "avgPrice": ("E", "T"),
    "referencePrice": ("t",),
    "serverShutdown": ("E",),
}


_header7 = struct.Struct(">BB").pack
_header16 = struct.Struct(">BBH").pack
_header64 = struct.Struct(">BBQ").pack


def frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final, unmasked frame carrying ``payload`` (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        return _header7(0x80 | opcode, n) + payload
    if n < 65536:
        return _header16(0x80 | opcode, 126, n) + payload
    return _header64(0x80 | opcode, 127, n) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with ``code`` and a UTF-8 ``reason`` (at most 123 bytes)."""
    return frame(code.to_bytes(2, "big") + reason.encode()[:123], OP_CLOSE)


def to_micros(payload: Any) -> Any:
    """A copy of ``payload`` with its time fields in microseconds instead of milliseconds."""
    if isinstance(payload, list):
        return [to_micros(p) for p in payload]
    if not isinstance(payload, dict):
        return payload
    fields = _TIME_FIELDS.get(payload.get("e", ""), ())
    if not fields:
        return payload
    out = dict(payload)
    for f in fields:
        if isinstance(out.get(f), int):
            out[f] = out[f] * 1000
    if out.get("e") == "kline":
        k = dict(out["k"])
        k["t"] *= 1000
        k["T"] *= 1000
        out["k"] = k
    return out


class Event:
    """One published event: its stream name, bare payload (or only its JSON text, ``data``)
    and lazily built frames.

    ``payload`` must not be mutated after publication; it is what ``History`` returns.
    """

    __slots__ = ("_frames", "_payload", "data", "stream")

    def __init__(self, stream: str, payload: Any, data: bytes | None = None) -> None:
        self.stream = stream
        self._payload = payload
        self.data = data if data is not None else encode(payload)
        self._frames: list[bytes | None] = [None, None, None, None]

    @property
    def payload(self) -> Any:
        """The bare payload; decoded from ``data`` when the event was made from its text
        (``payload`` None)."""
        if self._payload is None:
            self._payload = decode(self.data)
        return self._payload

    def frame(self, fmt: int) -> bytes:
        """The frame for format ``fmt`` (bit 0 combined, bit 1 microseconds), built once."""
        cached = self._frames[fmt]
        if cached is not None:
            return cached
        built = frame(self.text(fmt) if fmt else self.data)
        self._frames[fmt] = built
        return built

    def text(self, fmt: int) -> bytes:
        """The JSON text sent in format ``fmt`` (not cached)."""
        data = self.data if not fmt & FMT_MICROS else encode(to_micros(self.payload))
        if fmt & FMT_COMBINED:
            prefix = _prefixes.get(self.stream)
            if prefix is None:
                if len(_prefixes) > 100_000:
                    _prefixes.clear()
                prefix = _prefixes[self.stream] = b'{"stream":' + encode(self.stream) + b',"data":'
            data = prefix + data + b"}"
        return data

    def __repr__(self) -> str:
        return f"<Event {self.stream} {self.data[:60]!r}>"
