"""`/readyz` for orchestrators: the database answers, its schema is this code's, and the
configured BuildKit answers (with several daemons: at least one; the detail names each one
that is down). `/healthz` (bot.serve.health) only says the process is alive.

The checks are `bot.ops.checks`' (the same ones `click-deploy doctor` runs); readiness runs
the fast, local ones concurrently under a short timeout, so a probe answers within
CHECK_TIMEOUT_SECONDS whatever is down: 200 with the details, or 503 naming what is not
ready. A configured Centrifugo and the services' release targets are shown but never make
the process unready. The registry
and the forges are `doctor`'s: a probe must not push blobs or spend a
vendor's rate limit every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from bot.centrifugo.check import check_centrifugo
from bot.ops.checks import CheckResult, Level, check_builders, check_database
from bot.ops.release_checks import check_release_targets
from bot.runtime import Runtime
from pipeline.settings import Settings

CHECK_TIMEOUT_SECONDS = 2.0

RUNTIME_KEY = web.AppKey("ops_runtime", Runtime)


async def check_buildkit(settings: Settings) -> CheckResult:
    """Every configured daemon, probed at once: ready when one of them answers."""
    checks = await check_builders(settings, CHECK_TIMEOUT_SECONDS)
    if len(checks) == 1:
        only = checks[0]
        return CheckResult("buildkit", only.level, only.detail, only.fix)
    down = [check.detail for check in checks if not check.ok]
    up = [check.detail for check in checks if check.ok]
    detail = f"{len(up)} of {len(checks)} answer"
    if down:
        detail += f"; down: {'; '.join(down)}"
    if up:
        detail += f"; up: {'; '.join(up)}"
    return CheckResult("buildkit", Level.PASS if up else Level.FAIL, detail)


async def readiness(runtime: Runtime) -> tuple[bool, dict[str, Any]]:
    """(ready, body): every check with its detail; `not_ready` names the failing ones."""
    database, buildkit, centrifugo = await asyncio.gather(
        check_database(runtime.pool, CHECK_TIMEOUT_SECONDS),
        check_buildkit(runtime.settings),
        check_centrifugo(runtime.settings, CHECK_TIMEOUT_SECONDS),
    )
    checks = [*database, buildkit]
    failing = [check.name for check in checks if not check.ok]
    # Centrifugo is shown when configured, never a reason to leave the load balancer: only
    # its copy of the logs is late while it is down (PostgreSQL keeps them all).
    if centrifugo.level is not Level.UNCONFIGURED:
        checks.append(centrifugo)
    # Release targets likewise: a target that is down fails the releases that need it.
    with contextlib.suppress(Exception):  # the database check above says why
        services = await asyncio.wait_for(runtime.store.list_services(), CHECK_TIMEOUT_SECONDS)
        checks += await check_release_targets(runtime.settings, services, CHECK_TIMEOUT_SECONDS)
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
