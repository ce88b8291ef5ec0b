"""While the database is away (a PostgreSQL restart, a failover), every route answers
503 with Retry-After and the process logs one warning line, instead of aiohttp's bare 500
and a traceback per request. Nothing was stored, so nothing was acknowledged: GitHub,
GitLab, Slack or an API client is told to send again, and the pool reconnects by itself
when the database is back."""

from __future__ import annotations

import aiohttp
import asyncpg
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from bot.api.errors import error_response
from bot.runtime import Runtime

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 5

# What asyncpg raises when the server is down, shutting down or starting, or ended the
# connection (InternalClientError: ended while idle, not yet noticed), and the socket
# errors of the pool's reconnects (refused; reset by a server shutting down).
UNAVAILABLE = (
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


@web.middleware
async def database_unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except UNAVAILABLE as error:
        client_gone = request.transport is None or request.transport.is_closing()
        if client_gone or isinstance(error, aiohttp.ClientError):
            raise  # nobody to answer, or an HTTP client's error its caller did not handle
        log.warning(
            "database unavailable: answered 503",
            http_method=request.method,
            http_path=request.path,
            error=f"{type(error).__name__}: {error}"[:300],
        )
        message = "the database is unavailable; try again shortly"
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if request.path.startswith("/api/"):
            return error_response(503, message, "unavailable", headers)
        return web.json_response({"message": message}, status=503, headers=headers)


def setup(app: web.Application, _runtime: Runtime) -> None:
    # Innermost: answers before the API's catch-all turns the fault into a 500.
    app.middlewares.append(database_unavailable)
