from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pipeline.db.migrate import load_migrations, migrate
from tests.conftest import _with_database


@pytest.fixture
async def empty_database(server_url: str) -> AsyncIterator[str]:
    name = f"cd_empty_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield _with_database(server_url, name)
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


async def test_migrations_apply_once_and_are_idempotent(empty_database: str) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        first = await migrate(connection)
        assert [m.version for m in first] == [m.version for m in load_migrations()]
        assert await migrate(connection) == []
        tables = {
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname='public'"
            )
        }
        assert {
            "services",
            "deployments",
            "deployment_logs",
            "webhook_deliveries",
            "api_tokens",
            "outbox",
            "schema_migrations",
        } <= tables
    finally:
        await connection.close()


async def test_concurrent_migrations_do_not_race(empty_database: str) -> None:
    connections = [await asyncpg.connect(empty_database) for _ in range(6)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in connections))
        # Exactly one process applied each migration; the others found it done.
        applied = [m.version for result in results for m in result]
        assert sorted(applied) == [m.version for m in load_migrations()]
        count = await connections[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(load_migrations())
    finally:
        for connection in connections:
            await connection.close()


async def test_an_edited_migration_is_refused(empty_database: str) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        await migrate(connection)
        await connection.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        from pipeline.errors import ConfigError

        with pytest.raises(ConfigError, match="was changed after it was applied"):
            await migrate(connection)
    finally:
        await connection.close()
