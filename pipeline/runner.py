"""The pipeline interface: what a worker hands a claimed deployment to.

A pipeline gets a `Job`, moves it through the build states with `enter`, reports progress
and log lines, and returns a `BuildResult`. It signals failure by raising
`DeploymentFailure` (final) or `TransientError` (retried); the worker cancels it through
ordinary asyncio cancellation, so every step must be cancellable.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

import structlog

from pipeline.errors import ConfigError
from pipeline.models import Deployment, Step
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import BatchWriter, JobWrite, LogEntry, Store

log = structlog.get_logger(__name__)

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
    """One run of one deployment, as the pipeline sees it.

    Log lines and step changes are buffered and written with the next state change, or at
    the latest LOG_FLUSH_SECONDS after the first of them (at once when LOG_FLUSH_LINES are
    waiting). Every write goes through a `BatchWriter`: the worker's, shared by its jobs, or
    one of the job's own."""

    def __init__(
        self,
        store: Store,
        deployment: Deployment,
        lease_token: UUID,
        *,
        writer: BatchWriter | None = None,
    ) -> None:
        self.store = store
        self.deployment = deployment
        self.lease_token = lease_token
        self.status = deployment.status
        self._writer = writer or BatchWriter(store)
        self._buffer: list[LogEntry] = []
        self._next_seq = 1
        self._steps: dict[int, Step] = {}
        self._dirty_steps: set[int] = set()
        self._lock = asyncio.Lock()
        # The pending timed flush, and a flush running in the background.
        self._timer: asyncio.TimerHandle | None = None
        self._background: asyncio.Task[None] | None = None
        self._again = False
        self._closed = False

    async def start(self) -> None:
        # A retry goes on numbering after the lines of the earlier attempts.
        last = self.deployment.last_log_seq
        if last is None:
            last = await self.store.last_log_seq(self.deployment.id)
        self._next_seq = last + 1

    async def close(self) -> None:
        """Write what is still buffered; later lines are no longer written by themselves."""
        self._closed = True
        self._cancel_timer()
        await self.flush()

    async def enter(self, status: Status) -> None:
        """Move to the next build state (cloning → building → pushing). Buffered lines and
        steps are written in the same statement, ahead of the change."""
        await self._move(status)

    async def finish(
        self,
        status: Status,
        *,
        error: str | None = None,
        error_kind: str | None = None,
        image: str | None = None,
        digest: str | None = None,
    ) -> Deployment:
        """Move to a final state with whatever is still buffered: how the worker ends a run
        (succeeded with the image, or failed or cancelled with the error)."""
        return await self._move(
            status, error=error, error_kind=error_kind, image=image, digest=digest
        )

    async def _move(
        self,
        status: Status,
        *,
        error: str | None = None,
        error_kind: str | None = None,
        image: str | None = None,
        digest: str | None = None,
    ) -> Deployment:
        deployment = await self._write(
            status, error=error, error_kind=error_kind, image=image, digest=digest
        )
        if deployment is None:
            raise await self.store.refusal(self.deployment.id, status, self.lease_token)
        self.deployment = deployment
        self.status = status
        return deployment

    async def progress(self, step: int | None, total: int | None, message: str | None) -> None:
        await self.store.set_progress(
            self.deployment.id, step, total, message, lease_token=self.lease_token
        )

    def log(self, line: str, stream: str = "stdout") -> None:
        """Buffer one line of output; written in batches."""
        self._buffer.append(LogEntry(line=line, stream=stream))
        if len(self._buffer) >= LOG_FLUSH_LINES:
            self._flush_in_background()
        else:
            self._arm()

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
        self._arm()
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
        self._arm()

    @property
    def steps(self) -> list[Step]:
        return [self._steps[seq] for seq in sorted(self._steps)]

    async def flush(self) -> None:
        """Write the buffered lines and steps now (nothing to write: no statement)."""
        await self._write(None)

    async def _write(
        self,
        status: Status | None,
        *,
        error: str | None = None,
        error_kind: str | None = None,
        image: str | None = None,
        digest: str | None = None,
    ) -> Deployment | None:
        """Buffered lines and steps, then the state change (if any), in as few statements
        as the batch size allows; the deployment as it now is after a change that applied."""
        async with self._lock:
            self._cancel_timer()
            steps = [self._steps[seq] for seq in sorted(self._dirty_steps)]
            self._dirty_steps.clear()
            lines, self._buffer = self._buffer, []
            while len(lines) > LOG_FLUSH_LINES:
                batch, lines = lines[:LOG_FLUSH_LINES], lines[LOG_FLUSH_LINES:]
                await self._writer.write(self._job_write(batch, steps))
                steps = []
            if status is None and not lines and not steps:
                return None
            return await self._writer.write(
                self._job_write(lines, steps, status, error, error_kind, image, digest)
            )

    def _job_write(
        self,
        lines: list[LogEntry],
        steps: list[Step],
        status: Status | None = None,
        error: str | None = None,
        error_kind: str | None = None,
        image: str | None = None,
        digest: str | None = None,
    ) -> JobWrite:
        # Numbers are taken before the write: a write cut short never hands them out twice.
        first_seq = self._next_seq
        self._next_seq += len(lines)
        return JobWrite(
            deployment=self.deployment,
            lease_token=self.lease_token,
            first_seq=first_seq,
            logs=lines,
            steps=steps,
            status=status,
            error=error,
            error_kind=error_kind,
            image=image,
            digest=digest,
        )

    # --- writing in the background ----------------------------------------------------

    def _arm(self) -> None:
        """Make sure what was just buffered is written within LOG_FLUSH_SECONDS."""
        if self._timer is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the event loop: written with the next flush
            return
        self._timer = loop.call_later(LOG_FLUSH_SECONDS, self._flush_in_background)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush_in_background(self) -> None:
        self._cancel_timer()
        if self._closed:
            return
        if self._background is not None:
            self._again = True  # it writes once more when done
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._background = loop.create_task(self._flush_background())

    async def _flush_background(self) -> None:
        try:
            while True:
                self._again = False
                await self.flush()
                if not self._again:
                    break
        except Exception as error:  # the lines are lost; the build goes on
            log.warning(
                "cannot write log lines",
                deployment_id=self.deployment.id,
                error=str(error) or type(error).__name__,
            )
        finally:
            self._background = None


class Pipeline(Protocol):
    async def run(self, job: Job) -> BuildResult: ...


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
