"""Wiring the REST API into the HTTP server: `setup_api(app, runtime)` (bot/serve.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bot.api import routes, stream, subscription  # noqa: F401  (registers the operations)
from bot.api.auth import SETTINGS_KEY, TOKEN, TOKENS_KEY, may_read, require
from bot.api.errors import json_errors
from bot.api.live import LogHub
from bot.api.openapi import document
from bot.api.operations import OPERATIONS, PREFIX, Handler, Operation, path_id
from bot.api.routes import RUNTIME
from bot.api.stream import HUB
from bot.api.tokens import TokenStore
from bot.runtime import Runtime


def guarded(op: Operation) -> Handler:
    """The operation's handler behind its scope check (or its signed link)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if op.signed_link:
            await may_read(request, "deployment", path_id(request))
        elif op.scope is not None:
            request[TOKEN] = await require(request, op.scope)
        return await op.handler(request)

    handler.__name__ = op.handler.__name__
    return handler


async def openapi(_request: web.Request) -> web.Response:
    return web.json_response(document())


def setup_api(app: web.Application, runtime: Runtime) -> None:
    app.middlewares.append(json_errors)
    app[RUNTIME] = runtime
    app[SETTINGS_KEY] = runtime.settings
    app[TOKENS_KEY] = TokenStore(runtime.pool)
    hub = LogHub(runtime.url, runtime.store, runtime.settings.log_viewer_buffer)
    app[HUB] = hub

    async def run_hub(_app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        yield
        await hub.stop()

    app.cleanup_ctx.append(run_hub)
    app.router.add_get(PREFIX + "/openapi.json", openapi)
    for op in OPERATIONS:
        app.router.add_route(op.method, op.route, guarded(op), name=op.operation_id)
