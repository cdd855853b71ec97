"""Fault injection for tests and the command line: ``ex.faults``.

Connection faults apply to the given connection, or to every open connection, or - when none is
open - to the next connection that opens. REST faults apply to the next ``times`` REST requests.

- ``drop_after(n, code=None)``: close after ``n`` more data messages (abruptly, or with ``code``)
- ``drop_now(code=None, reason="")``: close now; ``drop_in(seconds, code=None)``: close later
- ``stall(seconds)``: keep the socket open and send nothing (data is queued and sent later)
- ``skip(n, stream=None)``: do not send the next ``n`` events (of ``stream``): an id gap
- ``malformed()`` / ``truncated()``: the next data frame is cut JSON / a cut WebSocket frame
  followed by a dropped TCP connection
- ``refuse_connections(seconds)``: drop every new connection attempt for a while
- ``rest_error(status, times=1, retry_after=None)``: 429/418/5xx answers
- ``rest_slow(seconds, times=1)``: delay REST answers
- ``server_shutdown(close_after_s=None)``: send ``serverShutdown`` to every connection

From the command line, a fault script item is ``SECONDS:NAME[=ARG,...]`` (seconds after the
server started; numeric arguments), e.g. ``10:stall=5``, ``30:drop_now=1001``, ``5:skip=3``,
``60:server_shutdown=1``, ``20:rest_error=429,3``; see `parse_script`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from binance_streamer.exchange.frames import Event

if TYPE_CHECKING:
    from binance_streamer.exchange.connection import Connection
    from binance_streamer.exchange.hub import Hub

__all__ = ["SCRIPTABLE", "FaultStep", "Faults", "RestFault", "parse_script"]

SCRIPTABLE = ("drop_after", "drop_now", "drop_in", "stall", "skip", "malformed", "truncated",
              "refuse_connections", "rest_error", "rest_slow", "server_shutdown")


@dataclass(frozen=True, slots=True)
class FaultStep:
    """One scripted fault: call ``Faults.<name>(*args)`` ``at_s`` seconds after start."""

    at_s: float
    name: str
    args: tuple[float, ...]


def parse_script(spec: str) -> FaultStep:
    """Parse ``SECONDS:NAME[=ARG,...]``; raises ValueError with a readable message."""
    when, sep, rest = spec.partition(":")
    name, _, arg_text = rest.partition("=")
    if not sep or name not in SCRIPTABLE:
        raise ValueError(f"bad fault {spec!r}: expected SECONDS:NAME[=ARG,...] with NAME one of "
                         + ", ".join(SCRIPTABLE))
    try:
        at_s = float(when)
        args = tuple(float(a) if "." in a else int(a) for a in arg_text.split(",") if a)
    except ValueError:
        raise ValueError(f"bad fault {spec!r}: time and arguments must be numbers") from None
    return FaultStep(at_s, name, args)

_Action = Callable[["Connection"], None]


@dataclass(slots=True)
class RestFault:
    """One armed REST fault: an error status or a delay."""

    status: int | None
    delay_s: float
    retry_after: int | None
    times: int


class Faults:
    """Scriptable faults; see the module docstring for the catalogue."""

    def __init__(self, hub: Hub, clock_ms: Callable[[], int]) -> None:
        self._hub = hub
        self._clock_ms = clock_ms
        self._next: list[_Action] = []
        self._refuse_until = 0.0
        self.rest: list[RestFault] = []

    def _apply(self, action: _Action, conn: Connection | None) -> None:
        targets = [conn] if conn is not None else list(self._hub.connections)
        if not targets:
            self._next.append(action)
        for target in targets:
            action(target)

    def attach(self, conn: Connection) -> None:
        """Apply faults armed for "the next connection" to a new connection."""
        actions, self._next = self._next, []
        for action in actions:
            action(conn)

    def drop_after(self, n: int, code: int | None = None, conn: Connection | None = None
                   ) -> None:
        """Close after ``n`` more data messages: abruptly (None) or with close ``code``."""
        def act(c: Connection) -> None:
            c.drop_at = c.sent + n
            c.drop_code = code
        self._apply(act, conn)

    def drop_now(self, code: int | None = None, reason: str = "",
                 conn: Connection | None = None) -> None:
        """Close now: abruptly (None) or with close ``code`` and ``reason``."""
        self._apply(lambda c: c.request_close(code, reason), conn)

    def drop_in(self, seconds: float, code: int | None = None, conn: Connection | None = None
                ) -> None:
        """Close ``seconds`` from now: abruptly (None) or with close ``code``."""
        def act(c: Connection) -> None:
            asyncio.get_running_loop().call_later(seconds, c.request_close, code, "")
        self._apply(act, conn)

    def stall(self, seconds: float, conn: Connection | None = None) -> None:
        """Send nothing for ``seconds`` while keeping the socket open."""
        self._apply(lambda c: c.stall(seconds), conn)

    def skip(self, n: int, stream: str | None = None, conn: Connection | None = None) -> None:
        """Withhold the next ``n`` events (of ``stream``, or of any stream)."""
        def act(c: Connection) -> None:
            c.skip[stream] = c.skip.get(stream, 0) + n
            c.faulty = True
        self._apply(act, conn)

    def malformed(self, conn: Connection | None = None) -> None:
        """Replace the next data frame by a text frame holding half of its JSON."""
        self._corrupt("malformed", conn)

    def truncated(self, conn: Connection | None = None) -> None:
        """Send only half of the next data frame, then drop the TCP connection."""
        self._corrupt("truncated", conn)

    def _corrupt(self, kind: str, conn: Connection | None) -> None:
        def act(c: Connection) -> None:
            c.corrupt_next = kind
            c.faulty = True
        self._apply(act, conn)

    def refuse_connections(self, seconds: float) -> None:
        """Drop every WebSocket connection attempt for ``seconds``."""
        self._refuse_until = time.monotonic() + seconds

    def refusing(self) -> bool:
        """True while connection attempts are refused."""
        return time.monotonic() < self._refuse_until

    def rest_error(self, status: int, times: int = 1, retry_after: int | None = None) -> None:
        """Answer the next ``times`` REST requests with ``status`` (429, 418, 500, 503 ...)."""
        self.rest.append(RestFault(status, 0.0, retry_after, times))

    def rest_slow(self, seconds: float, times: int = 1) -> None:
        """Delay the next ``times`` REST answers by ``seconds``."""
        self.rest.append(RestFault(None, seconds, None, times))

    def take_rest(self) -> RestFault | None:
        """The REST fault for the request being served, if any (consumes one use)."""
        if not self.rest:
            return None
        fault = self.rest[0]
        fault.times -= 1
        if fault.times <= 0:
            self.rest.pop(0)
        return fault

    def server_shutdown(self, close_after_s: float | None = None) -> None:
        """Send ``serverShutdown`` to every open connection (web-socket-streams.md); with
        ``close_after_s`` also close them (1001) after that many seconds."""
        event = Event("!serverShutdown", {"e": "serverShutdown", "E": self._clock_ms()})
        self._hub.broadcast(event)
        if close_after_s is not None:
            conns = list(self._hub.connections)

            def close_all() -> None:
                for conn in conns:
                    conn.request_close(1001, "Server shutdown")
            asyncio.get_running_loop().call_later(close_after_s, close_all)

    async def run_script(self, steps: list[FaultStep]) -> None:
        """Apply scripted faults at their times (seconds from now)."""
        start = asyncio.get_running_loop().time()
        for step in sorted(steps, key=lambda s: s.at_s):
            await asyncio.sleep(max(0.0, start + step.at_s - asyncio.get_running_loop().time()))
            getattr(self, step.name)(*step.args)

    def __repr__(self) -> str:
        return (f"<Faults next={len(self._next)} rest={len(self.rest)} "
                f"refusing={self.refusing()}>")
