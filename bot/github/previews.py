"""Preview images: when a pull request closes, its preview's tags leave the registry."""

from __future__ import annotations

import structlog

from bot.github.plan import After, Context
from pipeline.db.queries import q
from pipeline.models import Service
from pipeline.registry import RegistryClient, RegistryError, RegistryNotFound, parse_reference

log = structlog.get_logger(__name__)


def delete_preview_images(context: Context, service: Service, environment: str) -> After:
    async def run() -> None:
        settings = context.settings
        if settings.registry_url is None:
            return
        rows = await context.pool.fetch(q("forge_environment_images"), service.id, environment)
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
