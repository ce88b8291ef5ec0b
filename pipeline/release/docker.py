"""Target `docker`: containers on one or more Docker engines, behind Caddy.

A release pulls the image by digest on every engine, starts a new container on each (host
network, a free port from RELEASE_PORTS in $PORT, the service's environment and secrets),
waits until all are healthy, switches the Caddy route of the environment's host name to
them in one change, records the release, and after the drain period stops the containers
that served before. Until the switch nothing that serves is touched: a new version that is
not healthy is removed, its last log lines go into the failure, and the old one answers on.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets as random_names
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.registry.reference import parse_reference
from pipeline.release.base import Released, ReleaseFailed, ReleaseLog, ReleaseRequest
from pipeline.release.caddy import Caddy
from pipeline.release.config import ReleaseConfig
from pipeline.release.engine import LABEL, Engine, EngineRefused, EngineUnavailable
from pipeline.release.health import Unhealthy, wait_healthy
from pipeline.release.records import ReleaseStore
from pipeline.release.secrets import redacted, service_environment
from pipeline.settings import Settings

LOG_LINES = 20
STOP_GRACE_SECONDS = 10


def engines_for(config: ReleaseConfig, settings: Settings) -> list[Engine]:
    """The engines a service runs on: its config's, else RELEASE_DOCKER_HOST, else the
    first of DOCKER_HOST."""
    addresses = list(config.hosts)
    if not addresses:
        default = settings.release_docker_host or settings.docker_host.split(",")[0].strip()
        addresses = [default]
    return [Engine(address) for address in addresses]


def caddy_for(settings: Settings) -> Caddy:
    return Caddy(
        settings.caddy_admin_url,
        listen=settings.caddy_listen,
        automatic_https=settings.caddy_automatic_https,
        retry_seconds=settings.caddy_retry_seconds,
    )


def live_url(settings: Settings, host: str) -> str:
    return settings.caddy_public_url.replace("{host}", host)


def registry_auth(settings: Settings, image: str) -> dict[str, str] | None:
    """The registry login an engine pulls the image with (the bot's own), if any."""
    if not settings.registry_username or settings.registry_password is None:
        return None
    return {
        "username": settings.registry_username,
        "password": settings.registry_password.get_secret_value(),
        "serveraddress": parse_reference(image).registry or "",
    }


def port_range(settings: Settings) -> range:
    first, _, last = settings.release_ports.partition("-")
    return range(int(first), int(last or first) + 1)


def labels_of(service: str, environment: str) -> dict[str, str]:
    return {f"{LABEL}.service": service, f"{LABEL}.environment": environment}


@dataclass(frozen=True)
class Started:
    engine: Engine
    container: str
    port: int

    @property
    def upstream(self) -> str:
        return f"{self.engine.host}:{self.port}"


class DockerTarget:
    def __init__(self, settings: Settings, records: ReleaseStore, log: ReleaseLog) -> None:
        self.settings = settings
        self.records = records
        self.log = log
        self.caddy = caddy_for(settings)

    async def release(self, request: ReleaseRequest) -> Released:
        config = request.config
        host = config.host_for(request.service, request.environment)
        assert host is not None  # the config model requires a domain for this target
        environment = service_environment(request, self.settings)
        engines = engines_for(config, self.settings)
        image = request.by_digest
        await asyncio.gather(*(self._pull(engine, image) for engine in engines))
        started: list[Started] = []
        try:
            for engine in engines:
                started.append(await self._start(engine, request, environment))
            await asyncio.gather(
                *(self._healthy(one, image, request, environment) for one in started)
            )
            old = await self._serving(engines, request, exclude={s.container for s in started})
            await self.caddy.switch(
                request.service, request.environment, host, [s.upstream for s in started]
            )
        except BaseException:
            await asyncio.shield(self._remove(started))
            raise
        url = live_url(self.settings, host)
        self.log(f"traffic for {host} now goes to {', '.join(s.upstream for s in started)}")
        await self.records.switched(
            service_id=request.service_id,
            environment=request.environment,
            deployment_id=request.deployment_id,
            target="docker",
            image=request.image,
            digest=request.digest,
            engine=",".join(engine.address for engine in engines),
            runs_as=",".join(s.container[:12] for s in started),
            url=url,
        )
        if old:
            self.log(f"the old version drains for {config.drain_seconds:g} s")
            await asyncio.sleep(config.drain_seconds)
            await self._remove(old)
            self.log(f"stopped the old version ({', '.join(s.container[:12] for s in old)})")
        if request.environment != "production":
            await self._limit_previews(request, config)
        return Released(url=url, runs_as=",".join(s.container[:12] for s in started))

    async def stop_environment(
        self, service_id: int, service: str, environment: str, config: ReleaseConfig
    ) -> bool:
        """Take an environment out of service (a closed pull request's preview): its route
        goes, then its containers; whether anything was running."""
        await self.caddy.remove(service, environment)
        engines = engines_for(config, self.settings)
        running = await self._serving(engines, _Names(service, environment), exclude=set())
        await self._remove(running)
        live = await self.records.live(service_id, environment)
        if live is not None:
            await self.records.stopped(live.id)
        return bool(running) or live is not None

    # ------------------------------------------------------------------ steps

    async def _pull(self, engine: Engine, image: str) -> None:
        self.log(f"pulling {image} on {engine.address}")
        await engine.pull(image, self._registry_auth(image))

    def _registry_auth(self, image: str) -> dict[str, str] | None:
        return registry_auth(self.settings, image)

    async def _start(
        self, engine: Engine, request: ReleaseRequest, environment: Mapping[str, str]
    ) -> Started:
        port = await self._free_port(engine)
        suffix = random_names.token_hex(3)  # a retry of the deployment gets a new name
        name = f"cd-{request.service}-{request.environment}-{request.deployment_id}-{suffix}"
        labels = {
            **labels_of(request.service, request.environment),
            f"{LABEL}.deployment": str(request.deployment_id),
            f"{LABEL}.port": str(port),
        }
        container = await engine.run(
            name, request.by_digest, env={**environment, "PORT": str(port)}, labels=labels
        )
        self.log(f"started {name} on {engine.address}, port {port}")
        return Started(engine, container, port)

    async def _healthy(
        self,
        started: Started,
        image: str,
        request: ReleaseRequest,
        environment: dict[str, str],
    ) -> None:
        config = request.config
        has_check = (
            config.health_path is None and await started.engine.image_healthcheck(image) is not None
        )
        try:
            how = await wait_healthy(
                started.engine, started.container, started.port, config, has_healthcheck=has_check
            )
        except Unhealthy as problem:
            lines = redacted(
                await started.engine.logs(started.container, LOG_LINES), request, environment
            )
            for line in lines:
                self.log(f"  | {line}")
            tail = "\n".join(lines) if lines else "(it wrote no output)"
            raise ReleaseFailed(
                f"the new version is not healthy, the old one keeps serving: {problem}; "
                f"its last log lines:\n{tail}"
            ) from None
        self.log(f"healthy on {started.upstream}: {how}")

    async def _serving(
        self, engines: Sequence[Engine], request: ReleaseRequest | _Names, exclude: set[str]
    ) -> list[Started]:
        found: list[Started] = []
        for engine in engines:
            for container in await engine.containers(
                labels_of(request.service, request.environment)
            ):
                if container["Id"] in exclude:
                    continue
                port = int((container.get("Labels") or {}).get(f"{LABEL}.port", "0"))
                found.append(Started(engine, str(container["Id"]), port))
        return found

    async def _remove(self, started: Sequence[Started]) -> None:
        for one in started:
            with contextlib.suppress(EngineRefused, EngineUnavailable):
                await one.engine.stop(one.container, STOP_GRACE_SECONDS)
                await one.engine.remove(one.container)

    async def _free_port(self, engine: Engine) -> int:
        taken = set()
        for container in await engine.containers({}):
            value = (container.get("Labels") or {}).get(f"{LABEL}.port")
            if value and value.isdigit():
                taken.add(int(value))
        return free_port(self.settings, engine, taken)

    async def _limit_previews(self, request: ReleaseRequest, config: ReleaseConfig) -> None:
        previews = await self.records.live_previews(request.service_id)
        excess = len(previews) - config.max_previews
        for oldest in previews[: max(excess, 0)]:
            self.log(
                f"stopping the oldest preview {oldest.environment}: at most "
                f"{config.max_previews} live previews"
            )
            await self.stop_environment(
                request.service_id, request.service, oldest.environment, config
            )


@dataclass(frozen=True)
class _Names:
    service: str
    environment: str


def free_port(settings: Settings, engine: Engine, taken: set[int]) -> int:
    """A port of RELEASE_PORTS not in `taken` (the ports click-deploy's containers hold on
    the engine) and, on the local engine, that nothing else listens on."""
    candidates = [port for port in port_range(settings) if port not in taken]
    random.shuffle(candidates)
    for port in candidates[:200]:
        if not engine.local or _bindable(port):
            return port
    raise ReleaseFailed(
        f"no free port in RELEASE_PORTS={settings.release_ports} on {engine.address}"
    )


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
