"""Push Hook and Merge Request Hook → a DeliveryIntent: production on a push, a preview `mr-<iid>`
for merge requests of services with previews, its image tags deleted when it closes. The
same rules as GitHub's (skip markers, root_dir / watch paths, several services a project)."""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog

from bot.forge.intent import DeliveryIntent, Enqueue
from bot.forge.previews import delete_preview_images, preview_services
from bot.forge.pushes import push_intent
from bot.gitlab.context import SOURCE, GitLabContext, preview_environment
from bot.gitlab.models import MergeRequestEvent, Push
from pipeline.trigger import Trigger

log = structlog.get_logger(__name__)

PREVIEW_ACTIONS = frozenset({"open", "reopen", "update"})
CLOSE_ACTIONS = frozenset({"close", "merge"})


async def on_push(payload: Any, context: GitLabContext) -> DeliveryIntent:
    push = Push.from_payload(payload)
    answer = partial(context.answer, push.project.path, push.project.id)
    return await push_intent(context.store, push, context.delivery_id, answer)


async def on_merge_request(payload: Any, context: GitLabContext) -> DeliveryIntent:
    event = MergeRequestEvent.from_payload(payload)
    mr = event.mr
    services = await preview_services(context.store, SOURCE, mr.project.path, mr.target_branch)
    if not services:
        return DeliveryIntent("ignored: no service has previews for this branch")
    environment = preview_environment(mr.iid)
    if event.action in CLOSE_ACTIONS:
        intent = DeliveryIntent("preview closed")
        intent.after += [
            delete_preview_images(context.settings, context.pool, s, environment) for s in services
        ]
        return intent
    if event.action not in PREVIEW_ACTIONS:
        return DeliveryIntent(f"ignored: merge request {event.action or 'without action'}")
    if event.action == "update" and not event.new_commits:
        return DeliveryIntent("ignored: merge request update without new commits")
    if mr.fork:
        return DeliveryIntent("ignored: merge requests from forks are built only on a /deploy note")
    intent = DeliveryIntent("queued")
    for service in services:
        trigger = Trigger(
            source=SOURCE,
            actor=event.user,
            environment=environment,
            ref=mr.source_branch,
            commit_sha=mr.head_sha,
            reason=f"merge_request.{event.action}",
            delivery_id=context.delivery_id,
            answer=context.answer(mr.project.path, mr.project.id, mr=mr.iid, head_sha=mr.head_sha),
        )
        intent.enqueue.append(Enqueue(service, environment, mr.source_branch, mr.head_sha, trigger))
    return intent
