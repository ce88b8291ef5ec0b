"""The checks of what click-deploy depends on, shared by `/readyz` and `click-deploy doctor`.

One async function per dependency, each returning `CheckResult`s (name, level, detail, fix)
and never raising: a fault is an answer of the check. Each request is bounded by the
check's `patience` (seconds), so a dependency that hangs costs at most that long. Only
what is configured is reached; the rest is a "not configured" result, not a failure.

Details and fixes name variables and hosts, never secret values (`doctor` also passes every
line through the log redactor).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from urllib.parse import urlsplit

import aiohttp
import asyncpg

from pipeline.buildkit.factory import builder_addresses
from pipeline.db.migrate import load_migrations
from pipeline.db.queries import q
from pipeline.errors import ConfigError
from pipeline.registry import (
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryForbidden,
    RegistryUnavailable,
)
from pipeline.settings import Settings, load_settings

# The Engine API paths the engine transport uses (pipeline.buildkit.engine.API_VERSION).
ENGINE_API_NEEDED = (1, 41)


class Level(StrEnum):
    PASS = "pass"
    WARN = "warn"  # works, but something a person should know (and may fix)
    FAIL = "fail"
    UNCONFIGURED = "not configured"


@dataclass(frozen=True)
class CheckResult:
    name: str
    level: Level
    detail: str
    fix: str = ""  # what to do about a failure or a warning; empty when all is well

    @property
    def ok(self) -> bool:
        """Nothing to stop on: passed, a warning, or not configured."""
        return self.level is not Level.FAIL


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Level.PASS, detail)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, Level.FAIL, detail, fix)


def fault(error: BaseException, patience: float) -> str:
    """An exception as a short line: its type and first line, or the time limit it hit."""
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        return f"no answer within {patience:g} s"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# --------------------------------------------------------------------------- settings


def check_settings() -> tuple[CheckResult, Settings | None]:
    """The settings from the environment and .env, validated as every command reads them."""
    try:
        settings = load_settings()
    except ConfigError as error:
        fix = "correct the variable it names (environment or .env); see docs/configuration.md"
        return failed("settings", str(error), fix), None
    return passed("settings", "valid"), settings


# --------------------------------------------------------------------------- database


@cache
def expected_migrations() -> frozenset[int]:
    """The migration versions this code ships (read once: they are package files)."""
    return frozenset(migration.version for migration in load_migrations())


DATABASE_FIX = "start PostgreSQL, or correct DATABASE_URL (host, port, user, password, database)"


async def check_database(
    pool: asyncpg.Pool, patience: float, where: str | None = None
) -> list[CheckResult]:
    """One query: the database answers, and every migration of this code is applied."""
    reached = passed("database", f"{where}: reachable" if where else "ok")
    try:
        rows = await asyncio.wait_for(pool.fetch(q("migrations_applied")), patience)
    except asyncpg.UndefinedTableError:
        return [
            reached,
            # The detail says what to do: readyz shows no fix.
            failed("migrations", "no schema_migrations table: run click-deploy migrate", ""),
        ]
    except Exception as error:  # any fault is an answer of the check, never a crash
        detail = f"unreachable: {fault(error, patience)}"
        return [
            failed("database", f"{where}: {detail}" if where else detail, DATABASE_FIX),
            failed("migrations", "unknown: the database is unreachable", DATABASE_FIX),
        ]
    applied = {int(row["version"]) for row in rows}
    expected = expected_migrations()
    missing = sorted(expected - applied)
    ahead = sorted(applied - expected)
    if missing:
        names = ", ".join(f"{version:04d}" for version in missing)
        return [reached, failed("migrations", f"missing {names}", "run click-deploy migrate")]
    detail = f"current ({max(expected, default=0):04d})"
    if ahead:
        # A newer replica migrated first (a rolling upgrade): this one still works.
        detail += f"; the database is ahead: {', '.join(f'{v:04d}' for v in ahead)}"
    return [reached, passed("migrations", detail)]


def database_label(url: str) -> str:
    """Where a database URL points, without its user or password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"PostgreSQL at {host}{port}{parts.path or ''}"


async def check_database_url(
    url: str, patience: float, label: str | None = None
) -> list[CheckResult]:
    """`check_database` through a connection of its own (doctor has no pool); `label` says
    where the database is (default: its host, port and name)."""
    label = label or database_label(url)
    try:
        pool = await asyncpg.create_pool(url, min_size=0, max_size=1, timeout=patience)
    except Exception as error:  # a URL asyncpg refuses outright
        detail = f"{label}: {fault(error, patience)}"
        return [
            failed("database", detail, DATABASE_FIX),
            failed("migrations", "unknown: the database is unreachable", DATABASE_FIX),
        ]
    try:
        return await check_database(pool, patience, where=label)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pool.close(), patience)


# --------------------------------------------------------------------------- builders


def _engine_session(docker_host: str, patience: float) -> tuple[aiohttp.ClientSession, str]:
    parts = urlsplit(docker_host)
    connector: aiohttp.BaseConnector
    if parts.scheme == "unix":
        connector = aiohttp.UnixConnector(path=parts.path)
        base = "http://docker"
    else:
        connector = aiohttp.TCPConnector()
        base = f"http://{parts.netloc}"
    client_timeout = aiohttp.ClientTimeout(total=patience)
    return aiohttp.ClientSession(connector=connector, timeout=client_timeout), base


def _api_version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return ()


