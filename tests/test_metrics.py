"""The recording's state model, its Prometheus metrics and its health check, against the local
exchange, scraped by a real HTTP client and parsed by prometheus-client's own parser."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from binance_streamer.core.backoff import ReconnectPolicy, full_jitter
from binance_streamer.core.lag import LagHistogram
from binance_streamer.exchange import LocalExchange
from binance_streamer.io.websocket import ConnectionSettings
from binance_streamer.metrics import LAG_BUCKETS_S, MetricsServer, histogram_buckets
from binance_streamer.monitor import (
    ConnectionState,
    DatabaseSize,
    GapState,
    KindState,
    Monitor,
    RecordingState,
    WriterState,
    health,
    sqlite_size,
)
from binance_streamer.recorder import Recorder, RecorderConfig
from binance_streamer.supervisor import RecorderFleet
from tests.helpers import TIMEOUT

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def quick_reconnects() -> ReconnectPolicy:
    """Module level (a child process unpickles it): reconnect within ~0.1 s."""
    return ReconnectPolicy(delays=lambda: full_jitter(0.01, 0.1))


def config(ex: LocalExchange, db: Path, **kw: Any) -> RecorderConfig:
    settings = ConnectionSettings(ping_idle_s=0.5, pong_timeout_s=0.5, policy=quick_reconnects)
    return RecorderConfig(**{"symbols": SYMBOLS, "streams": ["aggTrade", "ticker"],
                             "database": db, "ws_url": ex.ws_url, "rest_url": ex.rest_url,
                             "connection": settings, **kw})


@asynccontextmanager
async def recording(recorder: Recorder | RecorderFleet, stale_after_s: float = 60.0
                    ) -> AsyncIterator[tuple[MetricsServer, asyncio.Task[Any]]]:
    """``recorder`` running with a metrics server on a free port."""
    async with MetricsServer(Monitor(recorder), 0, "127.0.0.1", stale_after_s) as server:
        task = asyncio.create_task(recorder.run())
        try:
            yield server, task
        finally:
            recorder.stop()
            await asyncio.wait_for(task, TIMEOUT)


async def scrape(server: MetricsServer) -> Samples:
    """Every sample of /metrics, by name and labels."""
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def healthz(server: MetricsServer) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{server.port}/healthz") as resp:
        return resp.status, await resp.json()


async def health_turns(server: MetricsServer, status: int) -> dict[str, Any]:
    """Ask /healthz until it answers ``status`` (time passing is the condition: the endpoint is
    polled); its body."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            code, body = await healthz(server)
            if code == status:
                return body
            await asyncio.sleep(0.1)


async def test_metrics_match_the_recorder_stats(db_path: Path) -> None:
    """After the recorder stopped, every counter scraped equals the recorder's own figure."""
    async with LocalExchange(synthetic=SYMBOLS, rate=50) as ex:
        recorder = Recorder(config(ex, db_path))
        async with recording(recorder) as (server, task):
            await recorder.wait_until(lambda s: s.total_stored >= 200, TIMEOUT)
            running = await scrape(server)
            recorder.stop()
            await asyncio.wait_for(task, TIMEOUT)
            stopped = await scrape(server)
    stats = recorder.stats
    assert running[("binance_streamer_connections_open", ())] == 1
    assert stopped[("binance_streamer_connections_open", ())] == 0
    for kind, n in stats.messages.items():
        assert stopped[("binance_streamer_messages_total", (("stream_kind", kind),))] == n
    for table, n in stats.stored.items():
        assert stopped[("binance_streamer_rows_stored_total", (("table", table),))] == n
    assert stopped[("binance_streamer_gaps_total", ())] == stats.gaps
    assert stopped[("binance_streamer_gaps_filled_total", ())] == stats.gaps_filled
    assert stopped[("binance_streamer_batches_total", ())] == stats.batches
    assert stopped[("binance_streamer_writer_queue_batches", ())] == 0
    assert stopped[("binance_streamer_writer_busy_retries_total", ())] \
        == recorder.writer_busy_retries
    # Read at most every 5 s (the file and its WAL then): a real size, not a placeholder.
    assert 4096 <= running[("binance_streamer_database_size_bytes", ())] \
        <= 2 * (sqlite_size(str(db_path)) or 0) + 4_000_000
    assert stopped[("binance_streamer_rest_weight_limit", ())] == 6000
    assert stopped[("binance_streamer_rest_weight_used", ())] > 0  # exchangeInfo was read
    # The lag histogram counts every timed message once; commit latency every batch.
    assert stopped[("binance_streamer_lag_seconds_count", (("stream_kind", "aggTrade"),))] \
        == stats.messages["aggTrade"]
    assert stopped[("binance_streamer_lag_seconds_bucket",
                    (("le", "+Inf"), ("stream_kind", "ticker")))] == stats.messages["ticker"]
    assert stopped[("binance_streamer_commit_latency_seconds_count", ())] == stats.batches


