"""Push Hook and Merge Request Hook → a DeliveryIntent: production on a push, a preview `mr-<iid>`
for merge requests of services with previews, its image tags deleted when it closes. The
same rules as GitHub's (skip markers, root_dir / watch paths, several services a project)."""

from __future__ import annotations

from typing import Any

import structlog

from bot.forge.intent import DeliveryIntent, Enqueue
from bot.forge.paths import SKIP_MARKERS, touches
from bot.forge.previews import delete_preview_images
from bot.gitlab.context import SOURCE, GitLabContext, preview_environment
from bot.gitlab.models import MergeRequestEvent, Push
from pipeline.trigger import Trigger

log = structlog.get_logger(__name__)

PREVIEW_ACTIONS = frozenset({"open", "reopen", "update"})
CLOSE_ACTIONS = frozenset({"close", "merge"})


async def on_push(payload: Any, context: GitLabContext) -> DeliveryIntent:
    push = Push.from_payload(payload)
    if push.deleted:
        return DeliveryIntent("ignored: branch deleted")
    if push.branch is None:
        return DeliveryIntent("ignored: not a branch")
    if SKIP_MARKERS.search(push.head_message):
        return DeliveryIntent("skipped: the head commit asks not to deploy")
    project = push.project
    services = await context.store.services_for_repository(SOURCE, project.path, push.branch)
    if not services:
        return DeliveryIntent("ignored: no service deploys this branch")
    intent = DeliveryIntent("queued")
    for service in services:
        if not touches(service, push.changed):
            continue
        trigger = Trigger(
            source=SOURCE,
            actor=push.pusher,
            ref=push.branch,
            commit_sha=push.after,
            reason="push",
            delivery_id=context.delivery_id,
            answer=context.answer(project.path, project.id, head_sha=push.after),
        )
        intent.enqueue.append(Enqueue(service, "production", push.branch, push.after, trigger))
    if not intent.enqueue:
        return DeliveryIntent("skipped: nothing under the services' directories changed")
    return intent


async def on_merge_request(payload: Any, context: GitLabContext) -> DeliveryIntent:
    event = MergeRequestEvent.from_payload(payload)
    mr = event.mr
    services = [
        service
        for service in await context.store.services_for_repository(
            SOURCE, mr.project.path, mr.target_branch
        )
        if service.options.previews
    ]
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
