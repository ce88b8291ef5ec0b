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

from pipeline.errors import ConfigError, InvalidTransition
from pipeline.models import Deployment, Step
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import BatchWriter, JobWrite, LeaseLost, LogEntry, Store

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

    Log lines, step changes and moves through the build states (`enter`) are buffered and
    written with the next write, at the latest LOG_FLUSH_SECONDS after the first of them (at
    once when LOG_FLUSH_LINES are waiting); a final state (`finish`) is written at once and
    waits for the database. Moves made between two writes land as one change that passes
    through them (the row's `phase` names the last build state reached). Every write goes
    through a `BatchWriter`: the worker's, shared by its jobs, or one of the job's own."""

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
        # The build state entered but not yet written, and why a background write of one
        # was refused (lease lost): raised by the job's next move.
        self._pending_status: Status | None = None
        self._refused: Exception | None = None
        self._lock = asyncio.Lock()
        # The pending timed flush, and a flush running in the background.
        self._due = False  # the writer flushes it at its next tick
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
        if self._refused is not None:
            return  # the deployment is no longer this job's to write to
        try:
            await self.flush()
        except (LeaseLost, InvalidTransition) as error:
            # The run is over either way; whoever holds the deployment now writes its state.
            log.warning("last write refused", deployment_id=self.deployment.id, error=str(error))

    async def enter(self, status: Status) -> None:
        """Move to the next build state (cloning → building → pushing). Written with the
        job's next write, after the lines and steps buffered before it; a move the database
        refused in the background (the lease was lost) is raised here."""
        self._raise_refusal()
        self.status = status
        self._pending_status = status
        self._arm()

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
        self._raise_refusal()
        deployment = await self._write(
            status, error=error, error_kind=error_kind, image=image, digest=digest
        )
        assert deployment is not None  # _write raises when the change did not apply
        self.status = status
        return deployment

    def _raise_refusal(self) -> None:
        if self._refused is not None:
            raise self._refused

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
        """Write the buffered lines, steps and build state now (nothing to write: no
        statement). Raises a refusal of this or an earlier background write."""
        self._raise_refusal()
        if self._buffer or self._dirty_steps or self._pending_status or self._lock.locked():
            await self._write(None)  # also waits for a write already on its way
        else:
            self._cancel_timer()

    async def _write(
        self,
        status: Status | None,
        *,
        error: str | None = None,
        error_kind: str | None = None,
        image: str | None = None,
        digest: str | None = None,
    ) -> Deployment | None:
        """Buffered lines and steps, then the state change (the one asked for, else a
        pending build state), in as few statements as the batch size allows; the deployment
        as it now is after a change. A change that did not apply raises why."""
        async with self._lock:
            self._cancel_timer()
            steps = [self._steps[seq] for seq in sorted(self._dirty_steps)]
            self._dirty_steps.clear()
            lines, self._buffer = self._buffer, []
            while len(lines) > LOG_FLUSH_LINES:
                batch, lines = lines[:LOG_FLUSH_LINES], lines[LOG_FLUSH_LINES:]
                await self._writer.write(self._job_write(batch, steps))
                steps = []
            phase, self._pending_status = self._pending_status, None
            status = status or phase
            if status is None and not lines and not steps:
                return None
            write = self._job_write(lines, steps, status, error, error_kind, image, digest, phase)
            deployment = await self._writer.write(write)
            if status is None:
                return None
            if deployment is None:
                raise await self.store.refusal(self.deployment.id, status, self.lease_token)
            self.deployment = deployment
            return deployment

    def _job_write(
        self,
        lines: list[LogEntry],
        steps: list[Step],
        status: Status | None = None,
        error: str | None = None,
        error_kind: str | None = None,
        image: str | None = None,
        digest: str | None = None,
        phase: Status | None = None,
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
            phase=phase,
        )

    # --- writing in the background ----------------------------------------------------

    def _arm(self) -> None:
        """Make sure what was just buffered is written within LOG_FLUSH_SECONDS: by the
        writer's tick, one timer for all the jobs that share it."""
        if self._due or self._closed:
            return
        try:
            self._writer.flush_soon(self, LOG_FLUSH_SECONDS)
        except RuntimeError:  # not on the event loop: written with the next flush
            return
        self._due = True

    def _cancel_timer(self) -> None:
        if self._due:
            self._writer.not_due(self)
            self._due = False

    def flush_in_background(self) -> None:
        """Start writing what is buffered, without waiting for it (the writer's tick)."""
        self._due = False
        self._flush_in_background()

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
        except (LeaseLost, InvalidTransition) as error:
            self._refused = error  # the pipeline's next move raises it
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
