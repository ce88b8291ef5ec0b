"""Prometheus `/metrics` (prometheus-client).

Two kinds of figures:

- From the database, read at scrape time by one query (`ops_metrics`), so they are the
  same whichever replica is scraped and cost the workers nothing: deployments by state,
  the queue, the build step's duration by runtime, webhook deliveries, the reporters'
  outbox. They describe the whole installation: scrape one replica, or aggregate them
  with max(), not sum().
- From this process: its worker's slots and running deployments, its LISTEN connection and
  how often it came back, and prometheus-client's process and Python figures.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from bot.app_keys import WORKER_KEY
from bot.centrifugo.publisher import Publisher
from bot.centrifugo.setup import PUBLISHER_KEY
from bot.runtime import Runtime
from pipeline.db.queries import q
from pipeline.queue.listener import Listener
from pipeline.states import Status

log = structlog.get_logger(__name__)

PREFIX = "click_deploy"
# Upper bounds of the build duration buckets, seconds (BUILD_TIMEOUT_SECONDS is 1800).
BUILD_BUCKETS: tuple[float, ...] = (5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
QUERY_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Snapshot:
    """What the database said at one scrape."""

    by_status: dict[str, int]
    oldest_queued_seconds: float
    queued_runnable: int
    # (runtime, result, bucket index from width_bucket, count, sum of seconds)
    build_seconds: list[tuple[str, str, int, int, float]]
    deliveries: list[tuple[str, str, int]]  # (source, result, count)
    # (target, pending, failing, given up, retries, oldest pending seconds)
    reports: list[tuple[str, int, int, int, int, float]]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def read_snapshot(pool: asyncpg.Pool) -> Snapshot:
    row = await asyncio.wait_for(
        pool.fetchrow(q("ops_metrics"), list(BUILD_BUCKETS)), QUERY_TIMEOUT_SECONDS
    )
    assert row is not None
    return Snapshot(
        by_status={str(k): int(v) for k, v in _json(row["by_status"]).items()},
        oldest_queued_seconds=float(row["oldest_queued_seconds"]),
        queued_runnable=int(row["queued_runnable"]),
        build_seconds=[
            (str(r), str(s), int(b), int(n), float(t))
            for r, s, b, n, t in _json(row["build_seconds"])
        ],
        deliveries=[(str(s), str(r), int(n)) for s, r, n in _json(row["deliveries"])],
        reports=[
            (str(t), int(p), int(f), int(g), int(r), float(o))
            for t, p, f, g, r, o in _json(row["reports"])
        ],
    )


def build_histograms(
    rows: Iterable[tuple[str, str, int, int, float]], bounds: Sequence[float] = BUILD_BUCKETS
) -> HistogramMetricFamily:
    """Cumulative buckets per (runtime, result) from width_bucket counts: index i holds
    values in [bounds[i-1], bounds[i]); index 0 is below bounds[0], len(bounds) above the
    last. Prometheus buckets are `le` (<=): a value exactly on a bound lands one bucket up,
    close enough for durations measured in fractions of a second."""
    family = HistogramMetricFamily(
        f"{PREFIX}_build_duration_seconds",
        "Duration of the build step (BuildKit build and push) of finished attempts, by the "
        "runtime the planner detected and the step's result",
        labels=["runtime", "result"],
    )
    grouped: dict[tuple[str, str], tuple[list[int], float]] = {}
    for runtime, result, bucket, count, total in rows:
        counts, seconds = grouped.get((runtime, result), ([0] * (len(bounds) + 1), 0.0))
        counts[min(max(bucket, 0), len(bounds))] += count
        grouped[(runtime, result)] = (counts, seconds + total)
    for (runtime, result), (counts, seconds) in sorted(grouped.items()):
        cumulative, buckets = 0, []
        for bound, count in zip([*map(floatToGoString, bounds), "+Inf"], counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        family.add_metric([runtime, result], buckets, seconds)
    return family


@dataclass(eq=False)  # hashable by identity: the registry keys collectors
class OpsCollector(Collector):
    """Yields the last snapshot (set by the handler right before rendering, with no await
    in between) and this process's worker figures."""

    listener: Listener | None = None
    worker_slots: int | None = None
    running: Sized | None = None  # the worker's running deployments
    snapshot: Snapshot | None = None
    errors: int = 0
    centrifugo: Publisher | None = None  # when CENTRIFUGO_API_URL is set

    def collect(self) -> Iterable[Metric]:
        yield from self._process_metrics()
        snapshot = self.snapshot
        up = GaugeMetricFamily(
            f"{PREFIX}_database_up", "1 if the database answered this scrape's query"
        )
        up.add_metric([], 1.0 if snapshot is not None else 0.0)
        yield up
        failures = CounterMetricFamily(
            f"{PREFIX}_metrics_query_failures",
            "Scrapes whose database query failed (this process)",
        )
        failures.add_metric([], float(self.errors))
        yield failures
        if snapshot is not None:
            yield from self._database_metrics(snapshot)

    def _process_metrics(self) -> Iterable[Metric]:
        if self.listener is not None:
            reconnects = CounterMetricFamily(
                f"{PREFIX}_listen_reconnects",
                "Times this process's LISTEN connection came back after a loss",
            )
            reconnects.add_metric([], float(self.listener.reconnects))
            yield reconnects
            connected = GaugeMetricFamily(
                f"{PREFIX}_listen_connected", "1 while this process's LISTEN connection is up"
            )
            connected.add_metric([], 1.0 if self.listener.connected.is_set() else 0.0)
            yield connected
        if self.worker_slots is not None:
            slots = GaugeMetricFamily(f"{PREFIX}_worker_slots", "Slots of this process's worker")
            slots.add_metric([], float(self.worker_slots))
            yield slots
        if self.running is not None:
            running = GaugeMetricFamily(
                f"{PREFIX}_worker_running", "Deployments this process's worker runs now"
            )
            running.add_metric([], float(len(self.running)))
            yield running
        if self.centrifugo is not None:
            yield from centrifugo_metrics(self.centrifugo)

    def _database_metrics(self, snapshot: Snapshot) -> Iterable[Metric]:
        states = GaugeMetricFamily(
            f"{PREFIX}_deployments",
            "Deployments by state (all of them, from the database)",
            labels=["state"],
        )
        for status in Status:
            states.add_metric([status.value], float(snapshot.by_status.get(status.value, 0)))
        yield states
        depth = GaugeMetricFamily(
            f"{PREFIX}_queue_depth",
            "Queued deployments: all of them, and those runnable now (not waiting for a "
            "retry's backoff)",
            labels=["kind"],
        )
        depth.add_metric(["all"], float(snapshot.by_status.get(Status.QUEUED.value, 0)))
        depth.add_metric(["runnable"], float(snapshot.queued_runnable))
        yield depth
        oldest = GaugeMetricFamily(
            f"{PREFIX}_queue_oldest_age_seconds",
            "How long the oldest runnable queued deployment has waited to be claimed (0: none)",
        )
        oldest.add_metric([], snapshot.oldest_queued_seconds)
        yield oldest
        yield build_histograms(snapshot.build_seconds)
        deliveries = CounterMetricFamily(
            f"{PREFIX}_webhook_deliveries",
            "Webhook deliveries stored, by source and result (first word of the outcome: "
            "queued, ignored, skipped, …)",
            labels=["source", "result"],
        )
        for source, result, count in sorted(snapshot.deliveries):
            deliveries.add_metric([source, result], float(count))
        yield deliveries
        pending = GaugeMetricFamily(
            f"{PREFIX}_reports_pending", "Reports waiting in the outbox", labels=["target"]
        )
        failing = GaugeMetricFamily(
            f"{PREFIX}_reports_failing",
            "Pending reports whose last attempt failed (they are being retried)",
            labels=["target"],
        )
        oldest_report = GaugeMetricFamily(
            f"{PREFIX}_reports_oldest_due_seconds",
            "How long the oldest due report has waited (0: none)",
            labels=["target"],
        )
        given_up = CounterMetricFamily(
            f"{PREFIX}_report_failures",
            "Reports given up after REPORT_MAX_ATTEMPTS failed attempts",
            labels=["target"],
        )
        retries = CounterMetricFamily(
            f"{PREFIX}_report_retries",
            "Report attempts beyond each report's first, as the outbox records them",
            labels=["target"],
        )
        for target, n_pending, n_failing, n_given_up, n_retries, age in sorted(snapshot.reports):
            pending.add_metric([target], float(n_pending))
            failing.add_metric([target], float(n_failing))
            oldest_report.add_metric([target], age)
            given_up.add_metric([target], float(n_given_up))
            retries.add_metric([target], float(n_retries))
        yield from (pending, failing, oldest_report, given_up, retries)


