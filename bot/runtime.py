"""Opening click-deploy's world for a command: settings, database, migrations."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from bot.logs import configure_logging
from pipeline.db.connect import connect, create_pool, database_url
from pipeline.db.migrate import migrate
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.store import Store


def announce(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Runtime:
    settings: Settings
    url: str
    pool: asyncpg.Pool
    store: Store
    queue: Queue


def resolve_database_url(settings: Settings) -> str:
    configure_logging(settings)
    return database_url(settings, announce=announce)


async def apply_migrations(url: str) -> list[str]:
    connection = await connect(url)
    try:
        return [f"{m.version:04d}_{m.name}" for m in await migrate(connection)]
    finally:
        await connection.close()


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, pool_size: int | None = None
) -> AsyncIterator[Runtime]:
    """Connect, bring the schema up to date (safe when several processes start at once),
    and hand out the store and queue."""
    url = resolve_database_url(settings)
    await apply_migrations(url)
    pool = await create_pool(url, size=pool_size or settings.database_pool_size)
    try:
        yield Runtime(settings, url, pool, Store(pool), Queue(pool, settings))
    finally:
        await pool.close()
