"""Wiring: when CENTRIFUGO_API_URL and CENTRIFUGO_API_KEY are set, this process's
publisher hears its LogHub (set up by bot/api/app.py, before this) and runs with the app."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bot.api.stream import HUB
from bot.centrifugo.publisher import Publisher, configured
from bot.runtime import Runtime

PUBLISHER_KEY = web.AppKey("centrifugo_publisher", Publisher)


def setup(app: web.Application, runtime: Runtime) -> None:
    if not configured(runtime.settings):
        return
    publisher = Publisher(runtime.settings, app[HUB], runtime.url)
    app[PUBLISHER_KEY] = publisher
    app[HUB].observers.append(publisher)

    async def run(_app: web.Application) -> AsyncIterator[None]:
        await publisher.start()
        yield
        await publisher.stop()

    app.cleanup_ctx.append(run)
