"""The supervised WebSocket connection against the local exchange."""

from __future__ import annotations

import asyncio

import pytest

from binance_streamer.core.backoff import ReconnectPolicy
from binance_streamer.core.planning import AttemptLimiter, combined_url
from binance_streamer.errors import HandshakeRefused, Unreachable
from binance_streamer.exchange import Limits, LocalExchange
from binance_streamer.io.websocket import ConnectionSettings, StreamConnection, translate
from tests.helpers import TIMEOUT


class RecordingPolicy(ReconnectPolicy):
    """A reconnect policy that remembers each Retry-After it was given."""

    def __init__(self) -> None:
        super().__init__(delays=lambda: iter(lambda: 0.0, None))
        self.retry_afters: list[float | None] = []

    def next_delay(self, retry_after: float | None = None) -> float:
        self.retry_afters.append(retry_after)
        return super().next_delay(retry_after)


async def test_a_refused_handshake_honours_retry_after() -> None:
    """Over the connection-attempt limit the server answers 429 Retry-After: 60; the next
    delay is at least that."""
    policy = RecordingPolicy()
    failed = asyncio.Event()
    async with LocalExchange(synthetic=["BTCUSDT"], limits=Limits(connect_attempts=0)) as ex:
        conn = StreamConnection(
            0, combined_url(ex.ws_url, ["btcusdt@trade"]), lambda *a: None, AttemptLimiter(),
            ConnectionSettings(policy=lambda: policy),
            on_event=lambda c, e: failed.set() if e == "connect_failed" else None)
        task = asyncio.create_task(conn.run())
        await asyncio.wait_for(failed.wait(), TIMEOUT)
        conn.stop()
        await asyncio.wait_for(task, TIMEOUT)
    assert policy.retry_afters[0] == 60.0
    assert "429" in conn.last_error


async def test_frames_arrive_with_receive_times_in_order() -> None:
    """Each text frame is handed over once, in order, with an integer ns receive time."""
    got: list[tuple[int, int, bytes]] = []
    enough = asyncio.Event()
    def on_frame(index: int, ns: int, payload: bytes) -> None:
        got.append((index, ns, payload))
        if len(got) >= 20:
            enough.set()
    async with LocalExchange(synthetic=["BTCUSDT"], rate=200) as ex:
        conn = StreamConnection(3, combined_url(ex.ws_url, ["btcusdt@aggTrade"]), on_frame,
                                AttemptLimiter())
        task = asyncio.create_task(conn.run())
        await asyncio.wait_for(enough.wait(), TIMEOUT)
        conn.stop()
        await asyncio.wait_for(task, TIMEOUT)
    assert {g[0] for g in got} == {3}
    times = [g[1] for g in got]
    assert times == sorted(times) and all(isinstance(t, int) and t > 10**18 for t in times)
    assert all(g[2].startswith(b'{"stream":"btcusdt@aggTrade"') for g in got)
    assert "frames=" in repr(conn)


class Refused(Exception):
    """What picows raises for an upgrade answered with an HTTP error: the raw head attached."""

    def __init__(self, head: bytes) -> None:
        self.raw_header = head


def test_refused_handshakes_become_handshake_refused_with_retry_after() -> None:
    """429/418 heads give their Retry-After (418 without one: 2 minutes); others give None;
    the status and reason are kept."""
    url = "ws://x/stream"
    limited = translate(Refused(b"HTTP/1.1 429 Too Many\r\nRetry-After: 7"), url)
    assert isinstance(limited, HandshakeRefused)
    assert (limited.status, limited.reason, limited.retry_after) == (429, "Too Many", 7.0)
    banned = translate(Refused(b"HTTP/1.1 418 I'm a teapot\r\nX: y"), url)
    assert isinstance(banned, HandshakeRefused) and banned.retry_after == 120.0
    busy = translate(Refused(b"HTTP/1.1 503 Unavailable\r\nRetry-After: 7"), url)
    assert isinstance(busy, HandshakeRefused) and busy.retry_after is None
    assert str(translate(Refused(b"HTTP/1.1 404 Not Found\r\n"), url)) == (
        "ws://x/stream refused the WebSocket connection: HTTP 404 Not Found")


def test_socket_errors_and_timeouts_become_unreachable() -> None:
    """A refused socket or a handshake timeout is Unreachable, naming the URL, never HTTP 0."""
    refused = translate(ConnectionRefusedError(111, "Connection refused"), "ws://x")
    assert isinstance(refused, Unreachable) and str(refused) == (
        "cannot reach ws://x: Connection refused")
    slow = translate(TimeoutError(), "ws://x")
    assert isinstance(slow, Unreachable) and "timeout" in str(slow)
    other = ValueError("odd")
    assert translate(other, "ws://x") is other


