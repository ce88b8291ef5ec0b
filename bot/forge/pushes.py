"""A push to a branch, every forge alike: production deployments of the services that
deploy that branch and whose files changed, unless the head commit asks not to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.forge.intent import DeliveryIntent, Enqueue
from bot.forge.paths import SKIP_MARKERS, touches
from pipeline.store import Store
from pipeline.trigger import Source, Trigger


@dataclass(frozen=True)
class BranchPush:
    """What a forge's push payload says, read at the edge (each forge's models)."""

    source: Source
    repository: str  # as services name it
    ref: str
    branch: str | None  # None for a tag
    after: str
    deleted: bool
    head_message: str
    # Every path the pushed commits touched; None when the payload cannot tell.
    changed: frozenset[str] | None
    pusher: str | None


async def push_intent(
    store: Store,
    push: BranchPush,
    delivery_id: str,
    answer: Callable[..., dict[str, dict[str, Any]]],
) -> DeliveryIntent:
    """`answer(head_sha=…)`: where the forge's reporter answers."""
    if push.deleted or set(push.after) == {"0"}:
        return DeliveryIntent("ignored: branch deleted")
    if push.branch is None:
        return DeliveryIntent("ignored: not a branch")
    if SKIP_MARKERS.search(push.head_message):
        return DeliveryIntent("skipped: the head commit asks not to deploy")
    services = await store.services_for_repository(push.source, push.repository, push.branch)
    if not services:
        return DeliveryIntent("ignored: no service deploys this branch")
    intent = DeliveryIntent("queued")
    for service in services:
        if not touches(service, push.changed):
            continue
        trigger = Trigger(
            source=push.source,
            actor=push.pusher,
            ref=push.branch,
            commit_sha=push.after,
            reason="push",
            delivery_id=delivery_id,
            answer=answer(head_sha=push.after),
        )
        intent.enqueue.append(Enqueue(service, "production", push.branch, push.after, trigger))
    if not intent.enqueue:
        return DeliveryIntent("skipped: nothing under the services' directories changed")
    return intent
