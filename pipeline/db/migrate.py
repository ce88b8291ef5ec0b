"""Versioned SQL migrations and the SQL function files, under one advisory lock.

Migrations (migrations/NNNN_name.sql) are applied in order, each in a transaction, and
checksummed: an applied migration never changes. SQL functions live in one file each
(functions/<name>.sql: one CREATE OR REPLACE FUNCTION, the current definition):

- A migration that needs a function at its point in the history (a trigger that executes
  it, a backfill that calls it) includes it with a line `\\ir ../functions/<name>.sql`, as
  psql would. The checksum is over the migration's own text, so a later change to the
  function file leaves every applied migration valid. The file is included with
  check_function_bodies off: a fresh database replays an old migration with today's text,
  whose body may use what a later migration adds (the bodies are checked below).
- After the migrations, every function file whose text differs from what the database
  last received (schema_functions keeps a checksum per file) is applied, with its body
  checked, in one transaction. So a change to a function's body is a change to its file
  and nothing else; a change of its arguments or result type also needs a migration that
  drops the old function (`DROP FUNCTION IF EXISTS`: on a fresh database the function
  already has its new shape by then). A database that has migrations this code does not
  know belongs to newer code: its functions are left alone.
- From FUNCTION_FILES_SINCE on a migration holds no function text of its own, and drops no
  function whose file remains (refused at load). The rules at length: README.md here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg
import structlog

from pipeline.db.queries import q
from pipeline.errors import ConfigError

log = structlog.get_logger(__name__)

# Any constant works; it only has to be the same in every click-deploy process.
MIGRATION_LOCK_KEY = 0x0C11C4DE

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_FUNCTION_FILE = re.compile(r"^([a-z0-9_]+)\.sql$")
_INCLUDE = re.compile(r"^\\ir\s+\.\./functions/([a-z0-9_]+)\.sql\s*$")
_CREATE_FUNCTION = re.compile(
    r"^\s*CREATE\s+(OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\(", re.IGNORECASE | re.MULTILINE
)
_DROP_FUNCTION = re.compile(
    r"^\s*DROP\s+FUNCTION\s+(?:IF\s+EXISTS\s+)?(\w+)", re.IGNORECASE | re.MULTILINE
)
# Migrations before this one carry their functions' text (their checksums are fixed); from
# it on a function is written only in its file.
FUNCTION_FILES_SINCE = 17


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class SqlFunction:
    """functions/<name>.sql: the current definition of the function called `name`."""

    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return _sha256(self.sql)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """Over the migration's own text: an included function file is not part of it."""
        return _sha256(self.sql)

    def check_functions(self, functions: dict[str, SqlFunction]) -> None:
        """A migration writes no function itself (the file would put its old text back on
        the next start), and one that drops a function whose file remains includes it again
        after the drop (or the file would bring the function back)."""
        if self.version < FUNCTION_FILES_SINCE:
            return
        where = f"migration {self.version:04d}_{self.name}"
        defined = _CREATE_FUNCTION.search(self.sql)
        if defined:
            name = defined[2]
            raise ConfigError(
                f"{where} defines the function {name} in its own text: write it in "
                f"functions/{name}.sql and include that with `\\ir ../functions/{name}.sql`"
            )
        for dropped in _DROP_FUNCTION.finditer(self.sql):
            name = dropped[1]
            after = [_INCLUDE.match(line) for line in self.sql[dropped.end() :].splitlines()]
            if name in functions and name not in {match[1] for match in after if match}:
                raise ConfigError(
                    f"{where} drops the function {name}, but functions/{name}.sql would create it "
                    f"again: delete the file, or include it after the drop with "
                    f"`\\ir ../functions/{name}.sql`"
                )

    def expanded(self, functions: dict[str, SqlFunction]) -> str:
        """The SQL to run: each `\\ir` line replaced by the function file it names."""
        lines = []
        for number, line in enumerate(self.sql.splitlines(), start=1):
            if not line.startswith("\\"):
                lines.append(line)
                continue
            match = _INCLUDE.match(line)
            where = f"migration {self.version:04d}_{self.name}, line {number}"
            if match is None:
                raise ConfigError(
                    f"{where}: {line.strip()!r} is not understood; the one command a migration "
                    "may hold is `\\ir ../functions/NAME.sql`"
                )
            function = functions.get(match[1])
            if function is None:
                raise ConfigError(f"{where}: there is no function file functions/{match[1]}.sql")
            lines += [
                "SET LOCAL check_function_bodies = off;",
                function.sql,
                "SET LOCAL check_function_bodies = on;",
            ]
        return "\n".join(lines) + "\n"


