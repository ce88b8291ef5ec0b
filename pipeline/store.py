"""The store: services, deployments and their logs. Owns every query but the queue's."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from pipeline import values
from pipeline.db.queries import q
from pipeline.errors import Conflict, InvalidTransition, NotFound
from pipeline.models import Deployment, LogLine, Page, Service, ServiceImage, Step
from pipeline.service_config import parse_config
from pipeline.states import Status, can_transition, sources_of


@dataclass(frozen=True)
class NewService:
    name: str
    repository: str
    provider: str = "git"
    branch: str = "main"
    root_dir: str = "."
    config: Mapping[str, Any] | None = None
    # A `file://` repository on this machine is allowed: set by the command line only.
    local: bool = False

    def checked(self) -> NewService:
        """This service as it is stored (a folder normalized, the config as validated), or
        `InvalidValue` naming the first value that is not allowed."""
        provider = values.provider(self.provider)
        return NewService(
            name=values.service_name(self.name),
            repository=values.repository(provider, self.repository, local=self.local),
            provider=provider,
            branch=values.branch(self.branch),
            root_dir=values.root_dir(self.root_dir),
            config=parse_config(self.config or {}).stored(),
            local=self.local,
        )


@dataclass(frozen=True)
class LogEntry:
    """One line of build output, before it is stored."""

    line: str
    stream: str = "stdout"
    at: datetime | None = None


@dataclass(frozen=True)
class JobWrite:
    """What one running deployment writes at one moment: log lines (numbered from
    `first_seq`), steps, and then perhaps a new state. Stored in one statement, so the
    lines and steps land together with the state they lead up to."""

    deployment: Deployment  # as the job last saw it
    lease_token: UUID | None
    first_seq: int
    logs: Sequence[LogEntry] = ()
    steps: Sequence[Step] = ()
    status: Status | None = None
    error: str | None = None
    error_kind: str | None = None
    image: str | None = None
    digest: str | None = None
    # The last build state the job reached on its way to `status`, when it went through
    # several since its previous write (cloning → [building, pushing] → succeeded).
    phase: Status | None = None


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- services ---------------------------------------------------------------------

    async def create_service(self, new: NewService) -> Service:
        new = new.checked()
        try:
            row = await self.pool.fetchrow(
                q("service_insert"),
                new.name,
                new.provider,
                new.repository,
                new.branch,
                new.root_dir,
                new.config or {},
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a service named {new.name!r} already exists") from None
        assert row is not None
        return Service.from_row(row)

    async def get_service(self, service_id: int) -> Service:
        row = await self.pool.fetchrow(q("service_by_id"), service_id)
        if row is None:
            raise NotFound(f"there is no service with id {service_id}")
        return Service.from_row(row)

    async def get_service_by_name(self, name: str) -> Service:
        row = await self.pool.fetchrow(q("service_by_name"), name)
        if row is None:
            raise NotFound(f"there is no service named {name!r}")
        return Service.from_row(row)

    async def find_service(self, name_or_id: str) -> Service:
        """A service by name, or by id when given digits (how people type it)."""
        if name_or_id.isdigit():
            row = await self.pool.fetchrow(q("service_by_id"), int(name_or_id))
            if row is not None:
                return Service.from_row(row)
        return await self.get_service_by_name(name_or_id)

    async def services_for_repository(
        self, provider: str, repository: str, branch: str
    ) -> list[Service]:
        rows = await self.pool.fetch(q("services_by_repository"), provider, repository, branch)
        return [Service.from_row(row) for row in rows]

    async def list_services(self) -> list[Service]:
        return [Service.from_row(row) for row in await self.pool.fetch(q("services_list"))]

    async def update_service(
        self,
        service_id: int,
        *,
        provider: str | None = None,
        repository: str | None = None,
        branch: str | None = None,
        root_dir: str | None = None,
        config: Mapping[str, Any] | None = None,
        local: bool = False,
    ) -> Service:
        """Change the fields given; the result is checked as a whole (a new provider must
        fit the repository) before anything is written. LOCAL: as in NewService."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(q("service_by_id_for_update"), service_id)
            if row is None:
                raise NotFound(f"there is no service with id {service_id}")
            current = Service.from_row(row)
            # Only what changes is checked (a value stored before a rule existed stays), and
            # a new provider must fit the repository, old or new.
            new_provider = current.provider if provider is None else values.provider(provider)
            if repository is not None or provider is not None:
                repository = values.repository(
                    new_provider,
                    current.repository if repository is None else repository,
                    local=local,
                )
            row = await connection.fetchrow(
                q("service_update"),
                service_id,
                new_provider,
                repository,
                None if branch is None else values.branch(branch),
                None if root_dir is None else values.root_dir(root_dir),
                None if config is None else parse_config(config).stored(),
            )
        assert row is not None
        return Service.from_row(row)

    async def delete_service(self, service_id: int) -> None:
        """Delete a service and its history; refused while it has deployments in flight."""
        async with self.pool.acquire() as connection, connection.transaction():
            pending = await connection.fetchval(q("service_pending_count"), service_id)
            if pending:
                raise Conflict(
                    f"service {service_id} has {pending} deployment(s) queued or running; "
                    "cancel them first"
                )
            if await connection.fetchval(q("service_delete"), service_id) is None:
                raise NotFound(f"there is no service with id {service_id}")

    # --- deployments ------------------------------------------------------------------

    async def get_deployment(self, deployment_id: int) -> Deployment:
        row = await self.pool.fetchrow(q("deployment_by_id"), deployment_id)
        if row is None:
            raise NotFound(f"there is no deployment with id {deployment_id}")
        return Deployment.from_row(row)

    async def list_deployments(
        self,
        service_id: int,
        *,
        limit: int = 20,
        before: int | None = None,
        status: Status | None = None,
    ) -> Page[Deployment]:
        """Newest first. Pass the page's `next_cursor` as `before` for the next page."""
        limit = max(1, min(limit, 500))
        rows = await self.pool.fetch(
            q("deployments_by_service"),
            service_id,
            before,
            limit + 1,
            str(status) if status else None,
        )
        items = [Deployment.from_row(row) for row in rows[:limit]]
        next_cursor = items[-1].id if len(rows) > limit else None
        return Page(items, next_cursor)

    async def set_status(
        self,
        deployment_id: int,
        status: Status,
        *,
        lease_token: UUID | None = None,
        error: str | None = None,
        error_kind: str | None = None,
        image: str | None = None,
    ) -> Deployment:
        """Move a deployment to `status`, if the state machine allows it from where it is."""
        row = await self.pool.fetchrow(
            q("deployment_set_status"),
            deployment_id,
            str(status),
            sources_of(status),
            lease_token,
            error,
            error_kind,
            image,
        )
        if row is not None:
            return Deployment.from_row(row)
        raise await self.refusal(deployment_id, status, lease_token)

    async def refusal(
        self, deployment_id: int, status: Status, lease_token: UUID | None
    ) -> InvalidTransition:
        """Why a guarded change of `deployment_id` to `status` did not apply."""
        current = await self.get_deployment(deployment_id)
        if lease_token is not None and current.lease_token != lease_token:
            return LeaseLost(deployment_id)
        if not can_transition(current.status, status):
            return InvalidTransition(
                f"deployment {deployment_id} is {current.status}; it cannot become {status}"
            )
        return InvalidTransition(f"deployment {deployment_id} changed while being updated")

    async def succeed(
        self,
        deployment_id: int,
        *,
        lease_token: UUID | None,
        image: str | None,
        digest: str | None,
    ) -> Deployment:
        """pushing → succeeded, and the image becomes its target's current one, together."""
        row = await self.pool.fetchrow(
            q("deployment_succeed"), deployment_id, lease_token, image, digest
        )
        if row is not None:
            return Deployment.from_row(row)
        current = await self.get_deployment(deployment_id)
        if lease_token is not None and current.lease_token != lease_token:
            raise LeaseLost(deployment_id)
        raise InvalidTransition(
            f"deployment {deployment_id} is {current.status}; it cannot become succeeded"
        )

    async def write_jobs(self, writes: Sequence[JobWrite]) -> list[Deployment | None]:
        """Store the writes of several running deployments in one statement (job_writes).
        Answers, per write, the deployment as it now is when its state change applied, and
        None when the write changes no state or the change did not apply (lease lost, or a
        move the state machine refuses; `refusal` tells which)."""
        moves = [write for write in writes if write.status is not None]
        now = datetime.now().astimezone()
        log_ids: list[int] = []
        log_seqs: list[int] = []
        log_ats: list[datetime] = []
        log_streams: list[str] = []
        log_lines: list[str] = []
        steps: list[Step] = []
        for write in writes:
            if write.logs:
                count = len(write.logs)
                log_ids += [write.deployment.id] * count
                log_seqs += range(write.first_seq, write.first_seq + count)
                for entry in write.logs:
                    log_ats.append(entry.at or now)
                    log_streams.append(entry.stream)
                    # PostgreSQL text cannot hold NUL bytes.
                    log_lines.append(entry.line.replace("\x00", "\ufffd"))
            steps += write.steps
        rows = await self.pool.fetch(
            q("job_writes"),
            [write.deployment.id for write in moves],
            [write.lease_token for write in moves],
            [str(write.status) for write in moves],
            [write.error for write in moves],
            [write.error_kind for write in moves],
            [write.image for write in moves],
            [write.digest for write in moves],
            [str(write.phase) if write.phase is not None else None for write in moves],
            log_ids,
            log_seqs,
            log_ats,
            log_streams,
            log_lines,
            [step.deployment_id for step in steps],
            [step.attempt for step in steps],
            [step.seq for step in steps],
            [step.kind for step in steps],
            [step.name for step in steps],
            [step.status for step in steps],
            [step.started_at for step in steps],
            [step.finished_at for step in steps],
            [step.seconds for step in steps],
            [step.detail for step in steps],
        )
        changed = {row["id"]: row for row in rows if row["id"] is not None}
        results: list[Deployment | None] = []
        for write in writes:
            row = changed.get(write.deployment.id) if write.status is not None else None
            # The answer holds the columns the change can have touched; the rest cannot
            # change while the lease is held, so the job's copy of them is current.
            results.append(write.deployment.updated(row) if row is not None else None)
        return results

    async def current_image(self, service_id: int, environment: str) -> ServiceImage | None:
        row = await self.pool.fetchrow(q("service_image"), service_id, environment)
        return ServiceImage.from_row(row) if row is not None else None

    async def record_steps(self, deployment_id: int, attempt: int, steps: Sequence[Step]) -> None:
        if not steps:
            return
        await self.pool.execute(
            q("steps_upsert"),
            deployment_id,
            attempt,
            [step.seq for step in steps],
            [step.kind for step in steps],
            [step.name for step in steps],
            [step.status for step in steps],
            [step.started_at for step in steps],
            [step.finished_at for step in steps],
            [step.seconds for step in steps],
            [step.detail for step in steps],
        )

    async def list_steps(self, deployment_id: int) -> list[Step]:
        return [Step.from_row(row) for row in await self.pool.fetch(q("steps_list"), deployment_id)]

    async def set_progress(
        self,
        deployment_id: int,
        step: int | None,
        steps_total: int | None,
        message: str | None,
        *,
        phase: str | None = None,
        lease_token: UUID | None = None,
    ) -> None:
        updated = await self.pool.fetchval(
            q("deployment_set_progress"),
            deployment_id,
            lease_token,
            step,
            steps_total,
            message,
            phase,
        )
        if updated is None:
            current = await self.get_deployment(deployment_id)
            if lease_token is not None and current.lease_token != lease_token:
                raise LeaseLost(deployment_id)
            raise InvalidTransition(
                f"deployment {deployment_id} is {current.status}; its progress is final"
            )

    # --- logs -------------------------------------------------------------------------

    async def last_log_seq(self, deployment_id: int) -> int:
        value = await self.pool.fetchval(q("logs_last_seq"), deployment_id)
        return int(value or 0)

    async def append_logs(
        self, deployment_id: int, first_seq: int, entries: Sequence[LogEntry]
    ) -> int:
        """Store a batch of lines numbered from `first_seq`, in one round trip; return the
        next free seq."""
        if not entries:
            return first_seq
        now = datetime.now().astimezone()
        seqs = list(range(first_seq, first_seq + len(entries)))
        await self.pool.execute(
            q("logs_append"),
            deployment_id,
            seqs,
            [entry.at or now for entry in entries],
            [entry.stream for entry in entries],
            # PostgreSQL text cannot hold NUL bytes.
            [entry.line.replace("\x00", "\ufffd") for entry in entries],
        )
        return seqs[-1] + 1

    async def read_logs(
        self, deployment_id: int, after: int = 0, limit: int = 1000
    ) -> Page[LogLine]:
        """Lines after the cursor `after` (a seq); `next_cursor` is where to read on from."""
        rows = await self.pool.fetch(q("logs_after"), deployment_id, after, max(1, limit))
        lines = [LogLine.from_row(row) for row in rows]
        return Page(lines, lines[-1].seq if lines else after)


