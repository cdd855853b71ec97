"""What ``record`` shows while it runs: the live dashboard in a pseudo-terminal, the JSON lines
for services, ``--quiet``, and the metrics port, each from the real command in a subprocess
against the local exchange."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
import re
import signal
import struct
import sys
import termios
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from binance_streamer.cli.record_display import dashboard, status_line, worst_first
from binance_streamer.core.lag import LagHistogram
from binance_streamer.exchange import LocalExchange
from binance_streamer.monitor import (
    ConnectionState,
    GapState,
    KindState,
    RecordingState,
    RestState,
    WriterState,
)
from tests.helpers import TIMEOUT

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def record_args(ex: LocalExchange, db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "binance_streamer.cli", "record", *SYMBOLS, "--streams",
            "ticker,aggTrade", "--db", str(db), "--ws-url", ex.ws_url, "--rest-url",
            ex.rest_url, *extra]


class Screen:
    """What a process wrote to a pseudo-terminal of 80 x 24, read as it arrives."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.raw = b""
        self._grew = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # the other end closed
            chunk = b""
        if not chunk:
            asyncio.get_running_loop().remove_reader(self.master)
        self.raw += chunk
        self._grew.set()

    @property
    def text(self) -> str:
        """The output without escape sequences, a carriage return as a line break."""
        return ANSI.sub("", self.raw.decode("utf-8", "replace")).replace("\r", "\n")

    async def wait_for(self, *words: str) -> str:
        """Wait until the screen has shown every one of ``words``; the text so far."""
        async with asyncio.timeout(TIMEOUT):
            while not all(w in self.text for w in words):
                self._grew.clear()
                await self._grew.wait()
        return self.text

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


async def test_the_dashboard_draws_in_an_80_column_terminal(db_path: Path) -> None:
    """On a terminal `record` draws its dashboard: connections, stream kinds with msg/s and lag,
    the writer, gaps and REST, no line wider than the terminal; SIGTERM still stops cleanly
    with the summary."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    env.pop("NO_COLOR", None)
    async with LocalExchange(synthetic=SYMBOLS, rate=20) as ex:
        proc = await asyncio.create_subprocess_exec(
            *record_args(ex, db_path), stdin=slave, stderr=slave,
            stdout=asyncio.subprocess.PIPE, env=env)
        os.close(slave)
        screen = Screen(master)
        try:
            text = await screen.wait_for("stream kinds", "aggTrade", "writer  queue",
                                         "gaps    open", "rest    REST", "connections 1/1 open")
            assert "\x1b[" in screen.raw.decode("utf-8", "replace")  # drawn, not printed
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        finally:
            screen.close()
    assert proc.returncode == 0
    assert "Recorded into" in out.decode() and "agg_trade" in out.decode()
    lines = text.split("\n")
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    row = next(line for line in lines if line.lstrip().startswith("aggTrade "))
    assert re.search(r"aggTrade\s+\d+\s+[\d,]+\s+\d+ms\s+\d+ms", row), row


async def test_json_log_format_prints_one_object_per_line(db_path: Path) -> None:
    """--log-format json: every stderr line is a JSON object, status objects carry the model
    (connections, kinds, writer, gaps, REST), and a final one follows the stop."""
    async with LocalExchange(synthetic=SYMBOLS, rate=20) as ex:
        proc = await asyncio.create_subprocess_exec(
            *record_args(ex, db_path, "--log-format", "json", "--status-every", "0.2"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        lines: list[dict[str, object]] = []
        async with asyncio.timeout(TIMEOUT):
            while not any(e["event"] == "status" and e["messages"] for e in lines):
                lines.append(json.loads(await proc.stderr.readline()))
        proc.send_signal(signal.SIGTERM)
        out, rest = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0, rest
    lines += [json.loads(line) for line in rest.decode().splitlines()]
    status = next(e for e in lines if e["event"] == "status" and e["messages"])
    assert set(status) >= {"connections", "kinds", "writer", "gaps", "rest", "uptime_s"}
    assert lines[-1]["event"] == "final" and "Recorded into" in out.decode()
    logs = [e for e in lines if e["event"] == "log"]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in logs)


async def test_quiet_prints_only_the_summary(db_path: Path) -> None:
    """--quiet: nothing on stderr for a run without errors, the summary on stdout; even a gap's
    warning stays unsaid (it is in the summary)."""
    async with LocalExchange(synthetic=SYMBOLS, rate=20) as ex:
        proc = await asyncio.create_subprocess_exec(
            *record_args(ex, db_path, "--quiet", "--status-every", "0.1", "--duration", "2"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0, err
    assert err.decode() == ""
    assert "Recorded into" in out.decode() and "messages received" in out.decode()


async def test_plain_lines_off_a_terminal_keep_their_format(db_path: Path) -> None:
    """Off a terminal the periodic status line keeps its format."""
    async with LocalExchange(synthetic=SYMBOLS, rate=20) as ex:
        proc = await asyncio.create_subprocess_exec(
            *record_args(ex, db_path, "--status-every", "0.2"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        async with asyncio.timeout(TIMEOUT):
            while not (line := (await proc.stderr.readline()).decode()).startswith(
                    "connections 1/1 | aggTrade "):
                pass
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert re.fullmatch(r"connections 1/1 \| aggTrade [\d,]+/s ticker [\d,]+/s( \| lag p99 "
                        r"[\d,]+ms \(\w+\))? \| stored [\d,]+ \| gaps \d+ \(filled \d+\) \| "
                        r"quarantined 0 \| REST .*\n", line), line


async def test_the_metrics_port_serves_prometheus_text(db_path: Path) -> None:
    """--metrics-port 0 picks a free port and says which; /metrics parses and counts messages;
    /healthz answers 200."""
    async with LocalExchange(synthetic=SYMBOLS, rate=20) as ex:
        proc = await asyncio.create_subprocess_exec(
            *record_args(ex, db_path, "--metrics-port", "0"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), TIMEOUT)).decode()
        found = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", line)
        assert found, line
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    async with http.get(found[1] + "/metrics") as resp:
                        families = {f.name: f for f in
                                    text_string_to_metric_families(await resp.text())}
                    counted = {s.labels["stream_kind"]: s.value
                               for s in families["binance_streamer_messages"].samples}
                    # Two tickers per symbol: every stream has sent something (else exit 1).
                    if counted.get("aggTrade") and counted.get("ticker", 0) >= 4:
                        break
                    await asyncio.sleep(0.1)  # polling the endpoint is the condition itself
            async with http.get(found[1] + "/healthz") as resp:
                health = resp.status, await resp.json()
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0, err.decode()
    assert families["binance_streamer_messages"].type == "counter"
    assert families["binance_streamer_lag_seconds"].type == "histogram"
    assert health == (200, {"status": "ok"})


def busy_state(connections: int) -> RecordingState:
    """A recording of ``connections`` connections, #7 down and #3 silent for a while."""
    conns = [ConnectionState(i, "open", 200, 50.0, 1000, 0, 0.1, None)
             for i in range(connections)]
    conns[7] = ConnectionState(7, "down", 200, 0.0, 1000, 4, 30.0, 29.0)
    conns[3] = ConnectionState(3, "open", 200, 0.0, 1000, 1, 12.0, None)
    kinds = tuple(KindState(k, 10_000, 900.0, 12, 250, 900, 0.0)
                  for k in ("aggTrade", "bookTicker", "depth", "trade"))
    return RecordingState(
        uptime_s=3700, window_s=5, connections=tuple(conns), kinds=kinds,
        writer=WriterState(2, 900, 9.5, 40, 1_234_567, {"trade": 1_234_567}, 3_600.0, 3, 0,
                           5_400_000_000),
        gaps=GapState(5, 4, 1, 0, 2, 300),
        rest=RestState(1200, 6000, 1, {"depth": 812}, 0.0, 0,
                       "REST 1,200/6,000 w/min, queue 812 snapshots, 0 gaps"),
        messages=40_000, lag_run={}, commit_run=LagHistogram())