@cache
def load_functions() -> dict[str, SqlFunction]:
    """The function files this code ships, by name."""
    return read_functions(resources.files("pipeline.db").joinpath("functions"))


def read_functions(folder: Traversable) -> dict[str, SqlFunction]:
    """The function files in `folder`; each must define exactly the function it is named for."""
    found: dict[str, SqlFunction] = {}
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        match = _FUNCTION_FILE.match(entry.name)
        if not match:
            continue
        sql = entry.read_text(encoding="utf-8")
        defined = _CREATE_FUNCTION.findall(sql)
        if [(bool(replace), name) for replace, name in defined] != [(True, match[1])]:
            raise ConfigError(
                f"functions/{entry.name} must hold one CREATE OR REPLACE FUNCTION {match[1]}(…) "
                f"and nothing else; it defines {[name for _, name in defined] or 'nothing'}"
            )
        found[match[1]] = SqlFunction(match[1], sql)
    return found


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("pipeline.db.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise ConfigError(f"two migrations share a version number: {versions}")
    functions = load_functions()
    for migration in found:  # a mistake fails here, before anything runs
        migration.check_functions(functions)
        migration.expanded(functions)
    return found


async def migrate(connection: asyncpg.Connection) -> list[Migration]:
    """Apply the migrations this database lacks, then the function files that changed;
    return the migrations applied. Safe to run from several processes at once: the
    advisory lock makes them take turns."""
    migrations = load_migrations()
    functions = load_functions()
    applied_now = []
    await connection.execute(q("migration_lock"), MIGRATION_LOCK_KEY)
    try:
        await connection.execute(q("schema_migrations_create"))
        await connection.execute(q("schema_functions_create"))
        rows = await connection.fetch(q("migrations_applied"))
        done = {row["version"]: row for row in rows}
        for migration in migrations:
            row = done.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise ConfigError(
                        f"migration {migration.version:04d}_{migration.name} was changed after "
                        "it was applied; add a new migration instead of editing an old one"
                    )
                continue
            async with connection.transaction():
                await connection.execute(migration.expanded(functions))
                await connection.execute(
                    q("migration_record"), migration.version, migration.name, migration.checksum
                )
            applied_now.append(migration)
        unknown = set(done) - {migration.version for migration in migrations}
        if unknown:
            log.warning(
                "the database has migrations this code lacks; its SQL functions are left alone",
                unknown=sorted(unknown),
            )
        else:
            await _apply_functions(connection, functions)
    finally:
        await connection.execute(q("migration_unlock"), MIGRATION_LOCK_KEY)
    return applied_now


async def _apply_functions(
    connection: asyncpg.Connection, functions: dict[str, SqlFunction]
) -> list[str]:
    """Apply the function files whose text the database has not received yet, in one
    transaction; forget the files that are gone (their migration dropped the function)."""
    received = {
        row["name"]: row["checksum"] for row in await connection.fetch(q("functions_applied"))
    }
    changed = [f for f in functions.values() if received.get(f.name) != f.checksum]
    gone = sorted(set(received) - set(functions))
    if not changed and not gone:
        return []
    async with connection.transaction():
        for function in changed:
            try:
                await connection.execute(function.sql)
            except asyncpg.InvalidFunctionDefinitionError as error:
                # What CREATE OR REPLACE cannot change in place: result type, argument names.
                raise ConfigError(
                    f"functions/{function.name}.sql cannot be applied: {error}. A change of a "
                    "function's arguments or result type needs a migration that drops the old "
                    "function first"
                ) from None
            except asyncpg.PostgresError as error:
                raise ConfigError(
                    f"functions/{function.name}.sql cannot be applied: {error}"
                ) from None
            # CREATE OR REPLACE with other arguments makes a second function beside the old.
            overloads = await connection.fetch(q("function_overloads"), function.name)
            if len(overloads) > 1:
                signatures = ", ".join(row["signature"] for row in overloads)
                raise ConfigError(
                    f"functions/{function.name}.sql would leave several functions of that name "
                    f"({signatures}): a change of a function's arguments needs a migration that "
                    "drops the old function first (DROP FUNCTION IF EXISTS name(old arguments))"
                )
            await connection.execute(q("function_record"), function.name, function.checksum)
        if gone:
            await connection.execute(q("functions_forget"), gone)
    names = [function.name for function in changed]
    if names:
        log.info("SQL functions applied", functions=names)
    return names
