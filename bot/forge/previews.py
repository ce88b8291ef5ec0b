"""A closed preview's image tags leave the registry (after the answer; every forge)."""

from __future__ import annotations

import asyncpg
import structlog

from bot.forge.intent import After
from pipeline.db.queries import q
from pipeline.models import Service
from pipeline.registry import RegistryClient, RegistryError, RegistryNotFound, parse_reference
from pipeline.settings import Settings

log = structlog.get_logger(__name__)


def delete_preview_images(
    settings: Settings, pool: asyncpg.Pool, service: Service, environment: str
) -> After:
    """Every image tag a preview got leaves the registry (after the answer; GitHub and
    GitLab alike)."""

    async def run() -> None:
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
