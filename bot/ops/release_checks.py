"""The release targets the services are configured for (pipeline.release.check_targets),
as check results: shown by /readyz and `click-deploy doctor`. A target that is down fails
the releases that need it, each with its own message; it does not make `serve` unready,
which still takes webhooks and builds."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from bot.ops.checks import CheckResult, Level, failed, fault
from pipeline.db.connect import create_pool
from pipeline.models import Service
from pipeline.release.config import ReleaseConfig
from pipeline.release.readiness import check_targets
from pipeline.settings import Settings
from pipeline.store import Store

log = structlog.get_logger(__name__)

FIX = "start it, or change the service's release target (docs/release.md)"


def _configs(services: list[Service]) -> list[ReleaseConfig]:
    configs: list[ReleaseConfig] = []
    for service in services:
        with contextlib.suppress(Exception):  # an invalid stored config: refused elsewhere
            configs.append(service.options.release)
    return configs


async def check_release_targets(
    settings: Settings, services: list[Service], patience: float
) -> list[CheckResult]:
    """One result per thing a configured target needs; none when no service releases."""
    try:
        targets = await asyncio.wait_for(check_targets(settings, _configs(services)), patience)
    except Exception as error:
        return [
            failed("release", f"the targets could not be checked: {fault(error, patience)}", FIX)
        ]
    return [
        CheckResult(check.name, Level.PASS, check.detail)
        if check.ok
        else failed(check.name, check.detail, FIX)
        for check in targets
    ]


async def check_release_targets_at(
    settings: Settings, database_url: str, patience: float
) -> list[CheckResult]:
    """The same, reading the services from the database at `database_url` (doctor)."""
    try:
        pool = await asyncio.wait_for(create_pool(database_url, 2), patience)
    except Exception:
        return []  # the database check already says why
    try:
        services = await asyncio.wait_for(Store(pool).list_services(), patience)
    except Exception:
        return []  # not migrated yet: no services to check
    finally:
        await pool.close()
    return await check_release_targets(settings, services, patience)