def centrifugo_metrics(publisher: Publisher) -> Iterable[Metric]:
    """This process's Centrifugo publisher (only the one holding the lock publishes)."""
    stats = publisher.stats
    counters = (
        ("published", "Publications Centrifugo accepted from this process", stats.publications),
        ("published_lines", "Log lines in the publications Centrifugo accepted", stats.lines),
        (
            "dropped",
            "Publications dropped for Centrifugo only (queue full or Centrifugo down); the "
            "lines stay in the database and subscribers are told where to re-read",
            stats.dropped_publications,
        ),
        ("dropped_lines", "Log lines in the dropped publications", stats.dropped_lines),
        ("failed_batches", "Batch requests Centrifugo did not take", stats.failed_batches),
        ("outages", "Times publishing to Centrifugo started dropping", stats.outages),
        ("gap_messages", "Messages telling subscribers where to re-read", stats.gap_messages),
    )
    for name, help_text, value in counters:
        counter = CounterMetricFamily(f"{PREFIX}_centrifugo_{name}", help_text)
        counter.add_metric([], float(value))
        yield counter
    gauges = (
        ("publisher", "1 while this process is the one publishing to Centrifugo", stats.leader),
        ("up", "1 if Centrifugo took this process's last batch", stats.up),
        ("queue", "Publications waiting to be sent to Centrifugo", publisher.queue.qsize()),
    )
    for name, help_text, figure in gauges:
        gauge = GaugeMetricFamily(f"{PREFIX}_centrifugo_{name}", help_text)
        gauge.add_metric([], float(figure))
        yield gauge