def render(state: RecordingState, width: int, height: int) -> str:
    console = Console(width=width, height=height, force_terminal=True, record=True,
                      file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the console
    console.print(dashboard(state, width, height))
    console.file.close()
    return console.export_text()


def test_hundreds_of_connections_fit_80_columns_worst_first() -> None:
    """With 400 connections an 80 x 24 dashboard lists the down and silent ones first, then
    'N more', and fits the screen."""
    text = render(busy_state(400), 80, 24)
    lines = text.rstrip("\n").split("\n")
    assert len(lines) <= 24 and max(map(len, lines)) <= 80, text
    rows = [line.split() for line in lines if re.match(r"\s*\d+ +(open|down)", line)]
    assert [r[0] for r in rows[:2]] == ["7", "3"], text  # down, then the longest silent
    assert re.search(r"\b\d+ more\b", text) and "5.4 GB" in text and "812 snapshots" in text


def test_a_wide_terminal_sets_the_tables_side_by_side() -> None:
    """At 160 columns connections and kinds share rows; lines stay within the width."""
    text = render(busy_state(10), 160, 40)
    assert any("#" in line and "kind" in line for line in text.split("\n")), text
    assert max(map(len, text.split("\n"))) <= 160


def test_the_worst_connections_come_first() -> None:
    """Down (longest first), then open by silence."""
    conns = busy_state(10).connections
    assert [c.index for c in worst_first(conns)[:3]] == [7, 3, 0]


def test_status_line_hides_the_lag_of_old_replayed_data() -> None:
    """Event times hours old are a replay's, not lateness: the line shows no lag then."""
    state = busy_state(10)
    assert " | lag p99 250ms (aggTrade) | " in status_line(state)
    old = dataclasses.replace(state, kinds=(KindState("trade", 1, 1.0, 10**8, 10**8, 5, 0.0),))
    assert " | lag p99 " not in status_line(old)
