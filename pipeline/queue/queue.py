"""The deployments table as a queue: enqueue, claim, heartbeat, hand back, reap, cancel."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

import asyncpg
import structlog

from pipeline import values
from pipeline.db.queries import q
from pipeline.errors import NotFound
from pipeline.models import Deployment
from pipeline.settings import Settings
from pipeline.states import Status, sources_of

log = structlog.get_logger(__name__)

QUEUE_CHANNEL = "click_deploy_queue"
CANCEL_CHANNEL = "click_deploy_cancel"
LOGS_CHANNEL = "click_deploy_logs"


class CancelOutcome(StrEnum):
    CANCELLED = "cancelled"  # it was queued: cancelled at once
    REQUESTED = "requested"  # it is running: its worker was told
    ALREADY_FINISHED = "already finished"


@dataclass(frozen=True)
class CancelResult:
    outcome: CancelOutcome
    deployment: Deployment


@dataclass(frozen=True)
class Heartbeat:
    cancel_requested: frozenset[int]
    lost: frozenset[int]


@dataclass(frozen=True)
class Reaped:
    deployment_id: int
    requeued: bool
    worker_id: str | None


class Queue:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    async def enqueue(
        self,
        service_id: int,
        *,
        environment: str = "production",
        ref: str | None = None,
        commit_sha: str | None = None,
        trigger: Mapping[str, Any] | None = None,
        max_attempts: int | None = None,
    ) -> Deployment:
        """Queue a deployment; older queued ones for the same target become superseded.
        One transaction: the INSERT and its NOTIFY commit together."""
        # Every entry point checks these first; checked again where they are stored, so no
        # path can queue a target or ref the rest of the pipeline cannot use.
        values.environment(environment)
        if ref is not None:
            values.ref(ref)
        attempts = max_attempts or self.settings.retry_max_attempts
        try:
            row = await self.pool.fetchrow(
                q("enqueue"),
                service_id,
                environment,
                ref,
                commit_sha,
                dict(trigger or {}),
                attempts,
            )
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"there is no service with id {service_id}") from None
        assert row is not None
        return Deployment.from_row(row)

    async def claim(self, worker_id: str) -> Deployment | None:
        """Take the oldest runnable deployment, or None. Moves it to `cloning` with a lease."""
        claimed = await self.claim_many(worker_id, 1)
        return claimed[0] if claimed else None

    async def claim_many(self, worker_id: str, limit: int) -> list[Deployment]:
        """Take up to `limit` runnable deployments (each of another target) at once."""
        try:
            rows = await self.pool.fetch(
                claim_statement(limit), worker_id, self.settings.worker_lease_seconds
            )
        except asyncpg.UniqueViolationError:
            # Lost a race for the same target; the database kept the rule. Nothing claimed.
            return []
        return [Deployment.from_row(row) for row in rows]

    async def next_run_at(self) -> datetime | None:
        """When the earliest deployment that waits for its backoff becomes runnable."""
        value: datetime | None = await self.pool.fetchval(q("next_run_at"))
        return value

    async def heartbeat(self, held: Mapping[int, UUID]) -> Heartbeat:
        if not held:
            return Heartbeat(frozenset(), frozenset())
        ids = list(held)
        rows = await self.pool.fetch(
            q("heartbeat"), ids, [held[i] for i in ids], self.settings.worker_lease_seconds
        )
        alive = {row["id"] for row in rows}
        return Heartbeat(
            cancel_requested=frozenset(row["id"] for row in rows if row["cancel_requested"]),
            lost=frozenset(set(ids) - alive),
        )

    async def hand_back(
        self,
        deployment: Deployment,
        lease_token: UUID | None,
        *,
        delay: float = 0.0,
        reason: str | None = None,
        refund_attempt: bool = False,
    ) -> Deployment | None:
        """Return a running deployment to the queue (or supersede it when a newer request
        for its target waits). None when this lease no longer holds it."""
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                q("target_lock"), deployment.service_id, deployment.environment
            )
            row = await connection.fetchrow(
                q("hand_back"),
                deployment.id,
                lease_token,
                datetime.now().astimezone() + timedelta(seconds=delay),
                reason,
                1 if refund_attempt else 0,
            )
            if row is not None:
                await connection.execute(q("notify_queue"), deployment.id)
        return Deployment.from_row(row) if row is not None else None

    async def reap(self) -> list[Reaped]:
        """Deployments whose worker stopped heart-beating: back to the queue, or failed
        after their last attempt."""
        reaped: list[Reaped] = []
        async with self.pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(q("expired_leases"))
            for row in rows:
                last_beat = row["heartbeat_at"]
                since = f" (last heartbeat {last_beat:%Y-%m-%d %H:%M:%S %Z})" if last_beat else ""
                lost = f"worker {row['worker_id']} was lost{since}"
                if row["attempts"] >= row["max_attempts"]:
                    await connection.execute(
                        q("deployment_set_status"),
                        row["id"],
                        str(Status.FAILED),
                        sources_of(Status.FAILED),
                        None,
                        f"{lost} on attempt {row['attempts']} of {row['max_attempts']}; giving up",
                        "worker_lost",
                        None,
                    )
                    requeued = False
                else:
                    await connection.execute(
                        q("target_lock"), row["service_id"], row["environment"]
                    )
                    await connection.execute(
                        q("hand_back"),
                        row["id"],
                        None,
                        datetime.now().astimezone(),
                        f"{lost}; retrying",
                        0,
                    )
                    requeued = True
                await connection.execute(q("notify_queue"), row["id"])
                reaped.append(Reaped(row["id"], requeued, row["worker_id"]))
        for item in reaped:
            log.warning(
                "lease expired",
                deployment_id=item.deployment_id,
                worker=item.worker_id,
                requeued=item.requeued,
            )
        return reaped

    async def cancel(self, deployment_id: int) -> CancelResult:
        """Cancel at once if queued; if running, flag it and tell its worker via NOTIFY."""
        row = await self.pool.fetchrow(q("cancel_queued"), deployment_id)
        if row is not None:
            return CancelResult(CancelOutcome.CANCELLED, Deployment.from_row(row))
        row = await self.pool.fetchrow(q("cancel_running"), deployment_id)
        if row is not None:
            return CancelResult(CancelOutcome.REQUESTED, Deployment.from_row(row))
        current = await self.pool.fetchrow(q("deployment_by_id"), deployment_id)
        if current is None:
            raise NotFound(f"there is no deployment with id {deployment_id}")
        deployment = Deployment.from_row(current)
        if deployment.status == Status.QUEUED or deployment.status.is_active:
            # It moved between our two statements (claimed just now): try once more.
            return await self.cancel(deployment_id)
        return CancelResult(CancelOutcome.ALREADY_FINISHED, deployment)


@functools.cache
def claim_statement(limit: int) -> str:
    """The claim with its LIMIT written in: a statement (and a cached plan) per batch size.
    With LIMIT as a parameter, PostgreSQL's generic plan looks dearer than one made for the
    call at hand, so it planned every claim anew, which cost more than the claim itself."""
    if limit < 1:
        raise ValueError(f"claim at least one deployment, not {limit}")
    sql = q("claim")
    assert sql.count("LIMIT $3") == 1
    return sql.replace("LIMIT $3", f"LIMIT {int(limit)}")
