"""Opening click-deploy's world for a command: settings, database, migrations."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bot.logs import configure_logging
from pipeline.db.connect import connect, create_pool, database_url
from pipeline.db.migrate import migrate
from pipeline.errors import ConfigError
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


def check_writable(variable: str, directory: Path) -> None:
    """`directory` exists (made if need be) and takes a file: checked at start-up, so an
    unwritable one is one line naming its variable, not a failing page or build later."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"{variable}: cannot write to {directory} ({reason})") from None


def check_work_dirs(settings: Settings) -> None:
    """What `serve` and `worker` write: DATA_DIR (the page key, the embedded database) and
    BUILD_DIR (one folder per running build)."""
    check_writable("DATA_DIR", settings.data_dir)
    check_writable("BUILD_DIR" if settings.build_dir else "DATA_DIR", settings.effective_build_dir)


def resolve_database_url(settings: Settings) -> str:
    configure_logging(settings)
    if settings.database_url is None:
        check_writable("DATA_DIR", settings.data_dir)  # the embedded database lives there
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
