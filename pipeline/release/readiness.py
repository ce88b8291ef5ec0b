"""/readyz and `doctor` for release targets: each target some service is configured for
can be reached (Docker engines, Caddy's admin API, Swarm mode), or says what is missing
(the webhook key). A deploy hook itself is never called: a probe must not deploy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from pipeline.errors import ClickDeployError
from pipeline.release.config import ReleaseConfig
from pipeline.release.docker import caddy_for, engines_for
from pipeline.settings import Settings

CHECK_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class TargetCheck:
    name: str  # "release docker unix:///…", "release caddy", "release webhook"
    ok: bool
    detail: str


async def _probe(name: str, probe: Awaitable[object]) -> TargetCheck:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return TargetCheck(name, False, f"no answer within {CHECK_TIMEOUT_SECONDS:g} s")
    except (ClickDeployError, OSError) as error:
        return TargetCheck(
            name, False, str(error).splitlines()[0] if str(error) else type(error).__name__
        )
    return TargetCheck(name, True, "ok")


async def check_targets(settings: Settings, configs: Iterable[ReleaseConfig]) -> list[TargetCheck]:
    """One check per distinct thing the configured targets need, run concurrently."""
    from pipeline.release.swarm import swarm_active  # swarm builds on docker's helpers

    probes: dict[str, Awaitable[object]] = {}
    webhook = False
    for config in configs:
        if config.target in ("docker", "swarm"):
            for engine in engines_for(config, settings):
                key = f"release {config.target} engine {engine.address}"
                if key not in probes:
                    probes[key] = (
                        engine.ping() if config.target == "docker" else swarm_active(engine)
                    )
            if config.target == "docker" and "release caddy" not in probes:
                probes["release caddy"] = caddy_for(settings).ping()
        elif config.target == "webhook":
            webhook = True
    checks = list(await asyncio.gather(*(_probe(name, probe) for name, probe in probes.items())))
    if webhook:
        secret = settings.release_webhook_secret
        ready = secret is not None and bool(secret.get_secret_value())
        checks.append(
            TargetCheck(
                "release webhook",
                ready,
                "ok"
                if ready
                else "RELEASE_WEBHOOK_SECRET is not set: release webhooks cannot be signed",
            )
        )
    return checks