async def test_healthz_fails_when_a_connection_stays_down(db_path: Path) -> None:
    """/healthz answers 200 while data flows, then 503 naming the connection once the exchange
    has dropped it and refused it back for longer than the bound, then 200 again."""
    async with LocalExchange(synthetic=SYMBOLS, rate=50) as ex:
        recorder = Recorder(config(ex, db_path))
        async with recording(recorder, stale_after_s=0.5) as (server, _):
            await recorder.wait_until(lambda s: s.total_stored >= 20, TIMEOUT)
            assert await healthz(server) == (200, {"status": "ok"})
            ex.faults.refuse_connections(TIMEOUT)
            ex.faults.drop_now()
            body = await health_turns(server, 503)
            ex.faults.refuse_connections(0)
            before = recorder.stats.total_messages
            await recorder.wait_until(lambda s: s.total_messages > before, TIMEOUT)
            assert await healthz(server) == (200, {"status": "ok"})
            scraped = await scrape(server)
    assert body["status"] == "unhealthy", body
    assert body["reasons"][0].startswith("connection #0 down for "), body
    assert scraped[("binance_streamer_reconnects_total", ())] >= 1


async def test_healthz_fails_when_an_open_connection_goes_silent(db_path: Path) -> None:
    """A connection kept open but sending nothing (a stalled exchange) fails the check too."""
    async with LocalExchange(synthetic=SYMBOLS, rate=50) as ex:
        recorder = Recorder(config(ex, db_path, connection=ConnectionSettings(
            ping_idle_s=30, pong_timeout_s=30)))
        async with recording(recorder, stale_after_s=0.5) as (server, _):
            await recorder.wait_until(lambda s: s.total_stored >= 20, TIMEOUT)
            ex.faults.stall(TIMEOUT)
            body = await health_turns(server, 503)
    assert body["reasons"][0].startswith("connection #0 silent for "), body


async def test_the_model_of_a_fleet_names_every_connection_and_stream(db_path: Path) -> None:
    """With two processes the model lists both shards' connections with their streams, and
    the kinds' counts add up to the messages."""
    # Split 3/3 between two shards (as in test_supervisor).
    symbols = ["BTCUSDT", "SOLUSDT", "ADAUSDT"]
    async with LocalExchange(synthetic=symbols, rate=50) as ex:
        fleet = RecorderFleet(config(ex, db_path, symbols=symbols,
                                     streams=["aggTrade", "trade"]), processes=2)
        async with recording(fleet) as (server, _):
            await fleet.wait_until(lambda s: s.total_stored >= 100 and s.gaps == s.gaps_filled
                                   and len(fleet.connections) == 2
                                   and all(c.is_open for c in fleet.connections), TIMEOUT)
            state = Monitor(fleet).sample()
            scraped = await scrape(server)
    assert [c.index for c in state.connections] == [0, 1]
    assert sum(c.streams for c in state.connections) == 6
    assert all(c.state == "open" and c.last_message_age_s is not None
               for c in state.connections)
    assert sum(k.messages for k in state.kinds) == state.messages > 0
    assert scraped[("binance_streamer_connections", ())] == 2


def test_histogram_buckets_are_cumulative_and_count_every_lag() -> None:
    """Lags land in the first bound at or above their bucket's top; +Inf holds them all."""
    hist = LagHistogram()
    for lag_ms in (0, 3, 9, 40, 400, 120_000):
        hist.add(lag_ms)
    buckets, total = histogram_buckets(hist)
    counts = dict(buckets)
    assert [le for le, _ in buckets] == [*map(str, LAG_BUCKETS_S), "+Inf"]
    assert counts["0.005"] == 2 and counts["0.01"] == 3 and counts["0.05"] == 4
    assert counts["0.5"] == 5 and counts["60.0"] == 5 and counts["+Inf"] == 6
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets))
    assert total >= 120.0


def state_with(connections: list[ConnectionState], kinds: list[KindState] | None = None
               ) -> RecordingState:
    return RecordingState(
        uptime_s=10, window_s=5, connections=tuple(connections), kinds=tuple(kinds or ()),
        writer=WriterState(0, 0, 0, 0, 0, {}, 0, 0, 0, None), gaps=GapState(0, 0, 0, 0, 0, 0),
        rest=None, messages=0, lag_run={}, commit_run=LagHistogram())


def test_health_names_each_connection_down_or_silent_too_long() -> None:
    """Down or silent past the bound fails; a brief reconnect or a fresh message does not."""
    ok = ConnectionState(0, "open", 5, 10.0, 100, 0, 0.2, None)
    brief = ConnectionState(1, "down", 5, 0.0, 100, 1, 0.3, 2.0)
    down = ConnectionState(2, "down", 5, 0.0, 100, 1, 70.0, 61.0)
    silent = ConnectionState(3, "open", 5, 0.0, 100, 0, 75.0, None)
    never = ConnectionState(4, "connecting", 5, 0.0, 0, 0, None, 90.0)
    flowing = KindState("trade", 10, 1.0, 1, 2, 10, 3.0)
    quiet = KindState("depth", 10, 0.0, 1, 2, 0, 65.0)
    assert health(state_with([ok, brief], [flowing]), 60).ok
    verdict = health(state_with([ok, down, silent, never], [flowing, quiet]), 60)
    assert not verdict.ok
    assert verdict.reasons == ("connection #2 down for 61s", "connection #3 silent for 75s",
                               "connection #4 connecting for 90s",
                               "stream kind depth silent for 65s")


def test_the_postgres_size_is_read_off_the_loop(pg_url: str) -> None:
    """PostgreSQL's size comes from pg_database_size in a thread, and another read waits for
    ``every_s``."""
    size = DatabaseSize(pg_url, every_s=3600)
    size.get(0.0)  # starts the read (None until it ends)
    size.join(TIMEOUT)
    first = size.get(1.0)
    assert first is not None and first > 1_000_000  # an empty database is several MB
    assert size.get(2.0) == first
