"""The store: services, deployments and their logs. Owns every query but the queue's."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from pipeline.db.queries import q
from pipeline.errors import Conflict, InvalidTransition, NotFound
from pipeline.models import Deployment, LogLine, Page, Service, ServiceImage, Step
from pipeline.states import Status, can_transition, sources_of

PROVIDERS = ("github", "gitlab", "git")
_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class NewService:
    name: str
    repository: str
    provider: str = "git"
    branch: str = "main"
    root_dir: str = "."
    config: dict[str, Any] | None = None

    def validate(self) -> None:
        if not _SERVICE_NAME.match(self.name):
            raise Conflict(
                f"service name {self.name!r} is not allowed: use 1-63 lower-case letters, "
                "digits and dashes, starting and ending with a letter or digit"
            )
        if self.provider not in PROVIDERS:
            raise Conflict(f"provider {self.provider!r} is unknown; use one of {PROVIDERS}")
        if not self.repository.strip():
            raise Conflict("a service needs a repository")
        if not self.branch.strip():
            raise Conflict("a service needs a branch")


@dataclass(frozen=True)
class LogEntry:
    """One line of build output, before it is stored."""

    line: str
    stream: str = "stdout"
    at: datetime | None = None


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- services ---------------------------------------------------------------------

    async def create_service(self, new: NewService) -> Service:
        new.validate()
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
        config: dict[str, Any] | None = None,
    ) -> Service:
        if provider is not None and provider not in PROVIDERS:
            raise Conflict(f"provider {provider!r} is unknown; use one of {PROVIDERS}")
        row = await self.pool.fetchrow(
            q("service_update"), service_id, provider, repository, branch, root_dir, config
        )
        if row is None:
            raise NotFound(f"there is no service with id {service_id}")
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
        current = await self.get_deployment(deployment_id)
        if lease_token is not None and current.lease_token != lease_token:
            raise LeaseLost(deployment_id)
        if not can_transition(current.status, status):
            raise InvalidTransition(
                f"deployment {deployment_id} is {current.status}; it cannot become {status}"
            )
        raise InvalidTransition(f"deployment {deployment_id} changed while being updated")

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
