"""One supervised combined-stream WebSocket connection (picows), reconnecting under a policy.

The connection only moves bytes: every text frame goes to ``on_frame(connection, received_ns,
payload)``. Pings are answered by picows (web-socket-streams.md, "WebSocket Limits": "reply with a
pong copying the payload").

Liveness comes from the connection itself, never from how often its streams trade: when nothing
has arrived for ``ping_idle_s`` we send a ping of our own, and a connection that answers neither
with data nor with a pong within ``pong_timeout_s`` is dead and is replaced. A connection whose
streams are merely quiet (a long-tail symbol's trades) stays up; the recorder records the silence.

The supervisor reconnects after a drop, and rolls over to a fresh connection before Binance's
24 h cut or on ``serverShutdown``: the new connection is opened and must deliver data before the
old one is closed, so the overlap (deduplicated by the natural keys in storage) covers the switch.
Every failure goes through `ReconnectPolicy.after`, the one retry policy: a refusal that cannot
succeed by retrying (HTTP 404 on the upgrade, say) ends `run` with `HandshakeRefused`.

Its streams can change while it runs (`add_streams`, `remove_streams`): they are SUBSCRIBEd and
UNSUBSCRIBEd on the live connection (web-socket-streams.md, "Live Subscribing/Unsubscribing to
streams"), at most 3 control messages in any second (`ControlPacer`; the limit is 5 incoming
messages per second, pongs and pings included, "WebSocket Limits"), and a reconnect or rollover
opens the URL of the current streams (``url_for``). Each transport remembers what it carries,
so a change made during a rollover reaches the new connection too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec
import picows
from picows import WSListener, WSMsgType, WSTransport

from binance_streamer.core.backoff import ReconnectPolicy, retry_after_s
from binance_streamer.core.listings import (
    MAX_PARAMS,
    ControlMessage,
    ControlPacer,
    next_control,
)
from binance_streamer.core.planning import AttemptLimiter
from binance_streamer.errors import ConfigError, HandshakeRefused, Unreachable

__all__ = ["ConnectionSettings", "FrameHandler", "StreamConnection"]

log = logging.getLogger(__name__)
FrameHandler = Callable[[int, int, bytes], None]
_control_ids = itertools.count(1)  # unique in the process: a reply names its request


@dataclass
class ConnectionSettings:
    """Timing of one connection; tests shrink these."""

    # Nothing received for this long -> we send a ping (Binance pings every 20 s by itself; a
    # ping of ours counts towards the 5 incoming messages per second, web-socket-streams.md
    # "WebSocket Limits"): a dead connection is found within about 10 s.
    ping_idle_s: float = 5.0
    pong_timeout_s: float = 5.0  # ... and no data nor pong for this long after it -> reconnect
    lifetime_s: float = 23.5 * 3600  # roll over before Binance's 24 h disconnect
    first_data_timeout_s: float = 10.0  # a rollover's new connection must deliver by then
    handshake_timeout_s: float = 10.0
    # A small kernel receive buffer keeps back-pressure tight: while reading is paused, at most
    # this much more arrives (the default autotunes to tens of MB, ~75,000 frames).
    receive_buffer_bytes: int = 512 * 1024
    ssl_context: ssl.SSLContext | None = None  # for wss:// with a private CA; default: system CAs
    policy: Callable[[], ReconnectPolicy] = field(default=ReconnectPolicy)

    def __post_init__(self) -> None:
        if not 0 < self.pong_timeout_s <= self.ping_idle_s:
            raise ConfigError("pong_timeout_s must be positive and at most ping_idle_s")


class _Listener(WSListener):
    def __init__(self, owner: StreamConnection, streams: Sequence[str] = ()) -> None:
        self.owner = owner
        self.subscribed: dict[str, None] = dict.fromkeys(streams)  # what this transport carries
        self.first_data = asyncio.Event()
        self.close_code: int | None = None
        self._parts: list[bytes] = []

    def on_ws_frame(self, transport: WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.CONTINUATION:
            payload = frame.get_payload_as_bytes()
            if not frame.fin:  # Binance does not fragment, but the protocol allows it
                self._parts.append(payload)
                return
            if self._parts:
                payload = b"".join([*self._parts, payload])
                self._parts.clear()
            self.owner.deliver(payload)
            self.first_data.set()
        elif kind is WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            self.owner.close_codes.append(self.close_code)
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def send_user_specific_ping(self, transport: WSTransport) -> None:
        """picows's liveness ping after ``ping_idle_s`` without a frame. While we pause reading
        ourselves (back-pressure) the silence is ours: count the connection as alive instead
        of pinging a peer whose pong we would not read."""
        if self.owner.reading_paused:
            asyncio.get_running_loop().call_soon(transport.notify_user_specific_pong_received)
        else:
            transport.send_ping()


class StreamConnection:
    """A combined-stream connection to ``url`` that keeps itself up until `stop`.

    ``streams`` are the streams ``url`` names; with ``url_for`` (streams -> URL) each connect
    opens the URL of the streams wanted then, and `add_streams`/`remove_streams` change them on
    the live connection.
    """

    def __init__(
        self,
        index: int,
        url: str,
        on_frame: FrameHandler,
        limiter: AttemptLimiter,
        settings: ConnectionSettings | None = None,
        on_event: Callable[[StreamConnection, str], None] | None = None,
        *,
        streams: Sequence[str] = (),
        url_for: Callable[[Sequence[str]], str] | None = None,
        pacer: ControlPacer | None = None,
        max_params: int = MAX_PARAMS,
    ) -> None:
        self.index = index
        self.url = url
        self.wanted: dict[str, None] = dict.fromkeys(streams)  # the streams it should carry
        self._url_for = url_for
        self._pacer = pacer or ControlPacer()
        self._max_params = max_params  # stream names per control message
        self._listener: _Listener | None = None
        self._control_wake = asyncio.Event()
        self._controls: dict[int, tuple[ControlMessage, _Listener]] = {}  # id -> unanswered
        self.controls_sent = 0
        self.settings = settings or ConnectionSettings()
        self._on_frame = on_frame
        self._limiter = limiter
        self._on_event = on_event or (lambda c, e: None)
        self._policy = self.settings.policy()
        self._transport: WSTransport | None = None
        self._stopping = asyncio.Event()
        self._rollover = asyncio.Event()
        self._paused = False
        self.frames = 0
        self.connects = 0
        self.reconnects = 0
        self.rollovers = 0
        self.last_frame = time.monotonic()
        # Monotonic time since when no WebSocket is connected (None while one is): how long a
        # connection has been down, for a health check.
        self.closed_since: float | None = self.last_frame
        self.last_error = ""
        self.close_codes: list[int] = []  # close codes the server sent, oldest first
        self._refusal: float | None = None  # Retry-After of the last refused rollover

    def __repr__(self) -> str:
        state = "open" if self._transport is not None else "closed"
        idle = time.monotonic() - self.last_frame
        return (f"<Connection #{self.index} {state} frames={self.frames} "
                f"reconnects={self.reconnects} last_msg={idle:.1f}s>")

    @property
    def is_open(self) -> bool:
        """True while a WebSocket is connected."""
        return self._transport is not None

    @property
    def stream_count(self) -> int:
        """How many streams this connection should carry now."""
        return len(self.wanted)

    @property
    def reading_paused(self) -> bool:
        """True while `pause_reading` holds (back-pressure from the writer)."""
        return self._paused

    def deliver(self, payload: bytes) -> None:
        """Hand one text frame to the recorder (called by the listener)."""
        self.frames += 1
        self.last_frame = time.monotonic()
        self._on_frame(self.index, time.time_ns(), payload)

    def pause_reading(self) -> None:
        """Stop reading from the socket (back-pressure from the writer)."""
        self._paused = True
        if self._transport is not None:
            self._transport.underlying_transport.pause_reading()

    def resume_reading(self) -> None:
        """Resume reading after `pause_reading`."""
        self._paused = False
        self.last_frame = time.monotonic()  # time spent paused is not a stall
        if self._transport is not None:
            self._transport.underlying_transport.resume_reading()

    def request_rollover(self) -> None:
        """Switch to a fresh connection now (``serverShutdown``), without a gap."""
        self._rollover.set()

    def add_streams(self, names: Iterable[str]) -> None:
        """Carry ``names`` too: SUBSCRIBEd on the live connection, paced."""
        self.wanted.update(dict.fromkeys(names))
        self._control_wake.set()

    def remove_streams(self, names: Iterable[str]) -> None:
        """Stop carrying ``names``: UNSUBSCRIBEd on the live connection, paced."""
        for name in names:
            self.wanted.pop(name, None)
        self._control_wake.set()

    def control_reply(self, request_id: object, failed: bool) -> ControlMessage | None:
        """The control message a reply answers (None if not ours); a failed SUBSCRIBE's
        streams are no longer wanted nor counted as carried."""
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            return None
        sent = self._controls.pop(request_id, None)
        if sent is None:
            return None
        message, listener = sent
        if failed and message.method == "SUBSCRIBE":
            for name in message.params:
                self.wanted.pop(name, None)
                listener.subscribed.pop(name, None)
        return message

    async def _send_controls(self) -> None:
        """Bring the live transport's streams to `wanted`, one paced message at a time."""
        while True:
            await self._control_wake.wait()
            self._control_wake.clear()
            while (transport := self._transport) is not None and \
                    (listener := self._listener) is not None and not transport.is_disconnected:
                message = next_control(listener.subscribed, self.wanted, self._max_params)
                if message is None:
                    break
                if (delay := self._pacer.delay(time.monotonic())) > 0:
                    await asyncio.sleep(delay)  # a rate limit's wait, then look again
                    continue
                request_id = next(_control_ids)
                self._pacer.record(time.monotonic())
                transport.send(WSMsgType.TEXT, msgspec.json.encode(message.body(request_id)))
                self.controls_sent += 1
                self._controls[request_id] = (message, listener)
                if message.method == "SUBSCRIBE":
                    listener.subscribed.update(dict.fromkeys(message.params))
                else:
                    for name in message.params:
                        listener.subscribed.pop(name, None)
                log.info("connection #%d: %s %d stream(s) (id %d)", self.index, message.method,
                         len(message.params), request_id)

    def stop(self) -> None:
        """Close the connection and end `run`."""
        self._stopping.set()
        if self._transport is not None:
            self._transport.send_close(picows.WSCloseCode.OK)
            self._transport.disconnect()

    async def run(self) -> None:
        """Connect, supervise, reconnect, until `stop`."""
        sender = asyncio.create_task(self._send_controls(), name=f"controls-{self.index}")
        try:
            while not self._stopping.is_set():
                transport = await self._connect_with_retry()
                if transport is None:
                    return
                await self._supervise(transport)
                self._controls.clear()  # gone with the connection: no answer will come
                self._transport = self._listener = None
                self.closed_since = time.monotonic()
                self._policy.disconnected(self.closed_since)
                if not self._stopping.is_set():
                    self.reconnects += 1
                    self._on_event(self, "disconnected")
        finally:
            sender.cancel()

    async def _connect_with_retry(self) -> WSTransport | None:
        while not self._stopping.is_set():
            await self._wait_for_attempt_slot()
            try:
                transport, listener = await self._open()
            except Exception as exc:
                failure = translate(exc, self.url)
                self.last_error = str(failure)
                delay = self._policy.after(failure)
                if delay is None:
                    self._on_event(self, "refused")
                    raise failure from exc
                log.warning("connection #%d: %s; retrying in %.1fs",
                            self.index, self.last_error, delay)
                self._on_event(self, "connect_failed")
                if await self._sleep_or_stop(delay):
                    return None
                continue
            self._adopt(transport, listener)
            return transport
        return None

    async def _open(self) -> tuple[WSTransport, _Listener]:
        self.connects += 1
        streams = list(self.wanted)
        if self._url_for is not None:
            self.url = self._url_for(streams)
        sockets: list[socket.socket] = []  # the socket we made, closed if the attempt fails
        try:
            transport, listener = await picows.ws_connect(
                lambda: _Listener(self, streams), self.url,
                websocket_handshake_timeout=self.settings.handshake_timeout_s,
                enable_auto_pong=True, max_frame_size=64 * 1024 * 1024,
                enable_auto_ping=True, auto_ping_idle_timeout=self.settings.ping_idle_s,
                auto_ping_reply_timeout=self.settings.pong_timeout_s,
                socket_factory=lambda url: self._socket(url, sockets),
                ssl_context=self.settings.ssl_context,
            )
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        if not isinstance(listener, _Listener):  # picows gives None when the server aborts
            transport.disconnect()
            raise ConnectionError("the server closed the connection during the handshake")
        if self._stopping.is_set():  # stop() came while connecting: nobody else will close it
            transport.disconnect()
            raise ConnectionError("stopped while connecting")
        return transport, listener

    async def _socket(self, url: picows.WSParsedURL, made: list[socket.socket]
                      ) -> socket.socket:
        """An unconnected TCP socket for ``url`` with a bounded receive buffer (also appended
        to ``made``)."""
        infos = await asyncio.get_running_loop().getaddrinfo(
            url.host, url.port, type=socket.SOCK_STREAM)
        family, kind, proto, _, _ = infos[0]
        sock = socket.socket(family, kind, proto)
        made.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.settings.receive_buffer_bytes)
        sock.setblocking(False)
        return sock

    def _adopt(self, transport: WSTransport, listener: _Listener) -> None:
        self._transport, self._listener = transport, listener
        self.closed_since = None
        self._control_wake.set()  # changes made meanwhile reach this transport
        self.last_frame = time.monotonic()
        self._policy.connected(self.last_frame)
        if self._paused:
            transport.underlying_transport.pause_reading()
        self._on_event(self, "connected")

    async def _wait_for_attempt_slot(self) -> None:
        while (delay := self._limiter.delay(time.monotonic())) > 0:
            if await self._sleep_or_stop(delay):
                return
        self._limiter.record(time.monotonic())

    async def _sleep_or_stop(self, delay: float) -> bool:
        """Sleep ``delay`` seconds unless stopped first; True when stopped."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        except TimeoutError:
            return False
        return True

    async def _supervise(self, transport: WSTransport) -> None:
        """Return when ``transport`` is gone (picows drops it when our ping goes unanswered);
        replace it at its lifetime's end or on ``serverShutdown``."""
        opened = time.monotonic()
        tick = min(1.0, self.settings.ping_idle_s / 4)
        retry_at = 0.0  # a failed rollover is tried again from then on
        while not self._stopping.is_set():
            waits: set[asyncio.Future[object]] = {
                asyncio.ensure_future(transport.wait_disconnected())}
            if not self._rollover.is_set():  # once set, it is acted on at the next tick
                waits.add(asyncio.ensure_future(self._rollover.wait()))
            await asyncio.wait(waits, timeout=tick, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()
            if transport.is_disconnected:
                return
            now = time.monotonic()
            due = self._rollover.is_set() or now - opened > self.settings.lifetime_s
            if due and now >= retry_at:
                replacement = await self._replace(transport)
                if replacement is None:
                    return
                if replacement is transport:  # failed: keep the flag, back off, try again
                    retry_at = time.monotonic() + self._policy.next_delay(self._refusal)
                else:
                    self._rollover.clear()
                    transport, opened = replacement, time.monotonic()

    async def _replace(self, old: WSTransport) -> WSTransport | None:
        """Open a new connection, wait for its first data, then close ``old``."""
        new: WSTransport | None = None
        try:
            await self._wait_for_attempt_slot()
            new, listener = await self._open()
            await asyncio.wait_for(listener.first_data.wait(), self.settings.first_data_timeout_s)
        except Exception as exc:  # keep the old connection; the supervisor tries again
            failure = translate(exc, self.url)
            log.warning("rollover of connection #%d failed: %s", self.index, failure)
            self._refusal = getattr(failure, "retry_after", None)
            if new is not None:
                new.disconnect()
            return old if not old.is_disconnected else None
        if self._stopping.is_set():
            new.disconnect()
            return None
        self.rollovers += 1
        self._adopt(new, listener)
        old.send_close(picows.WSCloseCode.OK)
        old.disconnect()
        self._controls = {k: v for k, v in self._controls.items() if v[1] is listener}
        self._on_event(self, "rolled_over")
        return new


def translate(exc: BaseException, url: str) -> Exception:
    """A connection failure as one of `binance_streamer.errors`: an upgrade answered with an HTTP
    error status becomes `HandshakeRefused` (with Retry-After on 429/418), a socket error or
    timeout `Unreachable`; anything else is returned as it is."""
    if isinstance(exc, HandshakeRefused | Unreachable):
        return exc
    head = getattr(exc, "raw_header", None)
    if isinstance(head, bytes) and head.startswith(b"HTTP/"):
        status_line, *lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(None, 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        header = next((v for n, _, v in (ln.partition(":") for ln in lines)
                       if n.strip().lower() == "retry-after"), None)
        wait = retry_after_s(status, header) if status in (418, 429) else None
        return HandshakeRefused(url, status, parts[2] if len(parts) > 2 else "", wait)
    if isinstance(exc, TimeoutError):
        return Unreachable(url, "no answer within the handshake timeout")
    if isinstance(exc, OSError):
        return Unreachable(url, exc.strerror or str(exc) or type(exc).__name__)
    if isinstance(exc, picows.WSError):
        return Unreachable(url, str(exc))
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
