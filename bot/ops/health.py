"""`/readyz` for orchestrators: the database answers, its schema is this code's, and the
configured BuildKit answers (with several daemons: at least one; the detail names each one
that is down). `/healthz` (bot.serve.health) only says the process is alive.

Every check runs concurrently under a short timeout, so a probe answers within
CHECK_TIMEOUT_SECONDS whatever is down: 200 with the details, or 503 naming what is not
ready."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiohttp import web

from bot.runtime import Runtime
from pipeline.buildkit.factory import builder_addresses
from pipeline.db.migrate import load_migrations
from pipeline.errors import ConfigError
from pipeline.settings import Settings

CHECK_TIMEOUT_SECONDS = 2.0

RUNTIME_KEY = web.AppKey("ops_runtime", Runtime)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@cache
def expected_migrations() -> frozenset[int]:
    """The migration versions this code ships (read once: they are package files)."""
    return frozenset(migration.version for migration in load_migrations())


def _fault(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def check_database(pool: asyncpg.Pool) -> list[Check]:
    """One query: reachable, and every migration of this code applied."""
    try:
        rows = await asyncio.wait_for(
            pool.fetch("SELECT version FROM schema_migrations"), CHECK_TIMEOUT_SECONDS
        )
    except asyncpg.UndefinedTableError:
        return [
            Check("database", True, "ok"),
            Check("migrations", False, "no schema_migrations table: run click-deploy migrate"),
        ]
    except Exception as error:  # any fault is an answer of the probe, never a crash
        return [
            Check("database", False, f"unreachable: {_fault(error)}"),
            Check("migrations", False, "unknown: the database is unreachable"),
        ]
    applied = {int(row["version"]) for row in rows}
    expected = expected_migrations()
    missing = sorted(expected - applied)
    ahead = sorted(applied - expected)
    if missing:
        names = ", ".join(f"{version:04d}" for version in missing)
        return [Check("database", True, "ok"), Check("migrations", False, f"missing {names}")]
    detail = f"current ({max(expected, default=0):04d})"
    if ahead:
        # A newer replica migrated first (a rolling upgrade): this one still works.
        detail += f"; the database is ahead: {', '.join(f'{v:04d}' for v in ahead)}"
    return [Check("database", True, "ok"), Check("migrations", True, detail)]


async def _ping_engine(docker_host: str) -> Check:
    """GET /_ping on the Docker engine: 200 "OK" when it serves API calls."""
    parts = urlsplit(docker_host)
    connector: aiohttp.BaseConnector
    if parts.scheme == "unix":
        connector = aiohttp.UnixConnector(path=parts.path)
        url = "http://docker/_ping"
    else:
        connector = aiohttp.TCPConnector()
        url = f"http://{parts.netloc}/_ping"
    timeout = aiohttp.ClientTimeout(total=CHECK_TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.get(url) as response,
        ):
            body = (await response.text()).strip()
            if response.status == 200:
                return Check("buildkit", True, f"docker engine at {docker_host}: {body or 'OK'}")
            return Check(
                "buildkit", False, f"docker engine at {docker_host} answered {response.status}"
            )
    except Exception as error:  # any fault is an answer of the probe
        return Check("buildkit", False, f"docker engine at {docker_host}: {_fault(error)}")


async def _connect_buildkitd(address: str) -> Check:
    """buildkitd speaks gRPC; a connect shows it listens (no gRPC client in the bot)."""
    parts = urlsplit(address)
    try:
        if parts.scheme == "unix":
            opening = asyncio.open_unix_connection(parts.path)
        elif parts.scheme == "tcp" and parts.hostname and parts.port:
            opening = asyncio.open_connection(parts.hostname, parts.port)
        else:
            return Check("buildkit", True, f"buildkitd at {address}: not checked (transport)")
        _reader, writer = await asyncio.wait_for(opening, CHECK_TIMEOUT_SECONDS)
    except Exception as error:  # any fault is an answer of the probe
        return Check("buildkit", False, f"buildkitd at {address}: {_fault(error)}")
    writer.close()
    # Closing a probe connection cannot make the daemon less ready.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), CHECK_TIMEOUT_SECONDS)
    return Check("buildkit", True, f"buildkitd at {address}: accepts connections")


async def check_buildkit(settings: Settings) -> Check:
    """Every configured daemon, probed at once: ready when one of them answers."""
    try:
        addresses = builder_addresses(settings)
    except ConfigError as error:
        return Check("buildkit", False, str(error))
    probe = _ping_engine if settings.builder == "docker" else _connect_buildkitd
    checks = await asyncio.gather(*(probe(address) for address in addresses))
    if len(checks) == 1:
        return checks[0]
    down = [check.detail for check in checks if not check.ok]
    up = [check.detail for check in checks if check.ok]
    detail = f"{len(up)} of {len(checks)} answer"
    if down:
        detail += f"; down: {'; '.join(down)}"
    if up:
        detail += f"; up: {'; '.join(up)}"
    return Check("buildkit", bool(up), detail)


async def readiness(runtime: Runtime) -> tuple[bool, dict[str, Any]]:
    """(ready, body): every check with its detail; `not_ready` names the failing ones."""
    database, buildkit = await asyncio.gather(
        check_database(runtime.pool), check_buildkit(runtime.settings)
    )
    checks = [*database, buildkit]
    failing = [check.name for check in checks if not check.ok]
    body: dict[str, Any] = {
        "status": "ready" if not failing else "not ready",
        "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in checks},
    }
    if failing:
        body["not_ready"] = failing
    return not failing, body


async def readyz(request: web.Request) -> web.Response:
    ready, body = await readiness(request.app[RUNTIME_KEY])
    return web.json_response(body, status=200 if ready else 503)


def setup(app: web.Application, runtime: Runtime) -> None:
    app[RUNTIME_KEY] = runtime
    app.router.add_get("/readyz", readyz)
