"""The worker: N slots that claim deployments and run them through a pipeline.

Only the loop lives here; every query is the queue's or the store's. Around each run the
worker keeps the lease alive (heartbeat), listens for cancels, enforces the build timeout,
retries transient failures with backoff, and on shutdown hands unfinished work back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from uuid import UUID

import asyncpg
import structlog

from pipeline.errors import DeploymentFailure, TransientError
from pipeline.job import BuildResult, Job, Pipeline
from pipeline.models import Deployment
from pipeline.queue.listener import Listener
from pipeline.queue.queue import CANCEL_CHANNEL, QUEUE_CHANNEL, Queue
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import BatchWriter, LeaseLost, Store

log = structlog.get_logger(__name__)

# Faults of the database connection itself: the loop waits and tries again.
# InternalClientError: asyncpg's answer on a connection whose server said goodbye while it
# was idle (a PostgreSQL restart) but that is not closed yet.
DATABASE_FAULTS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)
# Those met by the pipeline in one of its job's writes (asyncpg's, and a reconnect refused,
# or reset by a server that is shutting down): not the build's fault, so the run is retried
# like a transient failure. (Not any OSError or TimeoutError: a build step's own are its
# business.)
PIPELINE_DATABASE_FAULTS = (
    ConnectionRefusedError,
    ConnectionResetError,
    asyncpg.CrashShutdownError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


class StopReason(Enum):
    USER = "cancelled by request"
    SHUTDOWN = "worker shutting down"
    LEASE_LOST = "lease lost"
    TIMEOUT = "build timeout"


@dataclass
class Slot:
    deployment: Deployment
    lease_token: UUID
    task: asyncio.Task[None]
    # The pipeline runs inside `task`; while it does, stopping the run cancels the task.
    in_pipeline: bool = False
    # The pipeline has returned; only the final write is left. The slot is free for the
    # next claim already, so claiming overlaps with that write instead of following it.
    settling: bool = False
    cancelled_task: bool = False
    stop_reason: StopReason | None = None
    started: float = field(default_factory=lambda: asyncio.get_running_loop().time())


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        database_url: str,
        pipeline: Pipeline,
        *,
        slots: int | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = Store(pool)
        # The writes of this worker's jobs that coincide go to the database together.
        self.writer = BatchWriter(self.store)
        self.queue = Queue(pool, settings)
        self.pipeline = pipeline
        self.slots = slots or settings.worker_slots
        self.worker_id = worker_id or make_worker_id()
        self.running: dict[int, Slot] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.listener = Listener(
            database_url,
            {QUEUE_CHANNEL: self._on_queue_notify, CANCEL_CHANNEL: self._on_cancel_notify},
            on_connect=self._wake.set,
        )
        self.claimed = 0

    # --- control ----------------------------------------------------------------------

    def stop(self, *, now: bool = False) -> None:
        """Stop claiming; `run` then lets running work finish within the grace period.
        With `now`, running work is handed back to the queue at once."""
        self._stopping.set()
        self._wake.set()
        if now:
            for deployment_id in list(self.running):
                self._interrupt(deployment_id, StopReason.SHUTDOWN)

    def _on_queue_notify(self, _payload: str) -> None:
        self._wake.set()

    def _on_cancel_notify(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._interrupt(int(payload), StopReason.USER)

    def _interrupt(self, deployment_id: int, reason: StopReason) -> None:
        slot = self.running.get(deployment_id)
        if slot is None or slot.stop_reason is not None:
            return
        slot.stop_reason = reason
        if slot.in_pipeline:
            slot.cancelled_task = slot.task.cancel()

    # --- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        log.info("worker started", worker=self.worker_id, slots=self.slots)
        background = [
            asyncio.create_task(self.listener.run(), name="listen"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._reaper_loop(), name="reaper"),
        ]
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            self.listener.stop()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            log.info("worker stopped", worker=self.worker_id)

    async def _claim_loop(self) -> None:
        fault_backoff = 0.1
        while not self._stopping.is_set():
            self._wake.clear()
            timeout = self.settings.queue_poll_seconds
            try:
                while self._free_slots() > 0 and not self._stopping.is_set():
                    claimed = await self.queue.claim_many(self.worker_id, self._free_slots())
                    for deployment in claimed:
                        self._start(deployment)
                    if not claimed:
                        break
                if self._free_slots() > 0:
                    timeout = await self._until_next_backoff(timeout)
                fault_backoff = 0.1
            except DATABASE_FAULTS as error:
                log.warning("cannot reach the queue", error=str(error) or type(error).__name__)
                timeout, fault_backoff = fault_backoff, min(fault_backoff * 2, 5.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _until_next_backoff(self, poll: float) -> float:
        next_run: datetime | None = await self.queue.next_run_at()
        if next_run is None:
            return poll
        wait = (next_run - datetime.now().astimezone()).total_seconds()
        return min(poll, max(wait, 0.01))

    def _free_slots(self) -> int:
        return self.slots - sum(1 for slot in self.running.values() if not slot.settling)

    def _start(self, deployment: Deployment) -> None:
        assert deployment.lease_token is not None
        self.claimed += 1
        task = asyncio.create_task(self._run_one(deployment, deployment.lease_token))
        self.running[deployment.id] = Slot(deployment, deployment.lease_token, task)
        task.add_done_callback(lambda done: self._finished(deployment.id, done))

    def _finished(self, deployment_id: int, task: asyncio.Task[None]) -> None:
        # Only this task's slot: a deployment handed back can be claimed again by this
        # worker before the task that handed it back has ended.
        slot = self.running.get(deployment_id)
        if slot is not None and slot.task is task:
            del self.running[deployment_id]
        self._wake.set()

    async def _drain(self) -> None:
        """Let running work finish within the grace period, then hand the rest back."""
        tasks = [slot.task for slot in self.running.values()]
        if not tasks:
            return
        log.info("waiting for running deployments", count=len(tasks))
        _done, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace_seconds)
        for deployment_id in list(self.running):
            self._interrupt(deployment_id, StopReason.SHUTDOWN)
        if pending:
            await asyncio.wait(pending, timeout=30)

    # --- one deployment ---------------------------------------------------------------

    async def _run_one(self, deployment: Deployment, lease_token: UUID) -> None:
        # Every log line of this run (its own task, its own context) names the deployment.
        structlog.contextvars.bind_contextvars(
            deployment_id=deployment.id, service=deployment.service_name
        )
        if deployment.trigger.get("delivery_id"):
            structlog.contextvars.bind_contextvars(delivery_id=deployment.trigger["delivery_id"])
        slot = self.running.get(deployment.id)
        job = Job(self.store, deployment, lease_token, writer=self.writer)
        try:
            await job.start()
            # Written with the job's first state change, in the same statement.
            job.log(
                f"attempt {deployment.attempts} of {deployment.max_attempts} "
                f"on worker {self.worker_id}",
                stream="system",
            )
            if slot is None:  # pragma: no cover - _start always registers first
                slot = self.running[deployment.id]
            outcome = await self._run_pipeline(job, slot)
            slot.settling = True
            self._wake.set()
            await self._settle(job, outcome, slot)
        except LeaseLost:
            log.warning(
                "lease lost; another worker owns the deployment now",
                deployment_id=deployment.id,
                service=deployment.service_name,
            )
        except DATABASE_FAULTS as error:
            # The lease runs out and the reaper hands the deployment on; nothing to do here.
            log.warning(
                "database fault while finishing a deployment",
                deployment_id=deployment.id,
                service=deployment.service_name,
                error=str(error),
            )
        finally:
            with contextlib.suppress(*DATABASE_FAULTS):
                await job.close()

    async def _run_pipeline(self, job: Job, slot: Slot) -> BuildResult | BaseException | None:
        """Run the pipeline in this task: its result, the exception it raised, or None when
        it was stopped (`slot.stop_reason` says why). Stopping it cancels this task while
        the pipeline runs, and only then (`_interrupt`)."""
        if slot.stop_reason is not None:  # stopped before it began
            return None
        task = asyncio.current_task()
        assert task is not None
        timer = asyncio.get_running_loop().call_later(
            self.settings.build_timeout_seconds,
            self._interrupt,
            job.deployment.id,
            StopReason.TIMEOUT,
        )
        slot.in_pipeline = True
        try:
            return await self.pipeline.run(job)
        except asyncio.CancelledError:
            if task.cancelling() > (1 if slot.cancelled_task else 0):
                raise  # someone else cancelled this task, and means it
            return None  # stopped by us, or the pipeline gave up by itself (a shutdown)
        except Exception as error:
            return error
        finally:
            slot.in_pipeline = False
            timer.cancel()
            if slot.cancelled_task:
                # Our cancel was delivered (or swallowed by the pipeline): take it back, so
                # this task's later awaits are not cancelled.
                slot.cancelled_task = False
                task.uncancel()

    async def _settle(
        self, job: Job, outcome: BuildResult | BaseException | None, slot: Slot
    ) -> None:
        deployment = job.deployment
        if outcome is None:
            reason = slot.stop_reason or StopReason.SHUTDOWN
            if reason is StopReason.USER:
                job.log("cancelled by request", stream="system")
                await job.finish(
                    Status.CANCELLED, error="cancelled by request", error_kind="cancelled"
                )
            elif reason is StopReason.TIMEOUT:
                await self._fail(
                    job,
                    f"the build took longer than BUILD_TIMEOUT_SECONDS "
                    f"({self.settings.build_timeout_seconds:g} s) and was stopped",
                    "timeout",
                )
            elif reason is StopReason.SHUTDOWN:
                job.log("worker shutting down: handed back to the queue", stream="system")
                await job.flush()
                await self.queue.hand_back(
                    deployment, job.lease_token, reason=None, refund_attempt=True
                )
            return
        if isinstance(outcome, BuildResult):
            await job.finish(Status.SUCCEEDED, image=outcome.image, digest=outcome.digest)
            log.info(
                "deployment succeeded",
                deployment_id=deployment.id,
                service=deployment.service_name,
                image=outcome.image,
            )
        elif isinstance(outcome, TransientError):
            await self._retry_or_fail(job, outcome)
        elif isinstance(outcome, PIPELINE_DATABASE_FAULTS):
            lost = TransientError(f"a connection failed ({type(outcome).__name__}: {outcome})")
            await self._retry_or_fail(job, lost)
        elif isinstance(outcome, LeaseLost):
            raise outcome
        elif isinstance(outcome, DeploymentFailure):
            await self._fail(job, str(outcome), "failed")
        else:
            log.error(
                "pipeline crashed",
                deployment_id=deployment.id,
                service=deployment.service_name,
                exc_info=outcome,
            )
            await self._fail(
                job,
                f"internal error in the build pipeline ({type(outcome).__name__})",
                "internal",
            )

    async def _retry_or_fail(self, job: Job, error: TransientError) -> None:
        deployment = job.deployment
        if deployment.attempts >= deployment.max_attempts:
            await self._fail(
                job,
                f"{error} (gave up after {deployment.attempts} attempts)",
                "transient",
            )
            return
        delay = self.settings.backoff_seconds(deployment.attempts)
        job.log(f"{error}; retrying in {delay:g} s", stream="system")
        await job.flush()
        await self.queue.hand_back(deployment, job.lease_token, delay=delay, reason=str(error))

    async def _fail(self, job: Job, message: str, kind: str) -> None:
        job.log(message, stream="system")
        await job.finish(Status.FAILED, error=message, error_kind=kind)

    # --- lease keeping ----------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.worker_heartbeat_seconds)
            held = {i: slot.lease_token for i, slot in self.running.items()}
            try:
                beat = await self.queue.heartbeat(held)
            except (*DATABASE_FAULTS, asyncpg.PostgresError) as error:
                # Whatever went wrong, the next beat tries again: a heartbeat loop that
                # ended would let every lease of this worker run out.
                log.warning("heartbeat failed", error=str(error) or type(error).__name__)
                continue
            for deployment_id in beat.cancel_requested:
                self._interrupt(deployment_id, StopReason.USER)
            for deployment_id in beat.lost:
                self._interrupt(deployment_id, StopReason.LEASE_LOST)

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reaper_interval_seconds)
            try:
                await self.queue.reap()
            except DATABASE_FAULTS as error:
                log.warning("reaper failed", error=str(error) or type(error).__name__)
