"""Rollback: put an earlier successful image of a target back, without a rebuild.

A rollback is a deployment like any other (queued, one active per target, reported where
it was asked for); its trigger names the deployment whose image comes back, and the
pipeline re-tags that image in the registry instead of building.
"""

from __future__ import annotations

from pipeline.db.queries import q
from pipeline.errors import Conflict, NotFound
from pipeline.models import Deployment, Service
from pipeline.queue.queue import Queue
from pipeline.states import Status
from pipeline.store import Store
from pipeline.trigger import Trigger


class NothingToRollBack(Conflict):
    """No earlier successful image of this target to go back to."""


async def rollback_target(
    store: Store, service: Service, environment: str, to: int | None = None
) -> Deployment:
    """The deployment whose image a rollback restores: `to` when given (checked), else the
    newest earlier success whose image differs from what runs now."""
    if to is not None:
        try:
            chosen = await store.get_deployment(to)
        except NotFound:
            raise NothingToRollBack(f"there is no deployment {to} to roll back to") from None
        if chosen.service_id != service.id or chosen.environment != environment:
            raise NothingToRollBack(
                f"deployment {to} is not a deployment of {service.name} ({environment})"
            )
        if chosen.status != Status.SUCCEEDED or not chosen.image or not chosen.digest:
            raise NothingToRollBack(
                f"deployment {to} did not succeed; there is no image to restore"
            )
        return chosen
    current = await store.current_image(service.id, environment)
    if current is None:
        raise NothingToRollBack(f"{service.name} ({environment}) has never been deployed")
    row = await store.pool.fetchrow(
        q("rollback_candidate"), service.id, environment, current.deployment_id, current.digest
    )
    if row is None:
        raise NothingToRollBack(
            f"{service.name} ({environment}) has no earlier successful image to roll back to"
        )
    return Deployment.from_row(row)


async def enqueue_rollback(
    store: Store,
    queue: Queue,
    service: Service,
    environment: str = "production",
    *,
    trigger: Trigger | None = None,
    to: int | None = None,
) -> Deployment:
    """Queue a rollback of `service` in `environment`; raises NothingToRollBack (with a
    message for the person who asked) when there is nothing to go back to."""
    target = await rollback_target(store, service, environment, to)
    asked = trigger or Trigger(source="cli")
    final = asked.model_copy(
        update={
            "environment": environment,
            "ref": target.ref,
            "commit_sha": target.commit_sha,
            "rollback_to": target.id,
            "reason": asked.reason or f"rollback to deployment {target.id}",
        }
    )
    return await queue.enqueue(
        service.id,
        environment=environment,
        ref=target.ref,
        commit_sha=target.commit_sha,
        trigger=final.to_json(),
    )


__all__ = ["NothingToRollBack", "enqueue_rollback", "rollback_target"]
