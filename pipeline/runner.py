"""The pipeline interface: what a worker hands a claimed deployment to.

A pipeline gets a `Job`, moves it through the build states with `enter`, reports progress
and log lines, and returns a `BuildResult`. It signals failure by raising
`DeploymentFailure` (final) or `TransientError` (retried); the worker cancels it through
ordinary asyncio cancellation, so every step must be cancellable.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from pipeline.errors import ConfigError, DeploymentFailure
from pipeline.models import Deployment, Step
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import LogEntry, Store

# Flush buffered log lines at least this often, or when this many are waiting.
LOG_FLUSH_SECONDS = 0.2
LOG_FLUSH_LINES = 500


@dataclass(frozen=True)
class BuildResult:
    image: str | None = None
    digest: str | None = None


class StepHandle:
    """One step of a job, written to deployment_steps with the next log flush."""

    def __init__(self, job: Job, seq: int) -> None:
        self._job = job
        self.seq = seq

    def done(self, *, cached: bool = False, detail: str | None = None) -> None:
        self._job._finish_step(self.seq, "cached" if cached else "done", detail)

    def failed(self, detail: str | None = None) -> None:
        self._job._finish_step(self.seq, "failed", detail)


class Job:
    """One run of one deployment, as the pipeline sees it."""

    def __init__(self, store: Store, deployment: Deployment, lease_token: UUID) -> None:
        self.store = store
        self.deployment = deployment
        self.lease_token = lease_token
        self.status = deployment.status
        self._buffer: list[LogEntry] = []
        self._next_seq = 1
        self._steps: dict[int, Step] = {}
        self._dirty_steps: set[int] = set()
        self._flushed = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        # A retry goes on numbering after the lines of the earlier attempts.
        last = self.deployment.last_log_seq
        if last is None:
            last = await self.store.last_log_seq(self.deployment.id)
        self._next_seq = last + 1
        self._flusher = asyncio.create_task(self._flush_periodically())

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    async def enter(self, status: Status) -> None:
        """Move to the next build state (cloning → building → pushing)."""
        await self.flush()
        self.deployment = await self.store.set_status(
            self.deployment.id, status, lease_token=self.lease_token
        )
        self.status = status

    async def progress(self, step: int | None, total: int | None, message: str | None) -> None:
        await self.store.set_progress(
            self.deployment.id, step, total, message, lease_token=self.lease_token
        )

    def log(self, line: str, stream: str = "stdout") -> None:
        """Buffer one line of output; written in batches."""
        self._buffer.append(LogEntry(line=line, stream=stream))
        if len(self._buffer) >= LOG_FLUSH_LINES:
            self._flushed.set()

    def step(self, name: str, kind: str = "pipeline") -> StepHandle:
        """Start a step now; finish it with the handle's `done` or `failed`."""
        seq = len(self._steps) + 1
        self._steps[seq] = Step(
            deployment_id=self.deployment.id,
            attempt=self.deployment.attempts,
            seq=seq,
            kind=kind,
            name=name,
            status="running",
            started_at=datetime.now(UTC),
            finished_at=None,
            seconds=None,
            detail=None,
        )
        self._dirty_steps.add(seq)
        return StepHandle(self, seq)

    def _finish_step(self, seq: int, status: str, detail: str | None) -> None:
        step = self._steps[seq]
        if step.status != "running":
            return
        finished = datetime.now(UTC)
        self._steps[seq] = replace(
            step,
            status=status,
            finished_at=finished,
            seconds=(finished - step.started_at).total_seconds(),
            detail=detail,
        )
        self._dirty_steps.add(seq)

    @property
    def steps(self) -> list[Step]:
        return [self._steps[seq] for seq in sorted(self._steps)]

    async def flush(self) -> None:
        async with self._lock:
            if self._dirty_steps:
                dirty = [self._steps[seq] for seq in sorted(self._dirty_steps)]
                self._dirty_steps.clear()
                await self.store.record_steps(self.deployment.id, self.deployment.attempts, dirty)
            while self._buffer:
                batch, self._buffer = self._buffer[:LOG_FLUSH_LINES], self._buffer[LOG_FLUSH_LINES:]
                self._next_seq = await self.store.append_logs(
                    self.deployment.id, self._next_seq, batch
                )

    async def _flush_periodically(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._flushed.wait(), LOG_FLUSH_SECONDS)
            self._flushed.clear()
            await self.flush()


class Pipeline(Protocol):
    async def run(self, job: Job) -> BuildResult: ...


class NoBuildPipeline:
    """Stands in until the build pipeline is configured: fails every deployment with a
    message that says so, instead of pretending to build."""

    async def run(self, job: Job) -> BuildResult:
        raise DeploymentFailure(
            "this click-deploy has no build pipeline configured (WORKER_PIPELINE)"
        )


def default_pipeline(settings: Settings) -> Pipeline:
    return NoBuildPipeline()


def load_pipeline(settings: Settings) -> Pipeline:
    """The pipeline named by WORKER_PIPELINE ("module:factory"; the factory takes Settings)."""
    module_name, _, attribute = settings.worker_pipeline.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(
            f"WORKER_PIPELINE: cannot load {settings.worker_pipeline!r} ({error})"
        ) from None
    pipeline: Pipeline = factory(settings)
    return pipeline
