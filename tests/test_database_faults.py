"""What the database's going away does to a worker: the faults asyncpg raises when a
connection is ended under it (a PostgreSQL restart, a failover, a killed backend)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from bot.api.tokens import new_token
from bot.ops.unavailable import database_unavailable
from bot.reporting import loop as reporting_loop
from bot.reporting.loop import Sent
from bot.runtime import Runtime
from bot.serve import make_app
from pipeline.db.connect import connect, create_pool
from pipeline.db.migrate import migrate
from pipeline.job import BuildResult, Job
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import Store
from tests.support.github_hooks import SECRET
from tests.support.pipelines import ScriptedPipeline
from tests.support.private_postgres import private_postgres
from tests.support.waiting import PATIENCE, wait_for_status
from tests.support.webhook_burst import push_delivery
from tests.test_github import examples_path
from tests.test_processes import free_port

__all__ = ["examples_path"]  # the fixture, used below

StartWorker = Callable[..., Awaitable[Worker]]

# What a job write meets while PostgreSQL restarts (seen in tests/test_survive_postgres_
# restart.py): the pool's reconnect refused, the connection closed mid-query, or, when the
# server's goodbye arrives while the connection is idle, a protocol state error on its
# next query.
FAULTS = [
    ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
]


class LosesTheDatabaseOnce(ScriptedPipeline):
    """The first attempt's job write meets a dead connection (as `job.enter` would)."""

    def __init__(self, fault: Exception) -> None:
        super().__init__()
        self.fault = fault

    async def run(self, job: Job) -> BuildResult:
        if job.deployment.attempts == 1:
            raise self.fault
        return await super().run(job)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: type(fault).__name__)
async def test_a_database_fault_under_the_pipeline_is_retried_not_failed(
    store: Store, queue: Queue, service: int, start_worker: StartWorker, fault: Exception
) -> None:
    await start_worker(LosesTheDatabaseOnce(fault))
    deployment = await queue.enqueue(service)
    done = await wait_for_status(store, deployment.id, Status.SUCCEEDED, Status.FAILED)
    assert (done.status, done.attempts) == (Status.SUCCEEDED, 2), done.error
    lines = [line.line for line in (await store.read_logs(deployment.id)).items]
    assert any(
        line.startswith(f"a connection failed ({type(fault).__name__}: ") and "retrying" in line
        for line in lines
    ), lines


def fails_once(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    calls = 0

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncpg.InternalClientError("cannot switch to state 12")
        return await method(*args, **kwargs)

    return wrapper


async def test_claim_heartbeat_and_reaper_go_on_after_a_protocol_state_error(
    store: Store,
    queue: Queue,
    service: int,
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("claim_many", "heartbeat", "reap"):
        monkeypatch.setattr(Queue, name, fails_once(getattr(Queue, name)))
    # Runs longer than its lease: only heartbeats after the failed one keep it.
    deployment = await queue.enqueue(service, trigger={"script": {"sleep": 1.5}})
    worker = await start_worker(
        ScriptedPipeline(), worker_lease_seconds=0.8, worker_heartbeat_seconds=0.1
    )
    done = await wait_for_status(store, deployment.id, Status.SUCCEEDED)
    assert done.attempts == 1
    # Still claiming.
    later = await queue.enqueue(service)
    await wait_for_status(store, later.id, Status.SUCCEEDED)
    assert worker.claimed == 2


async def test_the_reporter_loop_goes_on_after_a_protocol_state_error(
    pool: asyncpg.Pool, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = asyncio.Event()
    rounds = 0

    async def deliver_due(*_args: object) -> int:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise asyncpg.InternalClientError("cannot switch to state 12")
        stop.set()
        return 0

    async def send(_deployment_id: int) -> Sent:
        return Sent()

    monkeypatch.setattr(reporting_loop, "deliver_due", deliver_due)
    fast = settings.model_copy(update={"report_poll_seconds": 0.01})
    await asyncio.wait_for(reporting_loop.run_reporter(pool, fast, "github", send, stop), PATIENCE)
    assert rounds == 2


async def test_while_postgresql_is_down_the_bot_answers_503_and_recovers_by_itself(
    settings: Settings, examples_path: Path
) -> None:
    with private_postgres(free_port()) as server:
        url = server.url()
        connection = await connect(url)
        try:
            await migrate(connection)
            await connection.execute(
                "INSERT INTO services (name, repository, provider, branch) "
                "VALUES ('web', 'acme/web', 'github', 'main')"
            )
        finally:
            await connection.close()
        own = settings.model_copy(
            update={"database_url": SecretStr(url), "github_webhook_secret": SecretStr(SECRET)}
        )
        pool = await create_pool(url, size=2)
        runtime = Runtime(own, url, pool, Store(pool), Queue(pool, own))
        worker = Worker(own, pool, url, ScriptedPipeline())
        try:
            async with TestClient(TestServer(make_app(runtime, worker))) as client:

                async def push() -> tuple[int, str, dict[str, Any]]:
                    delivery = push_delivery(examples_path, "acme/web")
                    response = await client.post(
                        "/webhooks/github", data=delivery.body, headers=delivery.headers
                    )
                    return (
                        response.status,
                        response.headers.get("Retry-After", ""),
                        await response.json(),
                    )

                assert (await push())[0] == 200
                await asyncio.to_thread(server.stop, "fast")
                for _ in range(3):  # the pool's connection ended, then refused reconnects
                    status, retry_after, body = await push()
                    assert (status, retry_after) == (503, "5"), body
                    assert body == {"message": "the database is unavailable; try again shortly"}
                # The API too, in its own error shape (the token lookup meets the fault).
                token = {"Authorization": f"Bearer {new_token()}"}
                response = await client.get("/api/v1/services", headers=token)
                assert response.status == 503
                assert (await response.json())["error"]["code"] == "unavailable"
                await asyncio.to_thread(server.start)
                status, _retry_after, body = await push()
                assert status == 200 and body["message"] == "queued", body
        finally:
            await pool.close()


async def test_a_reset_by_the_database_is_503_but_an_http_client_s_error_is_not() -> None:
    async def database_reset(_request: web.Request) -> web.Response:
        raise ConnectionResetError(104, "Connection reset by peer")  # as asyncpg's connect

    async def github_reset(_request: web.Request) -> web.Response:
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    app = web.Application(middlewares=[database_unavailable])
    app.router.add_post("/database", database_reset)
    app.router.add_post("/github", github_reset)
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/database")).status == 503
        assert (await client.post("/github")).status == 500
