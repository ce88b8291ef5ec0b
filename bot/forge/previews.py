"""Previews, every forge alike: which services have them; a closed preview stops serving
(its containers or Swarm service, and its route) and its image tags leave the registry
(after the answer)."""

from __future__ import annotations

import asyncpg
import structlog

from bot.forge.intent import After
from pipeline.db.queries import q
from pipeline.errors import ClickDeployError
from pipeline.models import Service
from pipeline.registry import RegistryClient, RegistryError, RegistryNotFound, parse_reference
from pipeline.release import ReleaseStore, stop_environment
from pipeline.settings import Settings
from pipeline.store import Store
from pipeline.trigger import Source

log = structlog.get_logger(__name__)


async def preview_services(
    store: Store, source: Source, repository: str, branch: str
) -> list[Service]:
    """The services of `repository` that deploy `branch` and have previews."""
    found = await store.services_for_repository(source, repository, branch)
    return [service for service in found if service.options.previews]


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
