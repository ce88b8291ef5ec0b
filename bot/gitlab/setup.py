"""The GitLab feature for `serve`: the webhook route, the python-gitlab client, and the
reporter loop (only when GITLAB_TOKEN is set)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from bot.forge import webhook
from bot.forge.webhook import WebhookState
from bot.gitlab import credentials
from bot.gitlab.api import GitLabApi
from bot.gitlab.webhook import GITLAB_WEBHOOK, GitLabWebhook
from bot.reporting.gitlab import TARGET, GitLabReporter
from bot.reporting.loop import run_reporter
from bot.runtime import Runtime


def setup(app: web.Application, runtime: Runtime) -> None:
    credentials.register()  # GITLAB_TOKEN clones provider-gitlab services
    webhook.mount(app, "/webhooks/gitlab", GITLAB_WEBHOOK)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        settings = runtime.settings
        api = GitLabApi(settings) if settings.gitlab_token is not None else None
        state = WebhookState(runtime, GitLabWebhook(runtime, api))
        app[GITLAB_WEBHOOK] = state
        stop = asyncio.Event()
        reporter: asyncio.Task[None] | None = None
        if api is not None:
            send = GitLabReporter(settings, runtime.pool, api)
            reporter = asyncio.create_task(run_reporter(runtime.pool, settings, TARGET, send, stop))
        yield
        stop.set()
        if reporter is not None:
            await reporter
        await state.drain()

    app.cleanup_ctx.append(lifecycle)
