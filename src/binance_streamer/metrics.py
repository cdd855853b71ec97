"""Prometheus metrics and a health check of a running recording (``record --metrics-port``).

`MetricsServer` serves, on the recording's event loop (aiohttp):

* ``/metrics``: the Prometheus text format, written by prometheus-client from a custom collector
  (`RecordingCollector`) that samples the `Monitor` at scrape time, so nothing is counted per
  message beyond what the recorder counts anyway;
* ``/healthz``: 200 ``{"status": "ok"}``, or 503 ``{"status": "unhealthy", "reasons": [...]}``
  when a connection has been down or silent longer than ``stale_after_s`` (`health`).

Lag and commit latency are histograms: the recorder already counts every lag in log-linear
buckets (`binance_streamer.core.lag`), so their cumulative counts re-bucketed to fixed ``le``
bounds cost nothing per message, and unlike gauges of p50/p99 they aggregate across processes
and instances and give any quantile over any range (``histogram_quantile``). A lag bucket is
counted at its upper bound, so the quantiles are at most 12.5% high, and ``_sum`` is an upper
bound too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from binance_streamer.core.lag import LagHistogram, bucket_top
from binance_streamer.monitor import Monitor, RecordingState, health

__all__ = ["LAG_BUCKETS_S", "MetricsServer", "RecordingCollector"]

log = logging.getLogger(__name__)
PREFIX = "binance_streamer"
# Upper bounds (seconds) of the lag and commit-latency histograms.
LAG_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def histogram_buckets(hist: LagHistogram) -> tuple[list[tuple[str, float]], float]:
    """``hist`` (ms buckets) as Prometheus cumulative buckets over `LAG_BUCKETS_S` and +Inf,
    each lag counted at its bucket's top; and the sum of those tops in seconds."""
    counts = [0] * (len(LAG_BUCKETS_S) + 1)
    total_s = 0.0
    for index, n in hist.counts.items():
        top_s = bucket_top(index) / 1000
        slot = next((i for i, le in enumerate(LAG_BUCKETS_S) if top_s <= le), len(LAG_BUCKETS_S))
        counts[slot] += n
        total_s += top_s * n
    cumulative, running = [], 0
    for le, n in zip([*map(str, LAG_BUCKETS_S), "+Inf"], counts, strict=True):
        running += n
        cumulative.append((le, float(running)))
    return cumulative, total_s


class RecordingCollector(Collector):
    """Every figure of a `RecordingState`, named by Prometheus conventions (see README)."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        """Sample the recording now and yield its metric families."""
        state = self.monitor.sample()
        yield from _counters(state)
        yield from _gauges(state)
        yield from _histograms(state)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _labelled_counter(name: str, doc: str, label: str, values: Mapping[str, int]
                      ) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _counters(state: RecordingState) -> Iterator[Metric]:
    gaps = state.gaps
    yield _labelled_counter("messages", "Market messages received, by stream kind.",
                            "stream_kind", {k.kind: k.messages for k in state.kinds})
    yield _labelled_counter("rows_stored", "Rows written, by table.", "table",
                            state.writer.stored)
    yield _counter("gaps", "Gaps detected in id-sequenced streams (earlier runs' unfilled "
                   "ones included).", gaps.detected)
    yield _counter("gaps_filled", "Gaps filled over REST (committed).", gaps.filled)
    yield _counter("stale", "Silences of streams without sequence ids.", gaps.stale)
    yield _counter("quarantined", "Frames that could not be decoded, kept aside.",
                   gaps.quarantined)
    yield _counter("rows_backfilled", "Rows fetched over REST to fill gaps.",
                   gaps.rows_backfilled)
    yield _counter("reconnects", "WebSocket reconnects, all connections.", state.reconnects)
    yield _counter("batches", "Batches committed by the writer.", state.writer.batches)
    yield _counter("writer_busy_retries", "Writes retried on a database locked by another "
                   "writer.", state.writer.busy_retries)
    yield _counter("reading_paused", "Times reading was paused for the writer "
                   "(back-pressure).", state.writer.paused)
    if state.rest is not None:
        yield _counter("rest_rate_limited", "REST answers 429/418 (rate limited).",
                       state.rest.rate_limited)


def _gauges(state: RecordingState) -> Iterator[Metric]:
    yield _gauge("connections_open", "WebSocket connections connected now.",
                 state.connections_open)
    yield _gauge("connections", "WebSocket connections planned.", len(state.connections))
    age = GaugeMetricFamily(f"{PREFIX}_connection_last_message_age_seconds",
                            "Seconds since each connection's last message (connections that "
                            "received one).", labels=["connection"])
    for conn in state.connections:
        if conn.last_message_age_s is not None:
            age.add_metric([str(conn.index)], conn.last_message_age_s)
    yield age
    yield _gauge("gaps_open", "Gaps detected and not filled yet.", state.gaps.open)
    yield _gauge("writer_queue_batches", "Batches waiting for the writer thread.",
                 state.writer.queue_batches)
    if state.writer.db_size_bytes is not None:
        yield _gauge("database_size_bytes", "Database size (SQLite file and WAL, or "
                     "pg_database_size).", state.writer.db_size_bytes)
    yield _gauge("uptime_seconds", "Seconds since the recording started.", state.uptime_s)
    rest = state.rest
    if rest is not None:
        yield _gauge("rest_weight_used", "REST weight used this minute (the IP's, as last "
                     "reported).", rest.used_weight)
        yield _gauge("rest_weight_limit", "REST weight allowed per minute.", rest.weight_limit)
        yield _gauge("rest_in_flight", "REST requests in flight.", rest.in_flight)
        queued = GaugeMetricFamily(f"{PREFIX}_rest_queue", "Backfill jobs waiting, by lane.",
                                   labels=["lane"])
        for lane, n in sorted(rest.queued.items()):
            queued.add_metric([lane], n)
        yield queued


def _histograms(state: RecordingState) -> Iterator[Metric]:
    lag = HistogramMetricFamily(
        f"{PREFIX}_lag_seconds", "Receive time minus Binance's event time, by stream kind "
        "(each lag counted at its log-linear bucket's top: at most 12.5% high).",
        labels=["stream_kind"])
    for kind, hist in sorted(state.lag_run.items()):
        buckets, total = histogram_buckets(hist)
        lag.add_metric([kind], buckets, total)
    yield lag
    commit = HistogramMetricFamily(
        f"{PREFIX}_commit_latency_seconds",
        "Receive time of a batch's first message to its commit.")
    buckets, total = histogram_buckets(state.commit_run)
    commit.add_metric([], buckets, total)
    yield commit


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` (0: a free port, see `port`), served by
    the recording's event loop; ``async with MetricsServer(...)`` or `start`/`stop`."""

    def __init__(self, monitor: Monitor, port: int, host: str = "0.0.0.0",
                 stale_after_s: float = 60.0) -> None:
        self.monitor = monitor
        self.host = host
        self.port = port
        self.stale_after_s = stale_after_s
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RecordingCollector(monitor))
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"<MetricsServer {self.host}:{self.port} running={self._runner is not None}>"

    async def start(self) -> None:
        """Listen; `port` is then the port bound."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, _request: web.Request) -> web.Response:
        verdict = health(self.monitor.sample(), self.stale_after_s)
        body = ({"status": "ok"} if verdict.ok
                else {"status": "unhealthy", "reasons": list(verdict.reasons)})
        return web.Response(text=json.dumps(body), status=200 if verdict.ok else 503,
                            content_type="application/json")
