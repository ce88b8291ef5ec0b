"""What `serve` runs on this machine when it is not configured, as the embedded PostgreSQL
is: a Docker engine (bot/local_engine.py) when neither DOCKER_HOST nor BUILDKIT_ADDRESS is
set, a registry (bot/local_registry.py) when REGISTRY_URL is unset, and the base images
from scripts/infra's mirror when it runs here and BASE_IMAGE_MIRROR is unset. Anything
configured replaces its part. Each part says on stderr what it started and where.

Only for the default WORKER_PIPELINE (the one that builds and pushes) and LOCAL_SERVICES
true: a pipeline that needs no engine or registry gets neither."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from bot import local_engine
from bot.local_engine import LocalEngineUnavailable, engine_answers, ensure_engine, has_bridge
from bot.local_registry import LocalRegistry, LocalRegistryUnavailable, start_registry
from pipeline.settings import Settings

DEFAULT_PIPELINE = Settings.model_fields["worker_pipeline"].default
RECORD = "local-services.json"  # under DATA_DIR: the engine the CLI's `docker run` line names
# scripts/infra's mirror of the base images, when it runs on this machine.
INFRA_MIRROR = "localhost:5000"
INFRA_MIRROR_PROBE = "http://127.0.0.1:5000/v2/library/debian/manifests/bookworm-slim"
MANIFEST_ACCEPT = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.index.v1+json"
)
BASE_IMAGE_SETTINGS = tuple(name for name in Settings.model_fields if name.startswith("base_image"))


@dataclass
class LocalServices:
    settings: Settings  # the configured ones, with what was started filled in
    registry: LocalRegistry | None = None

    async def stop(self) -> None:
        if self.registry is not None:
            await self.registry.stop()


def wanted(settings: Settings) -> bool:
    return settings.local_services and settings.worker_pipeline == DEFAULT_PIPELINE


def engine_configured(settings: Settings) -> bool:
    return settings.builder == "buildkitd" or bool(
        {"docker_host", "buildkit_address"} & settings.model_fields_set
    )


async def _mirror_runs_here() -> bool:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
            session.head(INFRA_MIRROR_PROBE, headers={"Accept": MANIFEST_ACCEPT}) as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def _engine(settings: Settings, updates: dict[str, Any], say: Callable[[str], None]) -> None:
    try:
        host = await ensure_engine(settings.data_dir, say)
    except LocalEngineUnavailable as error:
        say(f"Docker engine: none, deployments will fail until there is one: {error}")
        return
    updates["docker_host"] = host
    await _build_network(settings, host, updates, say)


async def _build_network(
    settings: Settings, host: str, updates: dict[str, Any], say: Callable[[str], None]
) -> None:
    """An engine without a bridge network (dockerd --bridge=none, as scripts/infra and
    this module start it) fails every RUN step on the default network: with BUILD_NETWORK
    unset, builds use this machine's network there instead, and say so."""
    if "build_network" in settings.model_fields_set:
        return
    if await engine_answers(host) and not await has_bridge(host):
        updates["build_network"] = "host"
        say(
            "builds: RUN steps use this machine's network (BUILD_NETWORK=host): the engine "
            "has no bridge network"
        )


async def _registry(
    settings: Settings, updates: dict[str, Any], say: Callable[[str], None]
) -> LocalRegistry | None:
    try:
        registry = await start_registry(settings.data_dir, settings.local_registry_port)
    except LocalRegistryUnavailable as error:
        say(f"registry: none, deployments will fail until there is one: {error}")
        return None
    updates.update(
        registry_url=registry.url,
        registry_username=registry.username,
        registry_password=registry.password,
    )
    how = "started" if registry.process is not None else "already running"
    say(
        f"registry: {how} on {registry.url} (user {registry.username}, password in "
        f"{settings.data_dir / 'registry' / 'credentials.json'}; images in "
        f"{settings.data_dir / 'registry' / 'data'})"
    )
    return registry


