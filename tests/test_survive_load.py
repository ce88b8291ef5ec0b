"""Survive load: 500 signed GitHub push deliveries in bursts over 50 services, through a
real `click-deploy serve` process, built by two real `click-deploy worker` processes with
two slots each (the scripted pipeline, short random steps). Everything is checked from the
database afterwards: each delivery stored once with its deployment, every deployment
succeeded or superseded by a newer one of its service, and no service ever had two active
deployments at once."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import subprocess
import time
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from pipeline.store import NewService, Store
from tests.support.fake_github import FakeGitHub
from tests.support.webhook_burst import (
    Delivery,
    Sender,
    bot_env,
    outputs,
    push_delivery,
    spawn_logged,
    stop_processes,
    wait_listening,
    worker_pids,
)
from tests.test_github import examples_path, fake, github_openapi
from tests.test_processes import free_port, processes

__all__ = ["examples_path", "fake", "github_openapi", "processes"]  # fixtures used below

pytestmark = pytest.mark.slow

SERVICES = 50
DELIVERIES = 500
BURSTS = 10
DEADLINE_SECONDS = 75


async def wait_all_final(pool: asyncpg.Pool, expected: int, deadline: float) -> None:
    while True:
        counts = dict(
            await pool.fetch("SELECT status, count(*) FROM deployments GROUP BY status")  # type: ignore[arg-type]
        )
        unfinished = sum(n for status, n in counts.items() if status not in FINAL)
        if sum(counts.values()) == expected and unfinished == 0:
            return
        assert time.monotonic() < deadline, f"deployments not all finished: {counts}"
        await asyncio.sleep(0.1)


FINAL = ("succeeded", "superseded")


def assert_one_active_at_a_time(rows: list[asyncpg.Record]) -> None:
    """From the database's own timestamps: per service, each deployment that ran was
    finished before the next one started (claim stamps started_at with clock_timestamp()
    after the previous one committed its finished_at)."""
    by_service: dict[int, list[asyncpg.Record]] = {}
    for row in rows:
        if row["started_at"] is not None:
            by_service.setdefault(row["service_id"], []).append(row)
    for service_id, ran in by_service.items():
        ran.sort(key=lambda row: row["started_at"])
        for previous, following in itertools.pairwise(ran):
            assert previous["finished_at"] is not None, dict(previous)
            assert previous["finished_at"] <= following["started_at"], (
                f"service {service_id}: deployment {previous['id']} ran until "
                f"{previous['finished_at']}, after {following['id']} started at "
                f"{following['started_at']}"
            )


async def test_500_deliveries_in_bursts_over_50_services(
    database_url: str,
    tmp_path: Path,
    store: Store,
    fake: FakeGitHub,
    examples_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    repositories = [f"acme/svc-{n:02d}" for n in range(SERVICES)]
    for repository in repositories:
        await store.create_service(
            NewService(repository.split("/")[1], repository, "github", branch="main")
        )
    port = free_port()
    script = json.dumps({"sleep_random": [0.01, 0.15]})
    common = {
        "SCRIPTED_PIPELINE_SCRIPT": script,
        "WORKER_LEASE_SECONDS": "15",
        "WORKER_HEARTBEAT_SECONDS": "1",
        "QUEUE_POLL_SECONDS": "30",
        "LOG_LEVEL": "warning",
    }
    server = spawn_logged(
        processes,
        bot_env(database_url, tmp_path / "serve", fake.url, HTTP_PORT=str(port), **common),
        tmp_path / "serve.log",
        "serve",
        "--slots",
        "1",
    )
    workers = [
        spawn_logged(
            processes,
            bot_env(database_url, tmp_path / f"w{n}", fake.url, WORKER_SLOTS="2", **common),
            tmp_path / f"worker-{n}.log",
            "worker",
        )
        for n in range(2)
    ]
    chooser = random.Random(7)  # the same bursts every run
    bursts: list[list[Delivery]] = [
        [
            push_delivery(examples_path, chooser.choice(repositories))
            for _ in range(DELIVERIES // BURSTS)
        ]
        for _ in range(BURSTS)
    ]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await wait_listening(session, port)
        sender = Sender(session, f"http://127.0.0.1:{port}/webhooks/github", deadline)
        for burst in bursts:
            await sender.send_all(burst, concurrency=25)
            # The next burst lands while this one is still being built: once nothing of
            # it waits any more (each was claimed, or superseded within the burst).
            while await store.pool.fetchval(
                "SELECT count(*) FROM deployments WHERE status = 'queued'"
            ):
                assert time.monotonic() < deadline, "the burst was not claimed"
                await asyncio.sleep(0.02)
    deliveries = [delivery for burst in bursts for delivery in burst]

    # Every delivery was acknowledged at once (nothing failed, so nothing was sent twice)
    # with the one deployment it caused.
    answers = {}
    for delivery in deliveries:
        assert [a.status for a in delivery.attempts] == [200], delivery.attempts
        answer = json.loads(delivery.attempts[0].body)
        assert answer["message"] == "queued" and len(answer["deployments"]) == 1, answer
        answers[delivery.id] = answer["deployments"][0]
    pool = store.pool
    await wait_all_final(pool, DELIVERIES, deadline)

    stored = {
        row["delivery_id"]: row
        for row in await pool.fetch("SELECT * FROM webhook_deliveries WHERE source = 'github'")
    }
    assert set(stored) == set(answers)
    for delivery_id, deployment_id in answers.items():
        assert stored[delivery_id]["deployment_ids"] == [deployment_id]
        assert stored[delivery_id]["event"] == "push"
    rows = await pool.fetch(
        "SELECT d.*, s.repository FROM deployments d JOIN services s ON s.id = d.service_id"
    )
    by_id = {row["id"]: row for row in rows}
    assert sorted(by_id) == sorted(answers.values())
    sent = {delivery.id: delivery for delivery in deliveries}
    for delivery_id, deployment_id in answers.items():
        row = by_id[deployment_id]
        assert row["trigger"]["delivery_id"] == delivery_id
        assert (row["repository"], row["commit_sha"]) == (
            sent[delivery_id].repository,
            sent[delivery_id].commit,
        )

    # Succeeded, or superseded by a newer deployment of the same service; the newest of
    # each service was built.
    statuses = Counter(row["status"] for row in rows)
    assert set(statuses) <= set(FINAL), statuses
    newest: dict[int, int] = {}
    for row in rows:
        newest[row["service_id"]] = max(newest.get(row["service_id"], 0), row["id"])
        if row["status"] == "superseded":
            newer = by_id[row["superseded_by"]]
            assert newer["id"] > row["id"] and newer["service_id"] == row["service_id"]
        else:
            assert row["started_at"] is not None and row["finished_at"] is not None
            assert row["image"], dict(row)
    assert {by_id[i]["status"] for i in newest.values()} == {"succeeded"}
    assert len(newest) == len({d.repository for d in deliveries})
    assert_one_active_at_a_time(rows)

    # Both worker processes ran deployments (the first line of every run names its worker).
    lines = await pool.fetch("SELECT line FROM deployment_logs WHERE stream = 'system'")
    ran_on = worker_pids(row["line"] for row in lines)
    assert {worker.pid for worker in workers} <= ran_on

    await stop_processes([server, *workers])
    for name, text in outputs(tmp_path).items():
        assert "Traceback" not in text, name
