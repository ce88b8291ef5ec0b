"""Release: the verified image goes into service on the service's target (`release.target`):
`none` (the moving tag is the hand-off), `docker` (containers behind Caddy), `swarm` (a
Swarm service) or `webhook` (a signed POST). One entry point for the pipeline (`release`),
one for a closed pull request (`stop_environment`), one for /readyz (`check_targets`)."""

from __future__ import annotations

from pipeline.release.base import Released, ReleaseFailed, ReleaseLog, ReleaseRequest
from pipeline.release.config import ReleaseConfig
from pipeline.release.docker import DockerTarget
from pipeline.release.observe import Observed, observe
from pipeline.release.readiness import TargetCheck, check_targets
from pipeline.release.records import ReleaseRecord, ReleaseStore
from pipeline.release.swarm import SwarmTarget
from pipeline.release.webhook import release_webhook, shown_url
from pipeline.settings import Settings


async def release(
    request: ReleaseRequest, settings: Settings, records: ReleaseStore, log: ReleaseLog
) -> Released | None:
    """Put `request`'s image into service; None for target `none`. Raises ReleaseFailed
    (final: what served before still serves) or a TransientError (tried again)."""
    target = request.config.target
    if target == "none":
        return None
    if target == "docker":
        return await DockerTarget(settings, records, log).release(request)
    if target == "swarm":
        return await SwarmTarget(settings, records, log).release(request)
    released = await release_webhook(request, settings, log)
    await records.switched(
        service_id=request.service_id,
        environment=request.environment,
        deployment_id=request.deployment_id,
        target="webhook",
        image=request.image,
        digest=request.digest,
        engine=None,
        runs_as=released.runs_as,
        url=None,
    )
    return released


async def stop_environment(
    service_id: int,
    service: str,
    environment: str,
    config: ReleaseConfig,
    settings: Settings,
    records: ReleaseStore,
    log: ReleaseLog,
) -> bool:
    """Take an environment out of service (a preview whose pull request closed): route,
    containers or Swarm service, and its release record. Whether anything was running."""
    if config.target == "docker":
        return await DockerTarget(settings, records, log).stop_environment(
            service_id, service, environment, config
        )
    if config.target == "swarm":
        return await SwarmTarget(settings, records, log).stop_environment(
            service_id, service, environment, config
        )
    live = await records.live(service_id, environment)
    if live is not None:
        await records.stopped(live.id)
    return live is not None


__all__ = [
    "Observed",
    "ReleaseConfig",
    "ReleaseFailed",
    "ReleaseRecord",
    "ReleaseRequest",
    "ReleaseStore",
    "Released",
    "TargetCheck",
    "check_targets",
    "observe",
    "release",
    "shown_url",
    "stop_environment",
]