async def _base_images(
    settings: Settings, updates: dict[str, Any], say: Callable[[str], None]
) -> None:
    if any(getattr(settings, name) for name in BASE_IMAGE_SETTINGS):
        return
    if await _mirror_runs_here():
        updates["base_image_mirror"] = INFRA_MIRROR
        say(f"base images: from the mirror on {INFRA_MIRROR} (BASE_IMAGE_MIRROR={INFRA_MIRROR})")
    else:
        say(
            "base images: pulled from Docker Hub (python:3.13-slim, node:22-bookworm-slim, "
            "...); on a machine that cannot reach it, set BASE_IMAGE_MIRROR to a registry "
            "that holds them (scripts/infra up builds them into one on localhost:5000)"
        )


async def start_local_services(settings: Settings, say: Callable[[str], None]) -> LocalServices:
    """Start what is missing; the settings that use it."""
    if not wanted(settings):
        return LocalServices(settings)
    updates: dict[str, Any] = {}
    if not engine_configured(settings):
        await _engine(settings, updates, say)
    elif settings.builder == "docker":
        say(f"Docker engine: DOCKER_HOST={settings.docker_host} (configured)")
        if "," not in settings.docker_host:
            await _build_network(settings, settings.docker_host, updates, say)
    else:
        say(f"BuildKit: BUILDKIT_ADDRESS={settings.buildkit_address} (configured)")
    registry = None
    if settings.registry_url is None:
        registry = await _registry(settings, updates, say)
    else:
        say(f"registry: REGISTRY_URL={settings.registry_url} (configured)")
    await _base_images(settings, updates, say)
    # What was started, for the other commands of this DATA_DIR (the password stays in
    # the registry's own 0600 file).
    shown = {name: value for name, value in updates.items() if name != "registry_password"}
    await asyncio.to_thread(_write_record, settings.data_dir / RECORD, shown)
    return LocalServices(settings.model_copy(update=updates), registry)


def _write_record(path: Path, values: dict[str, Any]) -> None:
    path.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")


def _recorded(settings: Settings) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads((settings.data_dir / RECORD).read_text(encoding="utf-8"))
        if isinstance(recorded, dict):
            return recorded
    return {}


def recorded_services(settings: Settings, say: Callable[[str], None]) -> Settings:
    """For `worker` beside `serve` on this machine: the engine, registry and base images
    that serve of the same DATA_DIR started or found, where nothing is configured."""
    if not wanted(settings):
        return settings
    recorded = _recorded(settings)
    updates: dict[str, Any] = {}
    if not engine_configured(settings) and "docker_host" in recorded:
        updates["docker_host"] = str(recorded["docker_host"])
        say(f"Docker engine: {updates['docker_host']}, the one serve uses")
    if recorded.get("build_network") and "build_network" not in settings.model_fields_set:
        updates["build_network"] = str(recorded["build_network"])
    if settings.registry_url is None and "registry_url" in recorded:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            stored = settings.data_dir / "registry" / "credentials.json"
            password = json.loads(stored.read_text(encoding="utf-8"))["password"]
            updates.update(
                registry_url=str(recorded["registry_url"]),
                registry_username=str(recorded["registry_username"]),
                registry_password=SecretStr(str(password)),
            )
            say(f"registry: {recorded['registry_url']}, the one serve started")
    if recorded.get("base_image_mirror") and not any(
        getattr(settings, name) for name in BASE_IMAGE_SETTINGS
    ):
        updates["base_image_mirror"] = str(recorded["base_image_mirror"])
    return settings.model_copy(update=updates)


def run_engine(settings: Settings) -> str:
    """The engine whose images `docker run` starts: DOCKER_HOST's first, the one `serve`
    started or found (recorded under DATA_DIR), or the default socket."""
    if "docker_host" in settings.model_fields_set and settings.builder == "docker":
        return settings.docker_host.split(",")[0].strip()
    return str(_recorded(settings).get("docker_host") or local_engine.DEFAULT_DOCKER_HOST)
