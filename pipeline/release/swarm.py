"""Target `swarm`: a Docker Swarm service per environment (`cd-<service>-<environment>`),
for teams that run on several machines.

A release creates the service, or updates its image (by digest) and environment; Swarm
replaces the tasks (`stop-first`: on the host network a port is held by one task at a
time) with `FailureAction: rollback`. Then the release waits for convergence (every task
of the new spec running) and for the health path to answer on the service's port; if
either does not happen in time it asks Swarm to roll back to the previous spec, and fails
with the tasks' last log lines. Caddy routes the host name to the port on each engine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from pipeline.release.base import Released, ReleaseFailed, ReleaseLog, ReleaseRequest
from pipeline.release.config import ReleaseConfig
from pipeline.release.docker import caddy_for, engines_for, free_port, live_url, registry_auth
from pipeline.release.engine import LABEL, Engine, EngineRefused, demultiplex
from pipeline.release.health import POLL_SECONDS
from pipeline.release.records import ReleaseStore
from pipeline.release.secrets import redacted, service_environment
from pipeline.settings import Settings

LOG_LINES = 20
ROLLBACK_TIMEOUT_SECONDS = 120.0


async def swarm_active(engine: Engine) -> None:
    """The engine is a Swarm manager; ReleaseFailed saying how to make it one if not."""
    info = await engine.call("GET", "/info")
    swarm = (info or {}).get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        raise ReleaseFailed(
            f"the Docker engine {engine.address} is not a Swarm manager "
            "(run `docker swarm init` there, or name a manager in `release.hosts`)"
        )


def service_name(service: str, environment: str) -> str:
    return f"cd-{service}-{environment}"


class SwarmTarget:
    def __init__(self, settings: Settings, records: ReleaseStore, log: ReleaseLog) -> None:
        self.settings = settings
        self.records = records
        self.log = log

    async def release(self, request: ReleaseRequest) -> Released:
        config = request.config
        engines = engines_for(config, self.settings)
        manager = engines[0]
        await swarm_active(manager)
        name = service_name(request.service, request.environment)
        environment = service_environment(request, self.settings)
        auth = registry_auth(self.settings, request.by_digest) or {}
        existing = await manager.call("GET", f"/services/{name}", ok=(200, 404))
        if isinstance(existing, dict) and "ID" in existing:
            port = int(existing["Spec"].get("Labels", {}).get(f"{LABEL}.port", "0"))
            spec = self._spec(request, name, port, environment)
            await manager.call(
                "POST",
                f"/services/{existing['ID']}/update",
                params={"version": str(existing["Version"]["Index"])},
                body=spec,
                auth=auth,
            )
            self.log(f"updating Swarm service {name} to {request.by_digest}")
        else:
            port = await self._free_port(manager)
            spec = self._spec(request, name, port, environment)
            await manager.call("POST", "/services/create", body=spec, auth=auth, ok=(201,))
            self.log(f"created Swarm service {name} on port {port}")
        try:
            await self._converged(manager, name, request.by_digest, config)
            await self._healthy(engines, port, config)
        except ReleaseFailed as failure:
            lines = redacted(await self._logs(manager, name), request, environment)
            for line in lines:
                self.log(f"  | {line}")
            await self._roll_back(manager, name)
            tail = "\n".join(lines) if lines else "(the tasks wrote no output)"
            raise ReleaseFailed(
                f"{failure}; rolled back; the tasks' last log lines:\n{tail}"
            ) from None
        host = config.host_for(request.service, request.environment)
        assert host is not None
        await caddy_for(self.settings).switch(
            request.service, request.environment, host, [f"{e.host}:{port}" for e in engines]
        )
        url = live_url(self.settings, host)
        await self.records.switched(
            service_id=request.service_id,
            environment=request.environment,
            deployment_id=request.deployment_id,
            target="swarm",
            image=request.image,
            digest=request.digest,
            engine=manager.address,
            runs_as=name,
            url=url,
        )
        return Released(url=url, runs_as=name, engine=manager.address)

    async def stop_environment(
        self, service_id: int, service: str, environment: str, config: ReleaseConfig
    ) -> bool:
        await caddy_for(self.settings).remove(service, environment)
        manager = engines_for(config, self.settings)[0]
        name = service_name(service, environment)
        found = await manager.call("DELETE", f"/services/{name}", ok=(200, 404))
        live = await self.records.live(service_id, environment)
        if live is not None:
            await self.records.stopped(live.id)
        return found is None or live is not None

    def _spec(
        self, request: ReleaseRequest, name: str, port: int, environment: Mapping[str, str]
    ) -> dict[str, Any]:
        config = request.config
        update = {
            "Parallelism": 1,
            "FailureAction": "rollback",
            "Monitor": 5_000_000_000,
            "Order": "stop-first",
        }
        return {
            "Name": name,
            "Labels": {
                f"{LABEL}.service": request.service,
                f"{LABEL}.environment": request.environment,
                f"{LABEL}.deployment": str(request.deployment_id),
                f"{LABEL}.port": str(port),
            },
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": request.by_digest,
                    "Env": [f"{k}={v}" for k, v in {**environment, "PORT": str(port)}.items()],
                },
                "Networks": [{"Target": "host"}],
                # On the host network two tasks cannot share a machine's port.
                "Placement": {"MaxReplicas": 1},
                "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000},
            },
            "Mode": {"Replicated": {"Replicas": config.replicas}},
            "UpdateConfig": update,
            "RollbackConfig": {**update, "FailureAction": "pause"},
        }

    async def _free_port(self, manager: Engine) -> int:
        taken = set()
        for found in await manager.call("GET", "/services") or []:
            value = (found.get("Spec", {}).get("Labels") or {}).get(f"{LABEL}.port")
            if value and value.isdigit():
                taken.add(int(value))
        return free_port(self.settings, manager, taken)

    async def _converged(
        self, manager: Engine, name: str, image: str, config: ReleaseConfig
    ) -> None:
        """Every task of the new spec runs; ReleaseFailed when Swarm rolled the update back
        by itself (its spec no longer names the image), paused it, or time ran out."""
        deadline = time.monotonic() + config.health_timeout_seconds
        seen = "no task of the new version runs yet"
        while True:
            service = await manager.call("GET", f"/services/{name}") or {}
            update = service.get("UpdateStatus") or {}
            state = update.get("State")
            if service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] != image:
                raise ReleaseFailed(f"Swarm rolled the update back: {update.get('Message', '')}")
            if state == "paused":
                raise ReleaseFailed(f"Swarm paused the update: {update.get('Message', '')}")
            running, errors = await self._tasks(manager, name, image)
            if running >= config.replicas and state not in ("updating", "rollback_started"):
                return
            if errors:
                seen = f"a task failed: {errors[-1]}"
            if time.monotonic() >= deadline:
                raise ReleaseFailed(
                    f"the Swarm service did not converge within "
                    f"{config.health_timeout_seconds:g} s: {seen}"
                )
            await asyncio.sleep(POLL_SECONDS)

    async def _tasks(self, manager: Engine, name: str, image: str) -> tuple[int, list[str]]:
        """How many tasks of `image` run, and the errors of the service's tasks."""
        filters = json.dumps({"service": [name], "desired-state": ["running"]})
        tasks = await manager.call("GET", "/tasks", params={"filters": filters}) or []
        running = sum(
            1
            for task in tasks
            if task["Spec"]["ContainerSpec"]["Image"] == image
            and task["Status"]["State"] == "running"
        )
        errors = [str(task["Status"]["Err"]) for task in tasks if task["Status"].get("Err")]
        return running, errors

    async def _healthy(self, engines: list[Engine], port: int, config: ReleaseConfig) -> None:
        if config.health_path is None:
            return  # Swarm itself waited for the image's HEALTHCHECK (a task is "running")
        deadline = time.monotonic() + config.health_timeout_seconds
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for engine in engines:
                url = f"http://{engine.host}:{port}{config.health_path}"
                seen = "no answer"
                while True:
                    try:
                        async with session.get(url, allow_redirects=False) as answer:
                            await answer.read()
                            if answer.status == config.health_status:
                                self.log(f"healthy on {engine.host}:{port}: {answer.status}")
                                break
                            seen = f"answered {answer.status} (expected {config.health_status})"
                    except (aiohttp.ClientError, TimeoutError):
                        seen = "no answer"
                    if time.monotonic() >= deadline:
                        raise ReleaseFailed(
                            f"the new version is not healthy: GET {config.health_path} on "
                            f"{engine.host}:{port} {seen} "
                            f"within {config.health_timeout_seconds:g} s"
                        )
                    await asyncio.sleep(POLL_SECONDS)

    async def _roll_back(self, manager: Engine, name: str) -> None:
        service = await manager.call("GET", f"/services/{name}", ok=(200, 404))
        if not isinstance(service, dict) or "ID" not in service:
            return
        if service.get("PreviousSpec") is None:
            # A first release that fails has nothing to go back to: it is removed.
            await manager.call("DELETE", f"/services/{service['ID']}", ok=(200, 404))
            self.log(f"removed Swarm service {name}: it never served")
            return
        state = (service.get("UpdateStatus") or {}).get("State")
        previous = service["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        if state not in ("rollback_started", "rollback_completed"):
            try:
                await manager.call(
                    "POST",
                    f"/services/{service['ID']}/update",
                    params={"version": str(service["Version"]["Index"]), "rollback": "previous"},
                    body=service["Spec"],
                )
            except EngineRefused as error:
                self.log(f"could not roll back {name}: {error}")
                return
        # The failure is reported once the previous version runs again.
        deadline = time.monotonic() + ROLLBACK_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            running, _ = await self._tasks(manager, name, previous)
            now = await manager.call("GET", f"/services/{name}") or {}
            if running and (now.get("UpdateStatus") or {}).get("State") != "rollback_started":
                self.log(f"rolled Swarm service {name} back to {previous}")
                return
            await asyncio.sleep(POLL_SECONDS)
        self.log(f"Swarm service {name} is still rolling back to {previous}")

    async def _logs(self, manager: Engine, name: str) -> list[str]:
        try:
            raw = await manager.raw_get(
                f"/services/{name}/logs", {"stdout": "1", "stderr": "1", "tail": str(LOG_LINES)}
            )
        except EngineRefused:
            return []
        return demultiplex(raw)[-LOG_LINES:]
