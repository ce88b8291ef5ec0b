"""Fixtures: a real PostgreSQL (DATABASE_URL, else an embedded one), a fresh database per
test cloned from a migrated template, and the store, queue and worker on top of it."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bot import logs as bot_logs
from bot.logs import configure_logging
from pipeline.db.connect import create_pool
from pipeline.db.migrate import migrate
from pipeline.job import Pipeline
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.settings import Settings
from pipeline.store import NewService, Store
from tests.support.waiting import PATIENCE

REPO_ROOT = Path(__file__).resolve().parent.parent

# Logs as in production on a non-terminal: JSON lines, no tracebacks with local variables;
# loggers never cache their configuration, so that capture_logs sees every one whatever ran
# before it in this process.
bot_logs.CACHE_LOGGERS = False
configure_logging(Settings(_env_file=None, log_format="json", log_level="info"))  # type: ignore[call-arg]

# Real services: Docker engine, registries, base images, git servers.
pytest_plugins = ["tests.support.infra", "tests.support.gitserver"]


def pytest_configure(config: pytest.Config) -> None:
    """Native tracebacks on CPython 3.11 before 3.11.8 (Debian 12 ships 3.11.2): pytest's
    own styles (long, short) re-parse source files with ast.parse while printing a failure,
    and those releases can then crash the whole run with "INTERNALERROR SystemError: AST
    constructor recursion depth mismatch" (CPython gh-106905). An explicit --tb wins."""
    if (3, 11) <= sys.version_info[:3] < (3, 11, 8) and config.option.tbstyle == "auto":
        config.option.tbstyle = "native"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The PostgreSQL server the tests use. Under CI=true a missing server is a failure."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    import pgserver  # the embedded default, as on a newcomer's machine

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    name = f"cd_template_{os.getpid()}"

    async def create() -> None:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        connection = await asyncpg.connect(_with_database(server_url, name))
        try:
            await migrate(connection)
        finally:
            await connection.close()

    async def drop() -> None:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(create())
    yield name
    asyncio.run(drop())


async def _admin(server_url: str, statement: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture
def database_url(server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone (sync, so CLI tests can use it)."""
    name = f"cd_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    yield _with_database(server_url, name)
    asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Short timings so leases, retries and polls happen within a test."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        data_dir=tmp_path / "data",
        worker_slots=2,
        worker_lease_seconds=2.0,
        worker_heartbeat_seconds=0.3,
        queue_poll_seconds=600.0,  # beyond any wait: only NOTIFY wakes a test's worker
        reaper_interval_seconds=0.5,
        shutdown_grace_seconds=5.0,
        retry_max_attempts=3,
        retry_backoff_seconds=0.2,
        retry_backoff_max_seconds=2.0,
        build_network="host",  # the test engine has no bridge network (dockerd --bridge=none)
    )


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, size=10)
    yield pool
    await pool.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> Store:
    return Store(pool)


@pytest.fixture
def queue(pool: asyncpg.Pool, settings: Settings) -> Queue:
    return Queue(pool, settings)


@pytest.fixture
async def service(store: Store) -> int:
    created = await store.create_service(
        NewService(name="web", repository="acme/web", provider="github")
    )
    return created.id


@pytest.fixture
async def start_worker(
    settings: Settings, pool: asyncpg.Pool, database_url: str
) -> AsyncIterator[Callable[..., Awaitable[Worker]]]:
    """Start in-process workers (real claim, heartbeat, LISTEN); stopped after the test."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(pipeline: Pipeline, slots: int = 2, **overrides: object) -> Worker:
        worker = Worker(
            settings.model_copy(update=overrides), pool, database_url, pipeline, slots=slots
        )
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.listener.connected.wait(), PATIENCE)
        running.append((worker, task))
        return worker

    yield start
    for worker, _task in running:
        worker.stop(now=True)
    await asyncio.wait_for(asyncio.gather(*(task for _w, task in running)), PATIENCE)