async def check_engine(docker_host: str, patience: float) -> CheckResult:
    """The Docker engine answers /_ping, and its API has the BuildKit build click-deploy
    uses (/version: API 1.41 or newer, a Linux engine)."""
    fix = "start the Docker engine, or correct DOCKER_HOST"
    where = f"docker engine at {docker_host}"
    session, base = _engine_session(docker_host, patience)
    try:
        async with session:
            async with session.get(f"{base}/_ping") as response:
                body = (await response.text()).strip()
                if response.status != 200:
                    return failed("builder", f"{where} answered {response.status}", fix)
            async with session.get(f"{base}/version") as response:
                version = await response.json(content_type=None)
    except Exception as error:  # any fault is an answer of the check
        return failed("builder", f"{where}: {fault(error, patience)}", fix)
    api = str(version.get("ApiVersion", "")) if isinstance(version, dict) else ""
    system = str(version.get("Os", "linux")) if isinstance(version, dict) else "linux"
    if _api_version(api) < ENGINE_API_NEEDED:
        needed = ".".join(map(str, ENGINE_API_NEEDED))
        return failed(
            "builder",
            f"{where} speaks API {api or 'unknown'}; builds need {needed} (Docker 20.10)",
            "upgrade the Docker engine to 20.10 or newer",
        )
    if system != "linux":
        return failed(
            "builder", f"{where} runs {system} containers", "point DOCKER_HOST at a Linux engine"
        )
    return passed("builder", f"{where}: {body or 'OK'}")


async def check_buildkitd(address: str, patience: float) -> CheckResult:
    """buildkitd speaks gRPC; a connect shows it listens (the bot carries no gRPC client)."""
    fix = "start buildkitd, or correct BUILDKIT_ADDRESS"
    parts = urlsplit(address)
    try:
        if parts.scheme == "unix":
            opening = asyncio.open_unix_connection(parts.path)
        elif parts.scheme == "tcp" and parts.hostname and parts.port:
            opening = asyncio.open_connection(parts.hostname, parts.port)
        else:
            return passed("builder", f"buildkitd at {address}: not checked (transport)")
        _reader, writer = await asyncio.wait_for(opening, patience)
    except Exception as error:  # any fault is an answer of the check
        return failed("builder", f"buildkitd at {address}: {fault(error, patience)}", fix)
    writer.close()
    # Closing a probe connection cannot make the daemon less ready.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), patience)
    return passed("builder", f"buildkitd at {address}: accepts connections")


async def check_builders(settings: Settings, patience: float) -> list[CheckResult]:
    """Every configured BuildKit daemon (DOCKER_HOST or BUILDKIT_ADDRESS), probed at once."""
    try:
        addresses = builder_addresses(settings)
    except ConfigError as error:
        variable = "DOCKER_HOST" if settings.builder == "docker" else "BUILDKIT_ADDRESS"
        return [failed("builder", str(error), f"correct {variable}")]
    probe = check_engine if settings.builder == "docker" else check_buildkitd
    return list(await asyncio.gather(*(probe(address, patience) for address in addresses)))


# --------------------------------------------------------------------------- registry


async def check_registry(settings: Settings, patience: float) -> CheckResult:
    """Log in to REGISTRY_URL, push a tiny blob into the project and delete it again. A
    registry that refuses the delete still takes pushes: a warning."""
    if settings.registry_url is None:
        return CheckResult(
            "registry", Level.UNCONFIGURED, "not configured", "set REGISTRY_URL to push images"
        )
    repository = f"{settings.registry_project}/click-deploy-doctor"
    blob = f"click-deploy doctor {secrets.token_hex(8)}\n".encode()
    client = RegistryClient(
        settings.registry_url,
        settings.registry_username,
        settings.registry_password,
        timeout=patience,
    )
    who = f" as {settings.registry_username}" if settings.registry_username else ""
    async with client:
        try:
            digest = await asyncio.wait_for(client.upload_blob(repository, blob), patience * 2)
        except RegistryAuthError as error:
            return failed("registry", str(error), "correct REGISTRY_USERNAME/REGISTRY_PASSWORD")
        except RegistryForbidden as error:
            return failed("registry", str(error), f"let the user push to {repository}")
        except (RegistryUnavailable, TimeoutError) as error:
            detail = str(error) if isinstance(error, RegistryError) else fault(error, patience)
            return failed("registry", detail, "start the registry, or correct REGISTRY_URL")
        except RegistryError as error:
            return failed("registry", str(error), "check REGISTRY_URL and REGISTRY_PROJECT")
        pushed = f"{client.registry}{who}: pushed a test blob to {repository}"
        try:
            await asyncio.wait_for(client.delete_blob(repository, digest), patience)
        except (RegistryError, TimeoutError) as error:
            detail = str(error) if isinstance(error, RegistryError) else fault(error, patience)
            return CheckResult(
                "registry",
                Level.WARN,
                f"{pushed}, but could not delete it: {detail}",
                "if it refuses to delete images too, closed previews' images stay: allow "
                "deletes (distribution: storage.delete.enabled: true); the test blob goes at "
                "the registry's next garbage collection",
            )
    return passed("registry", f"{pushed} and deleted it")


# --------------------------------------------------------------------------- in parallel


async def gather_checks(*checks: Awaitable[CheckResult | list[CheckResult]]) -> list[CheckResult]:
    """Run checks at once; their results in the order given."""
    results: list[CheckResult] = []
    for outcome in await asyncio.gather(*checks):
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    return results
