"""A pipeline the tests control: each deployment's trigger carries a `script`.

script keys: sleep (seconds, spread over the build states), lines (log lines to print),
fail ("permanent" | "crash"), transient_until (attempt number that first succeeds),
hang (never finish unless cancelled), hang_until (hang on attempts before this one),
gate (in-process only: wait for a test's Event), sleep_random ([low, high]: a random
sleep in that range instead of `sleep`), live_url (where the release answers: set on
the deployment after the push, as the release step does).
Usable in-process and, through WORKER_PIPELINE=tests.support.pipelines:scripted, in a
real worker process; there SCRIPTED_PIPELINE_SCRIPT (JSON) is the script of deployments
whose trigger has none (a webhook's, say).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import DeploymentFailure, TransientError
from pipeline.job import BuildResult, Job
from pipeline.release import ReleaseStore
from pipeline.settings import Settings
from pipeline.states import Status


@dataclass
class Run:
    deployment_id: int
    service_id: int
    environment: str
    attempt: int
    started: float
    ended: float | None = None
    outcome: str = "running"


@dataclass
class ScriptedPipeline:
    runs: list[Run] = field(default_factory=list)
    gates: dict[int, asyncio.Event] = field(default_factory=dict)
    started: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    default_script: dict[str, Any] = field(default_factory=dict)

    async def run(self, job: Job) -> BuildResult:
        deployment = job.deployment
        script: dict[str, Any] = {**self.default_script, **deployment.trigger.get("script", {})}
        run = Run(
            deployment.id,
            deployment.service_id,
            deployment.environment,
            deployment.attempts,
            time.time(),
        )
        self.runs.append(run)
        self.started.put_nowait(deployment.id)
        pause = float(script.get("sleep", 0)) / 3
        if "sleep_random" in script:
            low, high = script["sleep_random"]
            pause = random.uniform(float(low), float(high)) / 3
        try:
            job.log(f"building {deployment.commit_sha or deployment.ref}")
            clone = job.step("clone")
            await asyncio.sleep(pause)
            clone.done()
            await job.enter(Status.BUILDING)
            build = job.step("build")
            for number in range(int(script.get("lines", 0))):
                job.log(f"line {number}")
            await job.progress(1, 2, "compiling")
            await asyncio.sleep(pause)
            if script.get("hang") or deployment.attempts < int(script.get("hang_until", 0)):
                await asyncio.Event().wait()
            gate = self.gates.get(deployment.id)
            if gate is not None:
                await gate.wait()
            if deployment.attempts < int(script.get("transient_until", 0)):
                raise TransientError(f"registry unavailable (attempt {deployment.attempts})")
            if script.get("fail") == "permanent":
                raise DeploymentFailure("RUN make failed with exit code 3")
            if script.get("fail") == "crash":
                raise RuntimeError("a bug in a step")
            build.done()
            await job.enter(Status.PUSHING)
            await job.progress(2, 2, "pushing")
            push = job.step("push")
            await asyncio.sleep(pause)
            push.done()
            if isinstance(script.get("live_url"), str):
                await ReleaseStore(job.store.pool).set_live_url(
                    deployment.id, job.lease_token, script["live_url"]
                )
            run.outcome = "succeeded"
            return BuildResult(
                image=f"registry.test/{deployment.service_name}:{deployment.id}",
                digest="sha256:" + f"{deployment.id:064x}",
            )
        except asyncio.CancelledError:
            run.outcome = "cancelled"
            raise
        except Exception:
            run.outcome = "failed"
            raise
        finally:
            run.ended = time.time()


def scripted(settings: Settings) -> ScriptedPipeline:
    """Factory for WORKER_PIPELINE in worker processes the tests start."""
    return ScriptedPipeline(
        default_script=json.loads(os.environ.get("SCRIPTED_PIPELINE_SCRIPT", "{}"))
    )
