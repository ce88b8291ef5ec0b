"""Migrations and the SQL function files (pipeline/db/migrate.py): applied once, in turns,
never edited after; a function file's change reaches installed databases by itself, its
change of shape only with a migration; migrations include function files."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from pipeline.db.migrate import (
    FUNCTION_FILES_SINCE,
    Migration,
    SqlFunction,
    load_functions,
    load_migrations,
    migrate,
    read_functions,
)
from pipeline.errors import ConfigError
from tests.conftest import _with_database
from tests.test_schema import SNAPSHOT, schema_dump


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
        with pytest.raises(ConfigError, match="was changed after it was applied"):
            await migrate(connection)
    finally:
        await connection.close()


def _use_functions(monkeypatch: pytest.MonkeyPatch, files: dict[str, str | None]) -> None:
    """The function files as shipped, with `files` changed (a name to its new text, or to
    None: the file is gone)."""
    shipped = {name: function.sql for name, function in load_functions().items()}
    shipped.update(files)
    functions = {name: SqlFunction(name, sql) for name, sql in shipped.items() if sql is not None}
    monkeypatch.setattr("pipeline.db.migrate.load_functions", lambda: functions)


def _use_migrations(monkeypatch: pytest.MonkeyPatch, *extra: Migration) -> None:
    """The migrations as shipped, and `extra` after them."""
    migrations = [*load_migrations(), *extra]
    monkeypatch.setattr("pipeline.db.migrate.load_migrations", lambda: migrations)


def _refusal_reworded(sql: str) -> str:
    assert "cannot go from" in sql
    return sql.replace("cannot go from", "may not go from")


async def _illegal_move_error(connection: asyncpg.Connection) -> str:
    """The database's refusal of an illegal state change, in a transaction rolled back."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        service = await connection.fetchval(
            "INSERT INTO services (name, repository) VALUES ('web', 'o/web') RETURNING id"
        )
        deployment = await connection.fetchval(
            "INSERT INTO deployments (service_id) VALUES ($1) RETURNING id", service
        )
        with pytest.raises(asyncpg.CheckViolationError) as raised:
            await connection.execute(
                "UPDATE deployments SET status = 'succeeded' WHERE id = $1", deployment
            )
        return str(raised.value)
    finally:
        await transaction.rollback()