class LeaseLost(InvalidTransition):
    """This worker no longer holds the deployment: the reaper gave it to someone else."""

    def __init__(self, deployment_id: int) -> None:
        super().__init__(f"deployment {deployment_id} is no longer leased to this worker")
        self.deployment_id = deployment_id


# Faults after which a statement may or may not have been applied; any other database error
# means the server refused the statement as a whole.
_CONNECTION_FAULTS = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError,
)


class Flushable(Protocol):
    def flush_in_background(self) -> None: ...


class BatchWriter:
    """Coalesces the writes of one worker's running deployments: writes made while another
    is on its way to the database, or in the same turn of the event loop, go together as one
    `Store.write_jobs` statement. Each caller still waits until its own write is committed,
    so nothing is weaker than writing alone; there are only fewer round trips and commits.

    A statement the database refuses (a bad step kind, say) is not allowed to fail the other
    deployments' writes: the batch is then written again one write at a time, so the refusal
    reaches only the write that caused it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[JobWrite, asyncio.Future[Deployment | None]]] = []
        self._sender: asyncio.Task[None] | None = None
        self.statements = 0
        # Jobs with something buffered, flushed together at the next tick: one timer for
        # all of them, instead of one each (insertion-ordered; the values are unused).
        self._due: dict[Flushable, None] = {}
        self._tick: asyncio.TimerHandle | None = None

    def flush_soon(self, job: Flushable, within: float) -> None:
        """Have `job` flush itself within `within` seconds. Raises RuntimeError outside
        an event loop."""
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(within, self._on_tick)
        self._due[job] = None

    def not_due(self, job: Flushable) -> None:
        self._due.pop(job, None)

    def _on_tick(self) -> None:
        self._tick = None
        due, self._due = self._due, {}
        for job in due:
            job.flush_in_background()

    async def write(self, write: JobWrite) -> Deployment | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Deployment | None] = loop.create_future()
        self._pending.append((write, future))
        if self._sender is None:
            self._sender = loop.create_task(self._send_pending())
        return await future

    async def _send_pending(self) -> None:
        try:
            while self._pending:
                # One turn of the loop first: jobs woken by the previous answer (or started
                # together) join this batch instead of waiting for the next.
                await asyncio.sleep(0)
                batch, self._pending = self._pending, []
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[tuple[JobWrite, asyncio.Future[Deployment | None]]]) -> None:
        self.statements += 1
        try:
            results = await self.store.write_jobs([write for write, _future in batch])
        except asyncpg.PostgresError as error:
            if len(batch) > 1 and not isinstance(error, _CONNECTION_FAULTS):
                for item in batch:
                    await self._send([item])
                return
            _fail(batch, error)
            return
        except Exception as error:
            _fail(batch, error)
            return
        except BaseException:  # cancelled: the callers must not wait forever
            for _write, future in batch:
                future.cancel()
            raise
        for (_write, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _fail(
    batch: list[tuple[JobWrite, asyncio.Future[Deployment | None]]], error: BaseException
) -> None:
    for _write, future in batch:
        if not future.done():
            future.set_exception(error)
