"""Survive a PostgreSQL restart during a burst of webhooks: a private PostgreSQL server (never
the shared one) is stopped and started again while signed GitHub pushes pour into a real
`click-deploy serve` process and a real worker process builds them. The sender acts as
GitHub does: what is not acknowledged is sent again with the same delivery id.

Every acknowledged delivery ends up as exactly one deployment, which completes; the bot
answers a clean 5xx while the database is away and its /readyz recovers by itself; no
process is restarted (their pools reconnect, their LISTEN connections come back), and work
queued afterwards is claimed on NOTIFY, not by the safety poll (set to 10 minutes)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from pipeline.db.connect import connect
from pipeline.db.migrate import migrate
from tests.support.fake_github import FakeGitHub
from tests.support.private_postgres import private_postgres
from tests.support.webhook_burst import (
    OK,
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

BURST = 120  # deliveries, each to its own service: each must end as a succeeded deployment
AFTER = 6  # deliveries sent once everything has recovered
DEADLINE_SECONDS = 80
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


@dataclass
class Readiness:
    """/readyz, asked all along: every answer's status, in order."""

    statuses: list[int] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)

    async def watch(self, session: aiohttp.ClientSession, port: int) -> None:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    self.statuses.append(response.status)
                    self.bodies.append(await response.text())
            except aiohttp.ClientError as error:  # recorded: the test fails on it
                self.statuses.append(0)
                self.bodies.append(repr(error))
            await asyncio.sleep(0.05)

    def recovered(self) -> bool:
        """503 seen, and 200 after it."""
        return 503 in self.statuses and self.statuses[-1] == 200


async def until(
    condition: Callable[[], bool | Awaitable[bool]], message: str, deadline: float
) -> None:
    """Wait for `condition()` (sync or async) to be true, failing at `deadline`."""
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.05)


async def test_deliveries_survive_a_postgres_restart(
    tmp_path: Path,
    docker_engine: str,
    fake: FakeGitHub,
    examples_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
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
                watcher.cancel()
                for task in sending:
                    task.cancel()

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
            check_one_deployment_each(deliveries, rows, await fetch(url, DELIVERIES))

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
            check_one_deployment_each(deliveries + after, rows, await fetch(url, DELIVERIES))
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
DELIVERIES = "SELECT * FROM webhook_deliveries WHERE source = 'github'"


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