async def test_a_handshake_refused_for_good_ends_run_without_retrying() -> None:
    """An upgrade answered 404 (a wrong path) raises HandshakeRefused from run() at once."""
    policy = RecordingPolicy()
    async with LocalExchange(synthetic=["BTCUSDT"]) as ex:
        conn = StreamConnection(
            0, f"{ex.ws_url}/no/such/path", lambda *a: None, AttemptLimiter(),
            ConnectionSettings(policy=lambda: policy))
        with pytest.raises(HandshakeRefused, match="HTTP 404"):
            await asyncio.wait_for(conn.run(), TIMEOUT)
    assert policy.retry_afters == [] and conn.connects == 1


async def test_a_quiet_connection_stays_up_while_it_answers_pings() -> None:
    """A connection whose stream never sends (a well-formed unknown symbol) is kept: our pings
    are answered, so no reconnect happens however long the silence."""
    async with LocalExchange(synthetic=["BTCUSDT"]) as ex:
        conn = StreamConnection(
            0, combined_url(ex.ws_url, ["zzzusdt@trade"]), lambda *a: None, AttemptLimiter(),
            ConnectionSettings(ping_idle_s=0.2, pong_timeout_s=0.2))
        task = asyncio.create_task(conn.run())
        await asyncio.wait_for(ex.wait_subscribed(1), TIMEOUT)
        await asyncio.sleep(1.5)  # many ping intervals: the silence itself is what is tested
        conn.stop()
        await asyncio.wait_for(task, TIMEOUT)
    assert conn.reconnects == 0 and conn.connects == 1


async def test_wss_connections_use_tls_with_the_bounded_socket() -> None:
    """A wss:// URL gets TLS on the socket created with the small receive buffer."""
    import ssl

    import trustme
    import websockets

    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    frame = b'{"stream":"btcusdt@trade","data":{}}'

    async def handler(ws: websockets.ServerConnection) -> None:
        await ws.send(frame.decode())
        await ws.wait_closed()

    got: asyncio.Queue[bytes] = asyncio.Queue()
    async with websockets.serve(handler, "localhost", 0, ssl=server_ctx) as server:
        port = server.sockets[0].getsockname()[1]
        conn = StreamConnection(0, f"wss://localhost:{port}/stream?streams=btcusdt@trade",
                                lambda i, ns, payload: got.put_nowait(payload), AttemptLimiter(),
                                ConnectionSettings(ssl_context=client_ctx))
        task = asyncio.create_task(conn.run())
        assert await asyncio.wait_for(got.get(), TIMEOUT) == frame
        conn.stop()
        await asyncio.wait_for(task, TIMEOUT)


async def test_a_close_frame_from_the_server_is_answered_and_reconnected() -> None:
    """A server's close frame (1001, going away) is recorded with its code, answered, and the
    connection comes back by itself."""
    connected = asyncio.Event()
    events: list[str] = []

    def on_event(c: StreamConnection, event: str) -> None:
        events.append(event)
        if event == "connected":
            connected.set()

    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        conn = StreamConnection(
            0, combined_url(ex.ws_url, ["btcusdt@trade"]), lambda *a: None, AttemptLimiter(),
            ConnectionSettings(policy=lambda: RecordingPolicy()), on_event=on_event)
        task = asyncio.create_task(conn.run())
        await asyncio.wait_for(connected.wait(), TIMEOUT)
        connected.clear()
        ex.faults.drop_now(code=1001, reason="going away")
        await asyncio.wait_for(connected.wait(), TIMEOUT)
        conn.stop()
        await asyncio.wait_for(task, TIMEOUT)
    assert conn.close_codes == [1001]
    assert events == ["connected", "disconnected", "connected"] and conn.reconnects == 1


async def test_a_connection_paused_by_us_is_not_taken_for_dead() -> None:
    """While we pause reading (back-pressure) no pong can be read; the liveness ping counts the
    connection alive instead of dropping it, and reading resumes on the same connection."""
    got: list[bytes] = []
    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        conn = StreamConnection(
            0, combined_url(ex.ws_url, ["btcusdt@trade"]), lambda c, t, p: got.append(p),
            AttemptLimiter(), ConnectionSettings(ping_idle_s=0.2, pong_timeout_s=0.2))
        task = asyncio.create_task(conn.run())
        await asyncio.wait_for(ex.wait_subscribed(1), TIMEOUT)
        conn.pause_reading()
        assert conn.reading_paused
        await asyncio.sleep(1.5)  # several ping rounds: the pause itself is what is tested
        before = len(got)
        conn.resume_reading()
        async with asyncio.timeout(TIMEOUT):
            while len(got) <= before:  # noqa: ASYNC110 - frames arrive through a callback
                await asyncio.sleep(0.01)
        conn.stop()
        await asyncio.wait_for(task, TIMEOUT)
    assert conn.reconnects == 0 and conn.connects == 1