RUNTIME_KEY = web.AppKey("ops_metrics_runtime", Runtime)
REGISTRY_KEY = web.AppKey("ops_metrics_registry", CollectorRegistry)
COLLECTOR_KEY = web.AppKey("ops_metrics_collector", OpsCollector)


async def metrics(request: web.Request) -> web.Response:
    runtime: Runtime = request.app[RUNTIME_KEY]
    collector = request.app[COLLECTOR_KEY]
    try:
        snapshot: Snapshot | None = await read_snapshot(runtime.pool)
    except Exception as error:  # the process figures still go out, with database_up 0
        collector.errors += 1
        log.warning("metrics query failed", error=str(error) or type(error).__name__)
        snapshot = None
    collector.snapshot = snapshot  # no await from here to the rendering
    body = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def make_registry(collector: OpsCollector) -> CollectorRegistry:
    """A registry per app (never the global one: tests start many apps in one process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    registry.register(ProcessCollector(registry=None))
    registry.register(PlatformCollector(registry=None))
    return registry


def setup(app: web.Application, runtime: Runtime) -> None:
    """GET /metrics. The worker's figures come from the app's worker when it has one."""
    worker = app.get(WORKER_KEY)
    collector = OpsCollector()
    if worker is not None:
        collector.listener = worker.listener
        collector.worker_slots = worker.slots
        collector.running = worker.running
    collector.centrifugo = app.get(PUBLISHER_KEY)
    app[RUNTIME_KEY] = runtime
    app[COLLECTOR_KEY] = collector
    app[REGISTRY_KEY] = make_registry(collector)
    app.router.add_get("/metrics", metrics)
