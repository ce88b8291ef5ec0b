"""Closed pull requests: the preview stops serving (its container or Swarm service and its
route), its tags leave the registry, and its GitHub Deployments become inactive."""

from __future__ import annotations

import asyncpg
import structlog

from bot.github.models import Repo
from bot.github.plan import After, Context
from bot.reporting.github_deployments import retire_environment
from pipeline.db.queries import q
from pipeline.errors import ClickDeployError
from pipeline.models import Service
from pipeline.registry import RegistryClient, RegistryError, RegistryNotFound, parse_reference
from pipeline.release import ReleaseStore, stop_environment
from pipeline.settings import Settings

log = structlog.get_logger(__name__)


def delete_preview_images(
    settings: Settings, pool: asyncpg.Pool, service: Service, environment: str
) -> After:
    """The preview stops serving, then every image tag it got leaves the registry (after
    the answer; GitHub and GitLab alike)."""

    async def run() -> None:
        try:
            stopped = await stop_environment(
                service.id,
                service.name,
                environment,
                service.options.release,
                settings,
                ReleaseStore(pool),
                lambda line: log.info(line, service=service.name, environment=environment),
            )
            if stopped:
                log.info("preview stopped", service=service.name, environment=environment)
        except ClickDeployError as error:
            log.warning("preview not stopped", service=service.name, error=str(error))
        if settings.registry_url is None:
            return
        rows = await pool.fetch(q("forge_environment_images"), service.id, environment)
        if not rows:
            return
        async with RegistryClient(
            settings.registry_url, settings.registry_username, settings.registry_password
        ) as registry:
            for row in rows:
                reference = parse_reference(row["image"])
                try:
                    await registry.delete_tag(reference.repository, reference.tag or "")
                    log.info("preview image deleted", service=service.name, image=row["image"])
                except RegistryNotFound:
                    pass
                except RegistryError as error:
                    log.warning("preview image not deleted", image=row["image"], error=str(error))

    return run


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
