"""The GitLab feature for `serve`: the webhook route, the python-gitlab client, and the
reporter loop (only when GITLAB_TOKEN is set)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from bot.gitlab import credentials
from bot.gitlab.api import GitLabApi
from bot.gitlab.webhook import GITLAB_STATE, GitLabState, gitlab_webhook, refuse_early
from bot.reporting.gitlab import TARGET, GitLabReporter
from bot.reporting.loop import run_reporter
from bot.request_body import answer_expect
from bot.runtime import Runtime


def setup(app: web.Application, runtime: Runtime) -> None:
    credentials.register()  # GITLAB_TOKEN clones provider-gitlab services
    # The route reads its own body (up to WEBHOOK_MAX_BYTES), not through client_max_size.
    app.router.add_post(
        "/webhooks/gitlab", gitlab_webhook, expect_handler=answer_expect(refuse_early)
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        settings = runtime.settings
        api = GitLabApi(settings) if settings.gitlab_token is not None else None
        state = GitLabState(runtime, api)
        app[GITLAB_STATE] = state
        stop = asyncio.Event()
        reporter: asyncio.Task[None] | None = None
        if api is not None:
            send = GitLabReporter(settings, runtime.pool, api)
            reporter = asyncio.create_task(run_reporter(runtime.pool, settings, TARGET, send, stop))
        yield
        stop.set()
        if reporter is not None:
            await reporter
        if state.background:
            await asyncio.wait(state.background, timeout=10)

    app.cleanup_ctx.append(lifecycle)
