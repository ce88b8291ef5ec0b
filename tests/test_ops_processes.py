"""Scale-out: two `click-deploy serve` replicas on one PostgreSQL share the queue, and
their /metrics agree on the installation-wide figures while each reports its own worker."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.queue.queue import Queue
from pipeline.states import Status
from pipeline.store import Store
from tests.support.waiting import PATIENCE, wait_for_status
from tests.test_processes import free_port, processes, spawn, worker_env

__all__ = ["processes"]  # the fixture, used below

pytestmark = pytest.mark.slow


async def scrape(session: aiohttp.ClientSession, port: int) -> dict[str, float]:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


async def wait_ready(session: aiohttp.ClientSession, port: int) -> None:
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                listening = (await response.json())["listening"]
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                if response.status == 200 and listening:
                    return
        except aiohttp.ClientConnectionError:
            pass
        assert time.monotonic() < deadline, f"serve on {port} did not become ready"
        await asyncio.sleep(0.1)


async def test_two_replicas_share_the_queue_and_agree_on_metrics(
    database_url: str,
    tmp_path: Path,
    docker_engine: str,
    store: Store,
    queue: Queue,
    service: int,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    ports = [free_port(), free_port()]
    servers = [
        spawn(
            processes,
            worker_env(
                database_url,
                tmp_path / str(port),
                HTTP_PORT=str(port),
                DOCKER_HOST=docker_engine,
                WORKER_SLOTS="2",
            ),
            "serve",
        )
        for port in ports
    ]
    async with aiohttp.ClientSession() as session:
        for port in ports:
            await wait_ready(session, port)
        deployments = [
            await queue.enqueue(service, environment=f"env-{n}", trigger={"script": {"sleep": 0.6}})
            for n in range(6)
        ]
        for deployment in deployments:
            await wait_for_status(store, deployment.id, Status.SUCCEEDED)
        # Both replicas took work from the one queue (each run logs its worker first).
        ran_on = set()
        for deployment in deployments:
            first_line = (await store.read_logs(deployment.id)).items[0].line
            ran_on.add(first_line.split(" on worker ")[1].split(":")[1])
        assert ran_on == {str(server.pid) for server in servers}
        first, second = [await scrape(session, port) for port in ports]
    shared = [
        "click_deploy_deployments{state=succeeded}",
        "click_deploy_queue_depth{kind=all}",
        "click_deploy_build_duration_seconds_count{result=succeeded,runtime=unknown}",
    ]
    assert [first[name] for name in shared] == [second[name] for name in shared] == [6, 0, 6]
    assert first["click_deploy_worker_slots{}"] + second["click_deploy_worker_slots{}"] == 4
    for server in servers:
        server.send_signal(signal.SIGTERM)
    for server in servers:
        assert server.wait(20) == 0
