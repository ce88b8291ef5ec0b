"""The GitHub feature for `serve`: the webhook route, one HTTP session, the App's tokens,
and the reporter loop (only when the App's credentials are configured)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from bot.github import credentials, manifest
from bot.github.auth import AppAuth
from bot.github.webhook import GITHUB_STATE, GitHubState, github_webhook, refuse_early
from bot.reporting.github import TARGET, GitHubReporter
from bot.reporting.loop import run_reporter
from bot.request_body import answer_expect
from bot.runtime import Runtime


def app_auth(runtime: Runtime) -> AppAuth | None:
    settings = runtime.settings
    if settings.github_app_id and settings.github_private_key is not None:
        return AppAuth(settings)
    return None


def setup(app: web.Application, runtime: Runtime) -> None:
    credentials.register()  # installation tokens clone provider-github services
    # The route reads its own body (up to WEBHOOK_MAX_BYTES), not through client_max_size.
    app.router.add_post(
        "/webhooks/github", github_webhook, expect_handler=answer_expect(refuse_early)
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        auth = app_auth(runtime)
        state = GitHubState(runtime, session, auth)
        app[GITHUB_STATE] = state
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
        if state.background:
            await asyncio.wait(state.background, timeout=10)
        await session.close()

    app.cleanup_ctx.append(lifecycle)
    manifest.setup(app, runtime)  # GET /github/setup: the App from app.yml in one click
