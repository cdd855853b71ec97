"""One client WebSocket connection: its subscriptions, its outgoing queue of pre-built frames and
the per-connection fault switches.

Outgoing bytes are queued by `deliver` (synchronous, called by the hub) and written by one writer
task that joins everything queued into a single ``transport.write`` and then waits for the
transport's write buffer to drain (back-pressure).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol

from binance_streamer.exchange.control import SessionState
from binance_streamer.exchange.frames import FMT_COMBINED, FMT_MICROS, Event, encode, frame

__all__ = ["Connection", "Transport"]

_ids = itertools.count(1)
_HIGH_WATER = 1024 * 1024


class Transport(Protocol):
    """The subset of `asyncio.Transport` a connection writes to."""

    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def get_write_buffer_size(self) -> int: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


class Connection:
    """A client connection. ``sent`` counts data frames queued (events, not control replies)."""

    def __init__(self, transport: Transport, drain: Callable[[], Any], peer: str, path: str,
                 *, combined: bool, micros: bool, max_pending: int = 512 << 20) -> None:
        self.id = next(_ids)
        self.transport = transport
        self._drain = drain
        self.peer = peer
        self.path = path
        self.state = SessionState(combined=combined)
        self.micros = micros
        self._micros_bit = FMT_MICROS if micros else 0
        self.opened = self.last_write = time.monotonic()
        self.sent = 0
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.max_pending = max_pending
        self.closed = False
        self.close_request: tuple[int | None, str] | None = None
        self.linger = True
        self.on_close_request: Callable[[], None] = lambda: None
        self.stalled_until = 0.0
        self.pings: set[bytes] = set()
        self.pong_deadline: float | None = None
        # Fault switches (see faults.py); `faulty` keeps the hot path to one test.
        self.faulty = False
        self.skip: dict[str | None, int] = {}
        self.drop_at: int | None = None
        self.drop_code: int | None = None
        self.corrupt_next: str | None = None
        self._wake = asyncio.Event()
        self._below = asyncio.Event()
        self._below.set()

    @property
    def fmt(self) -> int:
        """The output format bits for `Event.frame`."""
        return (FMT_COMBINED if self.state.combined else 0) | self._micros_bit

    def deliver(self, event: Event) -> None:
        """Queue ``event``'s frame for this connection (applying armed faults)."""
        if self.closed:
            return
        if self.faulty and self._fault(event):
            return
        # `fmt`, inlined: this runs once per event and connection
        data = event.frame((FMT_COMBINED if self.state.combined else 0) | self._micros_bit)
        self.pending.append(data)
        self.pending_bytes += len(data)
        self.sent += 1
        if self.drop_at is not None and self.sent >= self.drop_at:
            self.request_close(self.drop_code, "")
        elif self.pending_bytes > self.max_pending and self.stalled_until == 0.0:
            self.request_close(1008, "Client too slow")  # would otherwise grow without bound
        if not self._wake.is_set():
            self._wake.set()

    def _fault(self, event: Event) -> bool:
        for key in (event.stream, None):
            left = self.skip.get(key, 0)
            if left:
                self.skip[key] = left - 1
                return True
        if self.corrupt_next is not None:
            whole = event.text(self.fmt)
            broken = whole[: max(1, len(whole) // 2)]
            full = frame(whole)
            self.send_raw(frame(broken) if self.corrupt_next == "malformed" else
                          full[: len(full) - len(whole) + len(broken)])
            if self.corrupt_next == "truncated":
                self.request_close(None, "truncated")
            self.corrupt_next = None
            return True
        return False

    def send_raw(self, data: bytes) -> None:
        """Queue already-framed bytes (control replies, pings, corrupt frames)."""
        if self.closed:
            return
        self.pending.append(data)
        self.pending_bytes += len(data)
        self._wake.set()

    def send_json(self, obj: Any) -> None:
        """Queue a text frame with ``obj`` as compact JSON."""
        self.send_raw(frame(encode(obj)))

    def request_close(self, code: int | None, reason: str, *, linger: bool = True) -> None:
        """Ask the owner to close: with a close frame ``code``, or abruptly when None.

        With ``linger`` the server waits (briefly) for the client's closing handshake.
        """
        if self.close_request is None:
            self.linger = linger
            self.close_request = (code, reason)
            self.closed = True
            self._below.set()
            self._wake.set()
            self.on_close_request()

    async def run_writer(self) -> None:
        """Write queued bytes until the connection closes (owned by the connection handler)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Not a poll: a scripted pause of known length (faults.stall).
            while self.stalled_until > time.monotonic():  # noqa: ASYNC110
                await asyncio.sleep(self.stalled_until - time.monotonic())
            self.stalled_until = 0.0
            if not await self.flush():
                return

    async def flush(self) -> bool:
        """Write everything queued now; False once the transport is gone."""
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            self.pending_bytes = 0
            if self.transport.is_closing():
                return False
            self.transport.write(data)
            self.last_write = time.monotonic()
        self._below.set()
        if self.transport.get_write_buffer_size() > _HIGH_WATER:
            try:
                await self._drain()
            except (ConnectionError, RuntimeError):
                return False
        return not self.transport.is_closing()

    def stall(self, seconds: float) -> None:
        """Send nothing (no data, no pings) for ``seconds``; queued data is sent afterwards."""
        self.stalled_until = time.monotonic() + seconds
        self._below.set()

    async def wait_below(self, limit: int) -> None:
        """Return once at most ``limit`` bytes are queued, or the connection is stalled/closed."""
        while (self.pending_bytes > limit and not self.closed
               and self.stalled_until <= time.monotonic()):
            self._below.clear()
            await self._below.wait()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        kind = "combined" if self.state.combined else "raw"
        now = time.monotonic()
        return (f"<Connection #{self.id} {state} {self.peer} {self.path!r} {kind} "
                f"streams={len(self.state.subscriptions)} sent={self.sent} "
                f"queued={self.pending_bytes}B last_write={now - self.last_write:.1f}s "
                f"age={now - self.opened:.1f}s>")
