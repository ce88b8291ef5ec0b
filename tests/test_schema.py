"""The schema the migrations and function files make, kept in tests/snapshots/schema.sql so
that a change to it shows in review. After changing a migration or a function file,
regenerate it with

    UPDATE_SCHEMA_SNAPSHOT=1 pytest tests/test_schema.py

and commit the snapshot with the change.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
from pathlib import Path

import asyncpg

from pipeline.db.migrate import load_functions
from pipeline.db.queries import query_names

SNAPSHOT = Path(__file__).parent / "snapshots" / "schema.sql"
UPDATE_COMMAND = "UPDATE_SCHEMA_SNAPSHOT=1 pytest tests/test_schema.py"

# Read from the catalogs rather than from pg_dump, whose output changes with the client's
# version and needs a client as new as the server. Everything in schema public, in a fixed
# order: a table with its columns, constraints, indexes and triggers; then the functions.
_COLUMNS = """
SELECT c.relname AS table_name, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default_value
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
ORDER BY c.relname, a.attnum"""
_CONSTRAINTS = """
SELECT conrelid::regclass::text AS table_name, conname AS name,
       pg_get_constraintdef(oid) AS definition
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
ORDER BY 1, 2"""
_INDEXES = """
SELECT tablename AS table_name, indexname AS name, indexdef AS definition
FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"""
_TRIGGERS = """
SELECT c.relname AS table_name, t.tgname AS name, pg_get_triggerdef(t.oid) AS definition
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
ORDER BY 1, 2"""
_FUNCTIONS = """
SELECT p.proname AS name, p.oid::regprocedure::text AS signature,
       pg_get_functiondef(p.oid) AS definition
FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
ORDER BY 2"""


async def schema_dump(connection: asyncpg.Connection) -> str:
    """The schema as SQL-like text, one statement a block, in a fixed order."""
    by_table: dict[str, list[str]] = {}
    for row in await connection.fetch(_COLUMNS):
        column = f"    {row['name']} {row['type']}"
        if row["not_null"]:
            column += " NOT NULL"
        if row["default_value"] is not None:
            column += f" DEFAULT {row['default_value']}"
        by_table.setdefault(row["table_name"], []).append(column)
    blocks = {
        name: [f"CREATE TABLE {name} (\n" + ",\n".join(columns) + "\n);"]
        for name, columns in by_table.items()
    }
    for row in await connection.fetch(_CONSTRAINTS):
        blocks[row["table_name"]].append(
            f"ALTER TABLE {row['table_name']} ADD CONSTRAINT {row['name']} {row['definition']};"
        )
    for query in (_INDEXES, _TRIGGERS):
        for row in await connection.fetch(query):
            blocks[row["table_name"]].append(f"{row['definition']};")
    parts = ["\n".join(statements) for _, statements in sorted(blocks.items())]
    for row in await connection.fetch(_FUNCTIONS):
        parts.append(row["definition"].strip() + ";")
    text = "\n\n".join(parts) + "\n"
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


async def test_the_schema_matches_its_snapshot(database_url: str) -> None:
    """database_url is a copy of a fresh database that migrate() brought up to date."""
    connection = await asyncpg.connect(database_url)
    try:
        dump = await schema_dump(connection)
    finally:
        await connection.close()
    if os.environ.get("UPDATE_SCHEMA_SNAPSHOT") == "1":
        SNAPSHOT.write_text(dump, encoding="utf-8")
    expected = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            dump.splitlines(keepends=True),
            "tests/snapshots/schema.sql",
            "the migrated database",
        )
    )
    assert not diff, (
        f"the schema differs from its snapshot; if that is meant: {UPDATE_COMMAND}\n{diff}"
    )


async def test_every_function_lives_in_its_own_file(database_url: str) -> None:
    """One function per name, and each has its file: no definition lives only in a migration."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(_FUNCTIONS)
        received = {
            row["name"]: row["checksum"]
            for row in await connection.fetch("SELECT name, checksum FROM schema_functions")
        }
    finally:
        await connection.close()
    names = [row["name"] for row in rows]
    assert len(names) == len(set(names)), f"overloaded functions: {sorted(names)}"
    files = load_functions()
    assert set(names) == set(files)
    assert received == {name: function.checksum for name, function in files.items()}


# A statement that reads or changes the schema's objects, as Python code would spell one.
_SQL_STATEMENT = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|TRUNCATE)\s.*"
    r"\b(FROM|INTO|SET|TABLE|FUNCTION|INDEX|TRIGGER)\b",
    re.DOTALL,
)
REPO = Path(__file__).resolve().parent.parent


def test_every_query_lives_in_queries_sql() -> None:
    """bot/ and pipeline/ run SQL only by name (pipeline/db/queries.sql), so a newcomer finds
    every query in one place; the migrations and function files hold the schema."""
    found = []
    for path in sorted([*REPO.glob("bot/**/*.py"), *REPO.glob("pipeline/**/*.py")]):
        if path.is_relative_to(REPO / "pipeline" / "db"):
            continue
        for node in _string_constants(path):
            if _SQL_STATEMENT.match(node.value):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value[:60]!r}")
    assert not found, "SQL outside pipeline/db/queries.sql:\n" + "\n".join(found)


def _string_constants(path: Path) -> list[ast.Constant]:
    return [
        node
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_every_named_query_is_known_and_used() -> None:
    """A misspelt name would fail only when its code runs; a query no code names is dead."""
    named = query_names()
    sources = sorted([*REPO.glob("bot/**/*.py"), *REPO.glob("pipeline/**/*.py")])
    asked = []
    mentioned = set()
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "q"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                asked.append((f"{path.relative_to(REPO)}:{node.lineno}", node.args[0].value))
        mentioned |= {node.value for node in _string_constants(path)}
    assert asked, "no q(...) calls found: the scan is broken"
    assert [(where, name) for where, name in asked if name not in named] == []
    assert sorted(named - mentioned) == [], "queries.sql names queries no code runs"
