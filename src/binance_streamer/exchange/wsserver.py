"""The market-stream WebSocket endpoint: URL forms, handshake limits, control messages, the
incoming message rate limit, ping/pong keepalive and connection lifetime.

URL forms (web-socket-streams.md "General WSS information"): ``/ws``, ``/ws/<s1>/<s2>`` (bare
payloads), ``/stream``, ``/stream?streams=<s1>/<s2>`` (combined wrapper), each with an optional
``timeUnit=MICROSECOND``. A URL may carry up to 1024 streams ("WebSocket Limits"), so the
request line may be tens of kilobytes (the server's parser limits are raised in server.py).
aiohttp does the handshake and parses incoming frames (``autoping`` off: pings and pongs count
towards the 5 messages/s limit); outgoing frames are written pre-built.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING
from urllib.parse import unquote

from aiohttp import WSMessage, WSMsgType, web

from binance_streamer.exchange.connection import Connection
from binance_streamer.exchange.control import handle_control, is_valid_stream
from binance_streamer.exchange.frames import OP_PING, OP_PONG, close_frame, frame
from binance_streamer.exchange.limits import Limits

if TYPE_CHECKING:
    from binance_streamer.exchange.faults import Faults
    from binance_streamer.exchange.hub import Hub

__all__ = ["WsEndpoint", "parse_target"]

_TIME_UNITS = {"MICROSECOND": True, "microsecond": True, "MILLISECOND": False,
               "millisecond": False}


class BadTarget(ValueError):
    """A connection URL Binance would refuse; ``code``/``msg`` are the error body."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def parse_target(path: str, raw_query: str, max_streams: int) -> tuple[bool, list[str], bool]:
    """``(combined, streams, micros)`` for a request path and raw query string, or `BadTarget`.

    The query is split by hand so that ``+`` (as in ``@+08:00``) is not read as a space.
    """
    query: dict[str, str] = {}
    for part in raw_query.split("&"):
        key, _, value = part.partition("=")
        if key:
            query[unquote(key)] = unquote(value)
    unit = query.get("timeUnit", "MILLISECOND")
    if unit not in _TIME_UNITS:
        raise BadTarget(2, "Invalid request: invalid timeUnit")
    head, _, tail = path.lstrip("/").partition("/")
    if head == "ws":
        combined, spec = False, tail
    elif head == "stream":
        combined, spec = True, query.get("streams", "") or tail
    else:
        raise BadTarget(2, "Invalid request: unknown endpoint")
    # Every stream name has an ``@``. A segment without one names no stream at all: Binance opens
    # the connection without it, as a raw connection to subscribe on later (ccxt opens
    # ``/ws/<n>``, a number of its own, then sends SUBSCRIBE). A segment with an ``@`` must be a
    # valid stream name.
    streams = list(dict.fromkeys(s for s in spec.split("/") if "@" in s))
    if not all(is_valid_stream(s) for s in streams):
        raise BadTarget(2, "Invalid request: invalid stream")
    if len(streams) > max_streams:
        raise BadTarget(4, "Too many subscriptions")
    return combined, streams, _TIME_UNITS[unit]


