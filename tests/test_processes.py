"""Real worker processes (the `click-deploy` console script) against real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from pipeline.queue.queue import Queue
from pipeline.states import Status
from pipeline.store import Store
from tests.conftest import REPO_ROOT
from tests.support.waiting import PATIENCE, wait_for_status

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "bot.cli"]


def worker_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WORKER_", "QUEUE_", "DATABASE_", "SHUTDOWN_", "RETRY_"))
    }
    env.update(
        DATABASE_URL=database_url,
        DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=str(REPO_ROOT),
        WORKER_PIPELINE="tests.support.pipelines:scripted",
        WORKER_LEASE_SECONDS="2",
        WORKER_HEARTBEAT_SECONDS="0.3",
        REAPER_INTERVAL_SECONDS="0.5",
        QUEUE_POLL_SECONDS="600",  # beyond any wait: only NOTIFY wakes a worker
        LOG_FORMAT="json",
    )
    env.update(extra)
    return env


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def spawn(
    processes: list[subprocess.Popen[bytes]], env: dict[str, str], *args: str
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [*CLI, *args], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    processes.append(process)
    return process


async def test_a_killed_worker_s_deployment_is_finished_by_another(
    database_url: str,
    tmp_path: Path,
    store: Store,
    queue: Queue,
    service: int,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    env = worker_env(database_url, tmp_path)
    first = spawn(processes, env, "worker", "--slots", "1")
    deployment = await queue.enqueue(service, trigger={"script": {"hang_until": 2}})
    running = await wait_for_status(store, deployment.id, Status.BUILDING)
    assert running.worker_id is not None and f":{first.pid}:" in running.worker_id

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = spawn(processes, env, "worker", "--slots", "1")
    done = await wait_for_status(store, deployment.id, Status.SUCCEEDED)
    assert done.attempts == 2
    lines = [line.line for line in (await store.read_logs(deployment.id)).items]
    assert any(f":{second.pid}:" in line and line.startswith("attempt 2 of 3") for line in lines)
    assert f"worker {running.worker_id} was lost" in (done.error or "")
    # Nothing is left looking active.
    assert (
        await store.pool.fetchval(
            "SELECT count(*) FROM deployments WHERE status IN ('cloning', 'building', 'pushing')"
        )
        == 0
    )


async def test_sigterm_lets_running_work_finish(
    database_url: str,
    tmp_path: Path,
    store: Store,
    queue: Queue,
    service: int,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    worker = spawn(processes, worker_env(database_url, tmp_path), "worker")
    deployment = await queue.enqueue(service, trigger={"script": {"sleep": 1.5}})
    await wait_for_status(store, deployment.id, Status.CLONING, Status.BUILDING)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert (await store.get_deployment(deployment.id)).status == Status.SUCCEEDED


async def test_sigterm_hands_back_work_that_outlives_the_grace_period(
    database_url: str,
    tmp_path: Path,
    store: Store,
    queue: Queue,
    service: int,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    env = worker_env(database_url, tmp_path, SHUTDOWN_GRACE_SECONDS="0.5")
    worker = spawn(processes, env, "worker")
    deployment = await queue.enqueue(service, trigger={"script": {"hang": True}})
    await wait_for_status(store, deployment.id, Status.BUILDING)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    handed_back = await store.get_deployment(deployment.id)
    assert (handed_back.status, handed_back.attempts) == (Status.QUEUED, 0)
    output = worker.stdout.read().decode() if worker.stdout else ""
    assert "Traceback" not in output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serve_answers_health_checks(
    database_url: str,
    tmp_path: Path,
    docker_engine: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    env = worker_env(database_url, tmp_path, HTTP_PORT=str(port), DOCKER_HOST=docker_engine)
    server = spawn(processes, env, "serve")
    deadline = time.monotonic() + PATIENCE
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                # Liveness first, then readiness (database, migrations, BuildKit).
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    body = await response.json()
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    ready = await response.json()
                    if response.status == 200 and body["listening"]:
                        break
            except aiohttp.ClientConnectionError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            await asyncio.sleep(0.1)
    assert body["status"] == "ok" and body["slots"] == 2
    assert ready["status"] == "ready"
    assert {name: check["ok"] for name, check in ready["checks"].items()} == {
        "database": True,
        "migrations": True,
        "buildkit": True,
    }
    server.send_signal(signal.SIGTERM)
    assert server.wait(20) == 0
