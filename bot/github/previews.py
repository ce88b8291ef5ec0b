"""Closed pull requests: the preview's tags leave the registry, and its GitHub Deployments
become inactive."""

from __future__ import annotations

import structlog

from bot.forge.intent import After
from bot.github.context import Context
from bot.github.models import Repo
from bot.reporting.github_deployments import retire_environment
from pipeline.models import Service

log = structlog.get_logger(__name__)


def retire_preview_deployments(
    context: Context, service: Service, environment: str, repo: Repo
) -> After:
    async def run() -> None:
        if context.auth is None or context.installation_id is None:
            return
        gh = await context.api()
        retired = await retire_environment(
            gh, context.settings, context.pool, repo.owner, repo.name, service, environment
        )
        if retired:
            log.info("preview deployments inactive", service=service.name, count=retired)

    return run
