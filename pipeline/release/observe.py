"""What a live release is doing now, looked at when it is shown (`service show`, the REST
API): `releases.healthy` says the new version passed its check at the switch, and nothing
watches it after that, so a container that has since exited must not be shown as healthy.

One cheap look per release, with a short timeout: the containers' state on their engines
(target docker) or the Swarm service's running tasks (target swarm). A deploy hook's
platform is not asked (target webhook): its state stays what the hook answered.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.errors import ClickDeployError
from pipeline.release.engine import Engine
from pipeline.release.records import ReleaseRecord

LOOK_TIMEOUT_SECONDS = 3.0

# running: everything that should run runs (and a HEALTHCHECK, if any, is not failing);
# degraded: some of it runs; unhealthy: it runs but its HEALTHCHECK fails; not running:
# none of it runs; unknown: the engine did not answer; not checked: a webhook target.
State = Literal["running", "degraded", "unhealthy", "not running", "unknown", "not checked"]


@dataclass(frozen=True)
class Observed:
    record: ReleaseRecord
    state: State
    detail: str  # one line a person reads: "1 of 1 container running", "abc… exited (137)"

    @property
    def healthy(self) -> bool:
        """Healthy at the switch and, as far as can be seen now, still."""
        return self.record.healthy and self.state in ("running", "not checked")


async def observe(records: list[ReleaseRecord]) -> list[Observed]:
    """Each live release with its state now, looked at concurrently."""
    return list(await asyncio.gather(*(observe_one(record) for record in records)))


async def observe_one(record: ReleaseRecord) -> Observed:
    if record.target not in ("docker", "swarm") or not record.engine:
        return Observed(record, "not checked", f"target {record.target}: not looked at")
    try:
        async with asyncio.timeout(LOOK_TIMEOUT_SECONDS):
            if record.target == "docker":
                return await _containers(record)
            return await _swarm_service(record)
    except TimeoutError:
        return Observed(record, "unknown", f"no answer within {LOOK_TIMEOUT_SECONDS:g} s")
    except (ClickDeployError, ValueError, OSError) as error:
        return Observed(record, "unknown", (str(error) or type(error).__name__).splitlines()[0])


async def _containers(record: ReleaseRecord) -> Observed:
    """Target docker: `engine` and `runs_as` list the engines and their containers in the
    same order (one container per engine)."""
    assert record.engine is not None
    engines = [
        Engine(address, timeout=LOOK_TIMEOUT_SECONDS) for address in record.engine.split(",")
    ]
    containers = record.runs_as.split(",")
    if len(engines) != len(containers):
        engines = [engines[0]] * len(containers)
    found = await asyncio.gather(
        *(engine.inspect(container) for engine, container in zip(engines, containers, strict=True))
    )
    problems: list[str] = []
    running = unhealthy = 0
    for container, inspected in zip(containers, found, strict=True):
        state: dict[str, Any] = (inspected or {}).get("State") or {}
        if inspected is None:
            problems.append(f"container {container} is gone")
        elif not state.get("Running"):
            problems.append(
                f"container {container} {state.get('Status', 'stopped')} "
                f"(exit code {state.get('ExitCode', '?')})"
            )
        elif (state.get("Health") or {}).get("Status") == "unhealthy":
            unhealthy += 1
            problems.append(f"container {container} runs, its HEALTHCHECK fails")
        else:
            running += 1
    count = f"{running} of {len(containers)} container{'s' if len(containers) > 1 else ''} running"
    if running == len(containers):
        return Observed(record, "running", count)
    detail = "; ".join([count, *problems])
    if running:
        return Observed(record, "degraded", detail)
    return Observed(record, "unhealthy" if unhealthy else "not running", detail)


async def _swarm_service(record: ReleaseRecord) -> Observed:
    """Target swarm: the service's tasks that should run and do."""
    assert record.engine is not None
    manager = Engine(record.engine, timeout=LOOK_TIMEOUT_SECONDS)
    name = record.runs_as
    service = await manager.call("GET", f"/services/{name}", ok=(200, 404))
    if not isinstance(service, dict) or "ID" not in service:
        return Observed(record, "not running", f"the Swarm service {name} is gone")
    wanted = int(
        ((service.get("Spec") or {}).get("Mode") or {}).get("Replicated", {}).get("Replicas", 1)
    )
    filters = json.dumps({"service": [name], "desired-state": ["running"]})
    tasks = await manager.call("GET", "/tasks", params={"filters": filters}) or []
    running = sum(1 for task in tasks if (task.get("Status") or {}).get("State") == "running")
    detail = f"{running} of {wanted} task{'s' if wanted != 1 else ''} running"
    if running >= wanted:
        return Observed(record, "running", detail)
    return Observed(record, "degraded" if running else "not running", detail)
