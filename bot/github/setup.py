"""The GitHub feature for `serve`: the webhook route, one HTTP session, the App's tokens,
and the reporter loop (only when the App's credentials are configured)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from bot.forge import webhook
from bot.forge.webhook import WebhookState
from bot.github import credentials, manifest
from bot.github.auth import AppAuth
from bot.github.webhook import GITHUB_WEBHOOK, GitHubWebhook
from bot.reporting.github import TARGET, GitHubReporter
from bot.reporting.loop import run_reporter
from bot.runtime import Runtime


def app_auth(runtime: Runtime) -> AppAuth | None:
    settings = runtime.settings
    if settings.github_app_id and settings.github_private_key is not None:
        return AppAuth(settings)
    return None


def setup(app: web.Application, runtime: Runtime) -> None:
    credentials.register()  # installation tokens clone provider-github services
    webhook.mount(app, "/webhooks/github", GITHUB_WEBHOOK)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        auth = app_auth(runtime)
        state = WebhookState(runtime, GitHubWebhook(runtime, session, auth))
        app[GITHUB_WEBHOOK] = state
        stop = asyncio.Event()
        reporter: asyncio.Task[None] | None = None
        if auth is not None:
            send = GitHubReporter(runtime.settings, runtime.pool, session, auth)
            reporter = asyncio.create_task(
                run_reporter(runtime.pool, runtime.settings, TARGET, send, stop)
            )
        yield
        stop.set()
        if reporter is not None:
            await reporter
        await state.drain()
        await session.close()

    app.cleanup_ctx.append(lifecycle)
    manifest.setup(app, runtime)  # GET /github/setup: the App from app.yml in one click
