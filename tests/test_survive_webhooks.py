"""Survive (issue 7), with real processes and real services: a `click-deploy serve`
process takes signed GitHub push deliveries (sent as GitHub sends them: what is not
acknowledged is sent again with the same X-GitHub-Delivery), real `click-deploy worker`
processes build them with the scripted pipeline, and everything is checked from the
database afterwards.

- Load: 500 deliveries in bursts over 50 services, two workers with two slots each: each
  delivery stored once with its deployment, every deployment succeeded or superseded by a
  newer one of its service, no service ever had two active deployments at once.
- A PostgreSQL restart during a burst (a private server, never the shared one): every
  acknowledged delivery is exactly one deployment, which completes; the bot answers a clean
  503 while the database is away and its /readyz recovers by itself; no process is
  restarted (pools reconnect, LISTEN comes back), and work queued afterwards is claimed on
  NOTIFY, not by the safety poll (set to 10 minutes).

One module, so GitHub's OpenAPI description is loaded for the fake GitHub once."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from structlog.testing import capture_logs

from pipeline.db.connect import connect
from pipeline.db.migrate import migrate
from pipeline.queue.listener import Listener
from pipeline.store import NewService, Store
from tests.support.fake_github import FakeGitHub
from tests.support.private_postgres import private_postgres
from tests.support.webhook_burst import (
    OK,
    Delivery,
    Readiness,
    Sender,
    bot_env,
    outputs,
    push_delivery,
    spawn_logged,
    stop_processes,
    until,
    wait_listening,
    worker_pids,
)
from tests.test_github import examples_path, fake, github_openapi
from tests.test_processes import free_port, processes

__all__ = ["examples_path", "fake", "github_openapi", "processes"]  # fixtures used below

pytestmark = pytest.mark.slow

# --- load ------------------------------------------------------------------------------

LOAD_SERVICES = 50
LOAD_DELIVERIES = 500
LOAD_BURSTS = 10
LOAD_DEADLINE_SECONDS = 75


FINAL = ("succeeded", "superseded")


async def all_done(pool: asyncpg.Pool, expected: int) -> bool:
    done = await pool.fetchval("SELECT count(*) FROM deployments WHERE status = ANY($1)", FINAL)
    return bool(done == expected)


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
    deadline = time.monotonic() + LOAD_DEADLINE_SECONDS
    repositories = [f"acme/svc-{n:02d}" for n in range(LOAD_SERVICES)]
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
            for _ in range(LOAD_DELIVERIES // LOAD_BURSTS)
        ]
        for _ in range(LOAD_BURSTS)
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
    await until(lambda: all_done(pool, LOAD_DELIVERIES), "deployments not all finished", deadline)

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


# --- a PostgreSQL restart --------------------------------------------------------------

BURST = 120  # deliveries, each to its own service: each must end as a succeeded deployment
AFTER = 6  # deliveries sent once everything has recovered
RESTART_DEADLINE_SECONDS = 300  # generous: the machine may be busy with other builds
POLL_SECONDS = 600  # the safety poll: far beyond the deadline, so only NOTIFY can wake


async def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    connection = await connect(url)
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


async def create_services(url: str, repositories: list[str]) -> None:
    await fetch(
        url,
        "INSERT INTO services (name, repository, provider, branch) "
        "SELECT split_part(r, '/', 2), r, 'github', 'main' FROM unnest($1::text[]) r",
        repositories,
    )


async def test_deliveries_survive_a_postgres_restart(
    tmp_path: Path,
    docker_engine: str,
    fake: FakeGitHub,
    examples_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    deadline = time.monotonic() + RESTART_DEADLINE_SECONDS
    with private_postgres(free_port()) as server:
        url = server.url()
        connection = await connect(url)
        try:
            await migrate(connection)
        finally:
            await connection.close()
        repositories = [f"acme/burst-{n:03d}" for n in range(BURST)]
        await create_services(url, repositories)

        port = free_port()
        common = {
            "SCRIPTED_PIPELINE_SCRIPT": json.dumps({"sleep_random": [0.1, 0.6]}),
            "QUEUE_POLL_SECONDS": str(POLL_SECONDS),
            "DOCKER_HOST": docker_engine,  # /readyz also asks the BuildKit engine
        }
        serve = spawn_logged(
            processes,
            bot_env(url, tmp_path / "serve", fake.url, HTTP_PORT=str(port), **common),
            tmp_path / "serve.log",
            "serve",
            "--slots",
            "1",
        )
        worker = spawn_logged(
            processes,
            bot_env(url, tmp_path / "worker", fake.url, WORKER_SLOTS="2", **common),
            tmp_path / "worker.log",
            "worker",
        )
        deliveries = [push_delivery(examples_path, repository) for repository in repositories]
        readiness = Readiness()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await wait_listening(session, port)
            watcher = asyncio.create_task(readiness.watch(session, port))
            sender = Sender(session, f"http://127.0.0.1:{port}/webhooks/github", deadline)
            first, during, late = deliveries[:40], deliveries[40:100], deliveries[100:]
            sending = [asyncio.create_task(sender.send_all(first, concurrency=8))]
            try:
                # With builds running and deliveries on their way, stop PostgreSQL; stay
                # down until the bot has answered deliveries and /readyz without it (those
                # sent only after the stop certainly meet the outage); start it again.
                await until(builds_running(url), "the builds did not get going", deadline)
                sending.append(asyncio.create_task(sender.send_all(during, concurrency=8)))
                await asyncio.to_thread(server.stop, "fast")
                try:
                    sending.append(asyncio.create_task(sender.send_all(late, concurrency=4)))
                    await until(
                        lambda: refusals(late) >= 3 and 503 in readiness.statuses,
                        "the outage was not seen by the bot",
                        deadline,
                    )
                finally:
                    await asyncio.to_thread(server.start)
                await asyncio.gather(*sending)
                await until(readiness.recovered, "/readyz did not recover", deadline)
            finally:
                for task in [watcher, *sending]:
                    task.cancel()
                await asyncio.gather(watcher, *sending, return_exceptions=True)

            # Every delivery was acknowledged in the end; what the bot said meanwhile was a
            # clean 503 (no dropped connection, no traceback, no 4xx).
            unacknowledged = [d.id for d in deliveries if d.acknowledged is None]
            assert unacknowledged == [], [d.attempts for d in deliveries if d.acknowledged is None]
            failures = [a for d in deliveries for a in d.attempts if a.status not in OK]
            assert failures, "no delivery met the outage"
            for attempt in failures:
                assert (attempt.status, attempt.content_type) == (503, "application/json"), attempt
                assert json.loads(attempt.body) == {"message": UNAVAILABLE}, attempt
            not_ready = [
                body
                for status, body in zip(readiness.statuses, readiness.bodies, strict=True)
                if status == 503
            ]
            assert all(json.loads(body)["not_ready"][0] == "database" for body in not_ready)

            await until(
                lambda: all_final(url, BURST), "the burst's deployments did not finish", deadline
            )
            rows = await fetch(url, "SELECT * FROM deployments ORDER BY id")
            check_one_deployment_each(deliveries, rows, await fetch(url, STORED_DELIVERIES))

            # Both processes' LISTEN connections came back by themselves ...
            for log in ("serve.log", "worker.log"):
                await until(
                    lambda log=log: "LISTEN connection is back" in outputs(tmp_path)[log],
                    f"{log}: LISTEN did not come back",
                    deadline,
                )
            # ... so what is queued now is claimed on NOTIFY (the poll is 10 minutes away).
            later = [f"acme/after-{n}" for n in range(AFTER)]
            await create_services(url, later)
            after = [push_delivery(examples_path, repository) for repository in later]
            await sender.send_all(after, concurrency=AFTER)
            assert all(d.attempts[0].status == 200 for d in after), [d.attempts for d in after]
            await until(
                lambda: all_final(url, BURST + AFTER),
                "work queued after the restart was not claimed on NOTIFY",
                deadline,
            )
            rows = await fetch(url, "SELECT * FROM deployments ORDER BY id")
            check_one_deployment_each(deliveries + after, rows, await fetch(url, STORED_DELIVERIES))
            lines = await fetch(url, "SELECT line FROM deployment_logs WHERE stream = 'system'")
            assert worker_pids(row["line"] for row in lines) <= {serve.pid, worker.pid}

        # Never restarted by the test: the same two processes, still running, stop cleanly;
        # the outage was logged as warnings, nothing as an error or an unhandled request.
        assert processes == [serve, worker]
        await stop_processes([serve, worker])
        for name, text in outputs(tmp_path).items():
            assert '"level": "error"' not in text, name
            assert "Error handling request" not in text, name


UNAVAILABLE = "the database is unavailable; try again shortly"
STORED_DELIVERIES = "SELECT * FROM webhook_deliveries WHERE source = 'github'"


def builds_running(url: str, at_least: int = 2) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        rows = await fetch(
            url,
            "SELECT count(*) FROM deployments WHERE status IN ('cloning', 'building', 'pushing')",
        )
        return bool(rows[0][0] >= at_least)

    return check


def refusals(deliveries: list[Delivery]) -> int:
    return sum(1 for d in deliveries for a in d.attempts if a.status not in OK)


async def all_final(url: str, expected: int) -> bool:
    rows = await fetch(
        url, "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FROM deployments"
    )
    succeeded, total = rows[0]
    assert total <= expected, f"{total} deployments for {expected} deliveries"
    ended = await fetch(
        url,
        "SELECT id, status, error FROM deployments WHERE status IN "
        "('failed', 'cancelled', 'superseded')",
    )
    assert ended == [], [dict(row) for row in ended]
    return bool(succeeded == expected)


def check_one_deployment_each(
    deliveries: list[Delivery], rows: list[asyncpg.Record], stored: list[asyncpg.Record]
) -> None:
    """Each delivery: one row in webhook_deliveries naming one deployment, of its service
    and commit, succeeded; no deployment without its delivery."""
    by_delivery = {row["delivery_id"]: row for row in stored}
    assert sorted(by_delivery) == sorted(d.id for d in deliveries)
    by_id = {row["id"]: row for row in rows}
    assert len(rows) == len(deliveries)
    for delivery in deliveries:
        ids = by_delivery[delivery.id]["deployment_ids"]
        assert len(ids) == 1, (delivery.id, ids)
        row = by_id[ids[0]]
        assert row["trigger"]["delivery_id"] == delivery.id
        assert row["commit_sha"] == delivery.commit
        assert row["status"] == "succeeded", dict(row)


async def test_a_listener_that_starts_while_postgres_is_away_says_when_it_is_up() -> None:
    """The first connection may meet the outage (a process that starts, or whose first
    connection is still being made, as PostgreSQL stops): the warnings it logs then are
    followed by the line that says LISTEN is back, as after a lost connection."""
    with private_postgres(free_port()) as server:
        url = server.url()
        await asyncio.to_thread(server.stop, "fast")
        heard: list[str] = []
        listener = Listener(url, {"burst_test": heard.append}, max_backoff_seconds=0.2)
        with capture_logs() as logged:
            running = asyncio.create_task(listener.run())
            try:
                await until(
                    lambda: any(e["event"] == "LISTEN connection lost" for e in logged),
                    "the first connection did not fail",
                    time.monotonic() + 60,
                )
                await asyncio.to_thread(server.start)
                await asyncio.wait_for(listener.connected.wait(), 60)
                await fetch(url, "SELECT pg_notify('burst_test', 'hello')")
                await until(lambda: heard == ["hello"], "no notification", time.monotonic() + 60)
            finally:
                listener.stop()
                await running
    events = [entry["event"] for entry in logged]
    assert "LISTEN connection lost" in events
    assert events[-1] == "LISTEN connection is back", events
    assert listener.reconnects == 1