async def _received(connection: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    rows = await connection.fetch("SELECT name, checksum, applied_at FROM schema_functions")
    return {row["name"]: row for row in rows}


async def test_an_installed_database_reaches_the_schema_of_a_fresh_one(empty_database: str) -> None:
    """A database migrated before function files existed (no schema_functions) takes every
    file once and ends with exactly the schema of the snapshot."""
    connection = await asyncpg.connect(empty_database)
    try:
        await connection.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        functions = load_functions()
        for migration in load_migrations():
            async with connection.transaction():
                await connection.execute(migration.expanded(functions))
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
        assert await migrate(connection) == []
        assert await schema_dump(connection) == SNAPSHOT.read_text(encoding="utf-8")
        received = await _received(connection)
        assert {name: row["checksum"] for name, row in received.items()} == {
            name: function.checksum for name, function in load_functions().items()
        }
    finally:
        await connection.close()


async def test_a_changed_function_file_reaches_an_installed_database_once(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        await migrate(connection)
        name = "deployments_refuse_transition"
        changed = _refusal_reworded(load_functions()[name].sql)
        _use_functions(monkeypatch, {name: changed})
        assert await migrate(connection) == []  # no migration: the file alone changed
        assert "may not go from queued to succeeded" in await _illegal_move_error(connection)
        first = (await _received(connection))[name]
        assert first["checksum"] == SqlFunction(name, changed).checksum
        await migrate(connection)
        assert (await _received(connection))[name]["applied_at"] == first["applied_at"]
    finally:
        await connection.close()


async def test_a_function_whose_shape_changes_needs_a_migration(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other arguments or another result type: refused with what to do, and nothing of the
    run applied; with a migration that drops the old function, applied."""
    connection = await asyncpg.connect(empty_database)
    try:
        await migrate(connection)
        before = await _received(connection)
        lock = load_functions()["click_deploy_target_lock"].sql
        refusal = _refusal_reworded(load_functions()["deployments_refuse_transition"].sql)
        other_result = lock.replace("RETURNS void", "RETURNS bigint")
        _use_functions(monkeypatch, {"click_deploy_target_lock": other_result})
        with pytest.raises(ConfigError, match="cannot change return type") as raised:
            await migrate(connection)
        assert "needs a migration that drops the old function" in str(raised.value)
        broken = lock.replace("hashtextextended(", "hashtextextended((")
        _use_functions(monkeypatch, {"click_deploy_target_lock": broken})
        with pytest.raises(
            ConfigError, match=r"target_lock\.sql cannot be applied: syntax"
        ) as raised:
            await migrate(connection)
        assert "needs a migration" not in str(raised.value)  # a typo, not a change of shape

        more_arguments = lock.replace(
            "p_environment text)", "p_environment text, p_kind text DEFAULT 'target')"
        )
        _use_functions(
            monkeypatch,
            {"click_deploy_target_lock": more_arguments, "deployments_refuse_transition": refusal},
        )
        with pytest.raises(ConfigError, match="would leave several functions") as raised:
            await migrate(connection)
        assert "click_deploy_target_lock(bigint,text)" in str(raised.value)
        assert await _received(connection) == before  # one transaction: neither file applied
        assert "cannot go from" in await _illegal_move_error(connection)

        _use_migrations(
            monkeypatch,
            Migration(
                9001,
                "target_lock_kind",
                "DROP FUNCTION IF EXISTS click_deploy_target_lock(bigint, text);\n"
                "\\ir ../functions/click_deploy_target_lock.sql\n",
            ),
        )
        assert [m.version for m in await migrate(connection)] == [9001]
        signatures = await connection.fetch(
            "SELECT oid::regprocedure::text AS s FROM pg_proc WHERE proname = $1",
            "click_deploy_target_lock",
        )
        assert [row["s"] for row in signatures] == ["click_deploy_target_lock(bigint,text,text)"]
        assert "may not go from" in await _illegal_move_error(connection)
    finally:
        await connection.close()


LABEL_FUNCTION = """CREATE OR REPLACE FUNCTION click_deploy_test_label(p_id integer)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT label FROM test_items WHERE id = p_id
$$;
"""


async def test_a_migration_includes_a_function_file_as_it_is_today(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a fresh database an old migration replays with today's function file, whose body
    may use a column a later migration adds; the body is checked once that exists. The
    checksum is the migration's own text. A file that is gone is forgotten."""
    including = Migration(
        9001,
        "test_items",
        "CREATE TABLE test_items (id integer PRIMARY KEY);\n"
        "\\ir ../functions/click_deploy_test_label.sql\n",
    )
    adding = Migration(
        9002,
        "test_items_label",
        "ALTER TABLE test_items ADD COLUMN label text;\n"
        "INSERT INTO test_items VALUES (1, click_deploy_test_label(1)), (2, 'two');\n",
    )
    _use_functions(monkeypatch, {"click_deploy_test_label": LABEL_FUNCTION})
    _use_migrations(monkeypatch, including, adding)
    connection = await asyncpg.connect(empty_database)
    try:
        applied = await migrate(connection)
        assert [m.version for m in applied][-2:] == [9001, 9002]
        assert await connection.fetchval("SELECT click_deploy_test_label(2)") == "two"
        checksum = await connection.fetchval(
            "SELECT checksum FROM schema_migrations WHERE version = 9001"
        )
        assert checksum == including.checksum
        assert "click_deploy_test_label" in await _received(connection)

        _use_functions(monkeypatch, {"click_deploy_test_label": None})
        _use_migrations(
            monkeypatch,
            including,
            adding,
            Migration(9003, "no_label", "DROP FUNCTION click_deploy_test_label(integer);\n"),
        )
        assert [m.version for m in await migrate(connection)] == [9003]
        assert "click_deploy_test_label" not in await _received(connection)
    finally:
        await connection.close()


async def test_code_behind_the_database_leaves_its_functions_alone(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older release started against a database that newer code migrated must not put
    its older functions back."""
    connection = await asyncpg.connect(empty_database)
    try:
        await migrate(connection)
        await connection.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'newer', 'x')"
        )
        name = "deployments_refuse_transition"
        _use_functions(monkeypatch, {name: _refusal_reworded(load_functions()[name].sql)})
        assert await migrate(connection) == []
        assert "cannot go from" in await _illegal_move_error(connection)
    finally:
        await connection.close()


def test_function_files_hold_the_one_function_they_are_named_for(tmp_path: Path) -> None:
    (tmp_path / "click_deploy_a.sql").write_text(LABEL_FUNCTION)
    with pytest.raises(ConfigError, match=r"one CREATE OR REPLACE FUNCTION click_deploy_a\("):
        read_functions(tmp_path)
    (tmp_path / "click_deploy_a.sql").write_text(
        LABEL_FUNCTION.replace("OR REPLACE ", "").replace("test_label", "a")
    )
    with pytest.raises(ConfigError, match="must hold one CREATE OR REPLACE FUNCTION"):
        read_functions(tmp_path)
    (tmp_path / "click_deploy_a.sql").write_text(
        LABEL_FUNCTION.replace("test_label", "a") + LABEL_FUNCTION
    )
    with pytest.raises(ConfigError, match="it defines"):
        read_functions(tmp_path)
    (tmp_path / "click_deploy_a.sql").write_text(LABEL_FUNCTION.replace("test_label", "a"))
    (tmp_path / "notes.txt").write_text("not a function file")
    assert list(read_functions(tmp_path)) == ["click_deploy_a"]


def test_a_migration_may_include_function_files_and_nothing_else() -> None:
    functions = {"click_deploy_test_label": SqlFunction("click_deploy_test_label", LABEL_FUNCTION)}
    good = Migration(9001, "ok", "SELECT 1;\n\\ir ../functions/click_deploy_test_label.sql\n")
    assert LABEL_FUNCTION in good.expanded(functions)
    assert "\\ir" not in good.expanded(functions)
    missing = Migration(9002, "missing", "\\ir ../functions/click_deploy_nothing.sql\n")
    with pytest.raises(ConfigError, match=r"9002_missing, line 1: there is no function file"):
        missing.expanded(functions)
    other = Migration(9003, "other", "SELECT 1;\n\\i /etc/passwd\n")
    with pytest.raises(
        ConfigError, match=r"9003_other, line 2: '\\\\i /etc/passwd' is not understood"
    ):
        other.expanded(functions)


def test_a_new_migration_writes_no_function_itself() -> None:
    """From FUNCTION_FILES_SINCE on, a function is written in its file only: a migration's
    own copy would be overwritten by the file on the next start, and a function dropped
    while its file remains would come back."""
    functions = load_functions()
    copied = Migration(
        FUNCTION_FILES_SINCE, "copied", load_functions()["click_deploy_target_lock"].sql
    )
    with pytest.raises(ConfigError, match="defines the function click_deploy_target_lock"):
        copied.check_functions(functions)
    dropped = Migration(
        FUNCTION_FILES_SINCE + 1,
        "dropped",
        "\\ir ../functions/click_deploy_target_lock.sql\n"
        "DROP FUNCTION click_deploy_target_lock(bigint, text);\n",
    )
    with pytest.raises(ConfigError, match="would create it again: delete the file"):
        dropped.check_functions(functions)
    reshaped = Migration(
        FUNCTION_FILES_SINCE + 2,
        "reshaped",
        "DROP FUNCTION IF EXISTS click_deploy_target_lock(bigint, text);\n"
        "\\ir   ../functions/click_deploy_target_lock.sql\n",
    )
    reshaped.check_functions(functions)
    gone = Migration(FUNCTION_FILES_SINCE + 3, "gone", "DROP FUNCTION click_deploy_a(integer);\n")
    gone.check_functions(functions)
    old = Migration(FUNCTION_FILES_SINCE - 1, "old", copied.sql)  # the copies made before
    old.check_functions(functions)
    for migration in load_migrations():
        migration.check_functions(functions)
