"""Operating click-deploy (bot/ops): /healthz, /readyz and /metrics served by the real app
(make_app with a running worker) against a real PostgreSQL and the real Docker engine."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot.ops import health as ops_health
from bot.runtime import Runtime
from bot.serve import make_app
from pipeline.db.migrate import load_migrations
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import Store
from tests.support.pipelines import ScriptedPipeline
from tests.support.waiting import PATIENCE, wait_for_status

Client = TestClient[web.Request, web.Application]


@dataclass
class Served:
    client: Client
    runtime: Runtime
    worker: Worker


@pytest.fixture
async def serve(
    settings: Settings,
    pool: asyncpg.Pool,
    database_url: str,
    docker_engine: str,
    start_worker: Callable[..., Awaitable[Worker]],
) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    clients: list[Client] = []

    async def start(**overrides: object) -> Served:
        configured = settings.model_copy(update={"docker_host": docker_engine, **overrides})
        runtime = Runtime(configured, database_url, pool, Store(pool), Queue(pool, configured))
        worker = await start_worker(ScriptedPipeline())
        client = TestClient(TestServer(make_app(runtime, worker)))
        await client.start_server()
        clients.append(client)
        return Served(client, runtime, worker)

    yield start
    for client in clients:
        await client.close()


# ------------------------------------------------------------------ /healthz, /readyz


async def test_healthz_is_cheap_and_alive_while_the_database_is_not(
    serve: Callable[..., Awaitable[Served]],
) -> None:
    served = await serve()
    response = await served.client.get("/healthz")
    body = await response.json()
    assert response.status == 200
    assert body["status"] == "ok" and body["listening"] and body["slots"] == 2
    # Liveness does not depend on the database: with the pool closed it still answers 200.
    await served.runtime.pool.close()
    response = await served.client.get("/healthz")
    assert response.status == 200


async def test_readyz_reports_each_check(serve: Callable[..., Awaitable[Served]]) -> None:
    served = await serve()
    response = await served.client.get("/readyz")
    body = await response.json()
    assert response.status == 200, body
    assert body["status"] == "ready" and "not_ready" not in body
    latest = max(m.version for m in load_migrations())
    assert body["checks"]["migrations"] == {"ok": True, "detail": f"current ({latest:04d})"}
    assert body["checks"]["database"]["ok"]
    assert body["checks"]["buildkit"]["detail"].endswith(": OK")


async def test_readyz_names_a_missing_migration(
    serve: Callable[..., Awaitable[Served]], pool: asyncpg.Pool
) -> None:
    served = await serve()
    latest = max(m.version for m in load_migrations())
    await pool.execute("DELETE FROM schema_migrations WHERE version = $1", latest)
    response = await served.client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert body["not_ready"] == ["migrations"]
    assert body["checks"]["migrations"]["detail"] == f"missing {latest:04d}"
    # A database ahead of the code (a newer replica migrated first) is still ready.
    await pool.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, 'x', 'x'), "
        "($2, 'newer', 'x')",
        latest,
        latest + 1,
    )
    body = await (await served.client.get("/readyz")).json()
    assert body["status"] == "ready"
    assert f"ahead: {latest + 1:04d}" in body["checks"]["migrations"]["detail"]


async def test_readyz_503_when_buildkit_is_unreachable(
    serve: Callable[..., Awaitable[Served]], tmp_path: Path
) -> None:
    served = await serve(docker_host=f"unix://{tmp_path}/no-such.sock")
    response = await served.client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert body["not_ready"] == ["buildkit"]
    assert (
        "FileNotFoundError" in body["checks"]["buildkit"]["detail"]
        or "Connector" in (body["checks"]["buildkit"]["detail"])
    )


async def test_readyz_buildkitd_is_a_connect_check(
    serve: Callable[..., Awaitable[Served]],
) -> None:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = listening.getsockname()[1]
    try:
        served = await serve(builder="buildkitd", buildkit_address=f"tcp://127.0.0.1:{port}")
        body = await (await served.client.get("/readyz")).json()
        assert body["checks"]["buildkit"] == {
            "ok": True,
            "detail": f"buildkitd at tcp://127.0.0.1:{port}: accepts connections",
        }
    finally:
        listening.close()
    response = await served.client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["not_ready"] == ["buildkit"]


async def test_readyz_503_naming_the_database_when_it_is_down(
    serve: Callable[..., Awaitable[Served]], settings: Settings, database_url: str
) -> None:
    served = await serve()
    # A runtime whose pool points at a port nobody listens on.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    dead = await asyncpg.create_pool(
        f"postgresql://postgres@127.0.0.1:{dead_port}/x", min_size=0, max_size=1
    )
    served.runtime.pool = dead
    try:
        started = asyncio.get_running_loop().time()
        response = await served.client.get("/readyz")
        elapsed = asyncio.get_running_loop().time() - started
        body = await response.json()
    finally:
        await dead.close()
    assert response.status == 503
    assert body["not_ready"] == ["database", "migrations"]
    assert body["checks"]["database"]["detail"].startswith("unreachable: ")
    assert elapsed < ops_health.CHECK_TIMEOUT_SECONDS + 1


# ------------------------------------------------------------------ /metrics


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_from_the_database_and_the_worker(
    serve: Callable[..., Awaitable[Served]],
    pool: asyncpg.Pool,
    queue: Queue,
    store: Store,
    service: int,
) -> None:
    served = await serve()
    # A real run through the worker: its build step is observed (no plan step: "unknown").
    done = await queue.enqueue(service, trigger={"script": {}})
    await wait_for_status(store, done.id, Status.SUCCEEDED)
    # One that runs (hangs), one queued behind it for the same target, and made-up history:
    # steps with a runtime, deliveries, reports.
    running = await queue.enqueue(service, environment="staging", trigger={"script": {"hang": 1}})
    await wait_for_status(store, running.id, Status.BUILDING)
    waiting = await queue.enqueue(service, environment="staging")
    await pool.execute(
        "UPDATE deployments SET run_at = now() - interval '90 seconds' WHERE id = $1", waiting.id
    )
    await pool.execute(
        """INSERT INTO deployment_steps (deployment_id, attempt, seq, kind, name, status,
                                         finished_at, seconds, detail)
           VALUES ($1, 9, 1, 'pipeline', 'plan', 'done', now(), 0.1, 'node'),
                  ($1, 9, 2, 'pipeline', 'build', 'done', now(), 42, NULL),
                  ($1, 8, 1, 'pipeline', 'plan', 'done', now(), 0.1, 'node'),
                  ($1, 8, 2, 'pipeline', 'build', 'failed', now(), 7, NULL),
                  ($1, 7, 1, 'pipeline', 'plan', 'done', now(), 0.1, 'python'),
                  ($1, 7, 2, 'pipeline', 'build', 'running', now(), NULL, NULL)""",
        done.id,
    )
    await pool.execute(
        """INSERT INTO webhook_deliveries (source, delivery_id, event, outcome) VALUES
           ('github', 'a', 'push', 'queued'), ('github', 'b', 'push', 'queued'),
           ('github', 'c', 'push', 'ignored: branch deleted'), ('github', 'd', 'ping', NULL)"""
    )
    await pool.execute(
        """INSERT INTO outbox (deployment_id, target, kind, attempts, delivered_at, last_error,
                               available_at)
           VALUES ($1, 'gitlab', 'x', 3, NULL, 'HTTP 500', now() - interval '10 seconds'),
                  ($1, 'gitlab', 'x', 8, now(), 'gave up', now()),
                  ($1, 'gitlab', 'x', 1, now(), NULL, now())""",
        done.id,
    )
    response = await served.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = scrape(await response.text())

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("click_deploy_database_up") == 1
    assert value("click_deploy_deployments", state="succeeded") == 1
    assert value("click_deploy_deployments", state="queued") == 1
    assert value("click_deploy_deployments", state="building") == 1
    assert value("click_deploy_deployments", state="failed") == 0
    assert value("click_deploy_queue_depth", kind="all") == 1
    assert value("click_deploy_queue_depth", kind="runnable") == 1
    assert 89 < value("click_deploy_queue_oldest_age_seconds") < 120
    histogram = "click_deploy_build_duration_seconds"
    assert value(f"{histogram}_count", runtime="unknown", result="succeeded") == 1
    assert value(f"{histogram}_bucket", runtime="unknown", result="succeeded", le="5.0") == 1
    assert value(f"{histogram}_bucket", runtime="node", result="succeeded", le="30.0") == 0
    assert value(f"{histogram}_bucket", runtime="node", result="succeeded", le="60.0") == 1
    assert value(f"{histogram}_bucket", runtime="node", result="succeeded", le="+Inf") == 1
    assert value(f"{histogram}_sum", runtime="node", result="succeeded") == 42
    assert value(f"{histogram}_count", runtime="node", result="failed") == 1
    assert (f"{histogram}_count", (("result", "succeeded"), ("runtime", "python"))) not in samples
    deliveries = "click_deploy_webhook_deliveries_total"
    assert value(deliveries, source="github", result="queued") == 2
    assert value(deliveries, source="github", result="ignored") == 1
    assert value(deliveries, source="github", result="none") == 1
    assert value("click_deploy_reports_pending", target="gitlab") == 1
    assert value("click_deploy_reports_failing", target="gitlab") == 1
    assert value("click_deploy_report_failures_total", target="gitlab") == 1
    assert value("click_deploy_report_retries_total", target="gitlab") == 2 + 7
    assert value("click_deploy_reports_oldest_due_seconds", target="gitlab") >= 10
    assert value("click_deploy_worker_slots") == 2
    assert value("click_deploy_worker_running") == 1
    assert value("click_deploy_listen_connected") == 1
    assert value("click_deploy_listen_reconnects_total") == 0
    assert ("process_cpu_seconds_total", ()) in samples


async def test_metrics_count_listen_reconnects(
    serve: Callable[..., Awaitable[Served]], pool: asyncpg.Pool
) -> None:
    served = await serve()
    listener = served.worker.listener
    await pool.execute("SELECT pg_terminate_backend($1)", listener.backend_pid)
    deadline = time.monotonic() + PATIENCE
    while not (listener.reconnects == 1 and listener.connected.is_set()):
        assert time.monotonic() < deadline, "the LISTEN connection did not come back"
        await asyncio.sleep(0.1)
    samples = scrape(await (await served.client.get("/metrics")).text())
    assert samples[("click_deploy_listen_reconnects_total", ())] == 1


async def test_metrics_still_answer_when_the_database_does_not(
    serve: Callable[..., Awaitable[Served]],
) -> None:
    served = await serve()
    await served.runtime.pool.close()
    response = await served.client.get("/metrics")
    assert response.status == 200
    samples = scrape(await response.text())
    assert samples[("click_deploy_database_up", ())] == 0
    assert samples[("click_deploy_metrics_query_failures_total", ())] == 1
    assert ("click_deploy_worker_slots", ()) in samples


async def test_metrics_count_a_large_history(pool: asyncpg.Pool, service: int) -> None:
    """20 000 finished deployments with their steps and deliveries, counted by one scrape's
    query (its cost is a benchmark's business, not a test's)."""
    await pool.execute(
        """INSERT INTO deployments (service_id, environment, status, finished_at)
           SELECT $1, 'env-' || g, 'succeeded', now() FROM generate_series(1, 20000) g""",
        service,
    )
    await pool.execute(
        """INSERT INTO deployment_steps (deployment_id, attempt, seq, kind, name, status,
                                         finished_at, seconds, detail)
           SELECT d.id, 1, s.seq, s.kind, s.name, 'done', now(), random() * 600, s.detail
           FROM deployments d,
                (VALUES (1, 'pipeline', 'clone', NULL), (2, 'pipeline', 'plan', 'node'),
                        (3, 'pipeline', 'build', NULL), (4, 'build', 'RUN npm ci', NULL),
                        (5, 'build', 'RUN npm run build', NULL), (6, 'pipeline', 'verify', NULL))
                    AS s (seq, kind, name, detail)"""
    )
    await pool.execute(
        """INSERT INTO webhook_deliveries (source, delivery_id, event, outcome)
           SELECT 'github', g::text, 'push', 'queued' FROM generate_series(1, 20000) g"""
    )
    await pool.execute("ANALYZE")
    from bot.ops.metrics import read_snapshot

    snapshot = await read_snapshot(pool)
    assert snapshot.by_status["succeeded"] == 20000
    assert sum(snapshot.by_status.values()) == 20000