class _Attempts:
    """Connection attempts per IP in a sliding window (300 per 5 minutes)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._seen: dict[str, deque[float]] = {}

    def allow(self, ip: str) -> bool:
        now = time.monotonic()
        seen = self._seen.setdefault(ip, deque())
        while seen and seen[0] <= now - self._limits.connect_window_s:
            seen.popleft()
        seen.append(now)
        return len(seen) <= self._limits.connect_attempts


class WsEndpoint:
    """The aiohttp handler for every WebSocket URL form."""

    def __init__(self, hub: Hub, limits: Limits, faults: Faults) -> None:
        self.hub = hub
        self.limits = limits
        self.faults = faults
        self._attempts = _Attempts(limits)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Upgrade one request and serve the connection until it closes."""
        ip = request.remote or "?"
        if self.faults.refusing():
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        if not self._attempts.allow(ip):
            return web.json_response({"code": -1003, "msg": "Too many connection attempts."},
                                     status=429, headers={"Retry-After": "60"})
        try:
            combined, streams, micros = parse_target(
                request.rel_url.path, request.rel_url.raw_query_string,
                self.limits.max_streams_per_connection)
        except BadTarget as exc:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=400)
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20,
                                   timeout=1.0)
        if not ws.can_prepare(request).ok:
            return web.json_response({"code": 2, "msg": "Invalid request: not a WebSocket"},
                                     status=400)
        await ws.prepare(request)
        assert request.transport is not None
        conn = Connection(request.transport, request.protocol._drain_helper, ip,
                          request.rel_url.raw_path_qs, combined=combined, micros=micros,
                          max_pending=self.limits.max_pending_bytes)
        for name in streams:
            conn.state.subscriptions[name] = None
        await self._serve(ws, conn, streams)
        return ws

    async def _serve(self, ws: web.WebSocketResponse, conn: Connection, streams: list[str]
                     ) -> None:
        closing = asyncio.Event()
        conn.on_close_request = closing.set
        self.hub.add(conn)
        self.faults.attach(conn)
        self.hub.subscribe(conn, streams)
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(conn.run_writer()), tg.create_task(self._keepalive(conn)),
                         tg.create_task(self._read(ws, conn))]
                await closing.wait()
                for task in tasks[1:]:
                    task.cancel()
                await self._close(ws, conn)
                tasks[0].cancel()
        finally:
            conn.closed = True
            self.hub.remove(conn)

    async def _close(self, ws: web.WebSocketResponse, conn: Connection) -> None:
        code, reason = conn.close_request or (None, "")
        await conn.flush()
        if ws.closed or reason == "truncated":
            conn.transport.close()  # the closing handshake (or the cut frame) goes out first
            return
        if code is None:
            conn.transport.abort()
            return
        if not conn.linger:
            conn.transport.write(close_frame(code, reason))
            conn.transport.close()
            return
        try:
            await ws.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError):
            conn.transport.abort()

    async def _read(self, ws: web.WebSocketResponse, conn: Connection) -> None:
        recent: deque[float] = deque()
        limit = self.limits.max_incoming_per_s
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                            WSMsgType.ERROR):
                conn.request_close(None, "")
                return
            now = time.monotonic()
            recent.append(now)
            while recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) > limit:
                conn.request_close(1008, "Too many requests")
                return
            self._incoming(conn, msg)

    def _incoming(self, conn: Connection, msg: WSMessage) -> None:
        if msg.type is WSMsgType.PING:
            conn.send_raw(frame(bytes(msg.data), OP_PONG))
        elif msg.type is WSMsgType.PONG:
            if bytes(msg.data) in conn.pings:
                conn.pings.clear()
                conn.pong_deadline = None
        else:
            text = msg.data if isinstance(msg.data, str) else msg.data.decode("utf-8", "replace")
            result = handle_control(text, conn.state, self.limits.max_streams_per_connection)
            self.hub.subscribe(conn, result.added)
            self.hub.unsubscribe(conn, result.removed)
            conn.send_json(result.reply)

    async def _keepalive(self, conn: Connection) -> None:
        """Ping every ``ping_interval_s``; close after ``pong_timeout_s`` unanswered or at the end
        of the connection's lifetime (web-socket-streams.md "WebSocket Limits")."""
        lim = self.limits
        next_ping = conn.opened + lim.ping_interval_s
        end = conn.opened + lim.lifetime_s
        while True:
            deadline = min(next_ping, end, conn.pong_deadline or end)
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            if now >= end:
                conn.request_close(1001, "Connection lifetime expired")
                return
            if conn.pong_deadline is not None and now >= conn.pong_deadline:
                conn.request_close(1008, "Pong timeout")
                return
            if now >= next_ping:
                next_ping += lim.ping_interval_s
                if conn.stalled_until > now:
                    continue
                payload = str(time.time_ns() // 1_000_000).encode()
                conn.pings.add(payload)
                conn.send_raw(frame(payload, OP_PING))
                if conn.pong_deadline is None:
                    conn.pong_deadline = now + lim.pong_timeout_s
