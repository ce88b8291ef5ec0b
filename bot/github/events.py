"""Push, pull_request and check_run deliveries → a DeliveryIntent. No HTTP here: only the store."""

from __future__ import annotations

from typing import Any

import structlog

from bot.forge.access import may_deploy
from bot.forge.intent import DeliveryIntent, Enqueue
from bot.forge.paths import SKIP_MARKERS, touches
from bot.forge.previews import delete_preview_images
from bot.github.access import GitHubMember
from bot.github.context import Context
from bot.github.models import CheckRunRequest, PullRequestEvent, Push, installation_id
from bot.github.previews import retire_preview_deployments
from bot.payload import optional_text
from pipeline.errors import NotFound
from pipeline.trigger import Trigger

log = structlog.get_logger(__name__)

PREVIEW_ACTIONS = frozenset({"opened", "synchronize", "reopened"})


async def on_push(payload: Any, context: Context) -> DeliveryIntent:
    push = Push.from_payload(payload)
    if push.deleted or set(push.after) == {"0"}:
        return DeliveryIntent("ignored: branch deleted")
    if push.branch is None:
        return DeliveryIntent("ignored: not a branch")
    if SKIP_MARKERS.search(push.head_message):
        return DeliveryIntent("skipped: the head commit asks not to deploy")
    services = await context.store.services_for_repository(
        "github", push.repo.full_name, push.branch
    )
    if not services:
        return DeliveryIntent("ignored: no service deploys this branch")
    intent = DeliveryIntent("queued")
    for service in services:
        if not touches(service, push.changed):
            continue
        trigger = Trigger(
            source="github",
            actor=push.pusher,
            ref=push.branch,
            commit_sha=push.after,
            reason="push",
            delivery_id=context.delivery_id,
            answer=context.answer(push.repo.full_name, head_sha=push.after),
        )
        intent.enqueue.append(Enqueue(service, "production", push.branch, push.after, trigger))
    if not intent.enqueue:
        return DeliveryIntent("skipped: nothing under the services' directories changed")
    return intent


def preview_environment(number: int) -> str:
    return f"pr-{number}"


async def on_pull_request(payload: Any, context: Context) -> DeliveryIntent:
    event = PullRequestEvent.from_payload(payload)
    pull = event.pull
    services = [
        service
        for service in await context.store.services_for_repository(
            "github", pull.repo.full_name, pull.base_ref
        )
        if service.options.previews
    ]
    if not services:
        return DeliveryIntent("ignored: no service has previews for this branch")
    environment = preview_environment(pull.number)
    if event.action == "closed":
        intent = DeliveryIntent("preview closed")
        for service in services:
            intent.after.append(
                delete_preview_images(context.settings, context.pool, service, environment)
            )
            intent.after.append(
                retire_preview_deployments(context, service, environment, pull.repo)
            )
        return intent
    if event.action not in PREVIEW_ACTIONS:
        return DeliveryIntent(f"ignored: pull_request {event.action}")
    if pull.fork:
        return DeliveryIntent(
            "ignored: pull requests from forks are built only on a /deploy comment"
        )
    intent = DeliveryIntent("queued")
    for service in services:
        trigger = Trigger(
            source="github",
            actor=pull.author.login,
            environment=environment,
            ref=pull.head_ref,
            commit_sha=pull.head_sha,
            reason=f"pull_request.{event.action}",
            delivery_id=context.delivery_id,
            answer=context.answer(pull.repo.full_name, pr=pull.number, head_sha=pull.head_sha),
        )
        intent.enqueue.append(Enqueue(service, environment, pull.head_ref, pull.head_sha, trigger))
    return intent


async def on_check_run(payload: Any, context: Context) -> DeliveryIntent:
    request = CheckRunRequest.from_payload(payload)
    if request.action != "rerequested":
        return DeliveryIntent(f"ignored: check_run {request.action}")
    if request.deployment_id is None:
        return DeliveryIntent("ignored: not a click-deploy check run")
    try:
        earlier = await context.store.get_deployment(request.deployment_id)
        service = await context.store.get_service(earlier.service_id)
    except NotFound:
        return DeliveryIntent("ignored: the check run's deployment is gone")
    if service.provider != "github" or service.repository != request.repo.full_name:
        return DeliveryIntent("ignored: the check run belongs to another repository")
    # Re-running needs write access on GitHub; a protected service also its allowlist.
    if (service.options.protected or service.options.problem is not None) and not (
        request.sender
        and await may_deploy(
            GitHubMember(await context.api(), request.repo, request.sender), service
        )
    ):
        return DeliveryIntent(
            f"refused: {service.name} is protected and the sender is not on its allowlist"
        )
    previous = earlier.trigger.get("answer", {}).get("github", {})
    trigger = Trigger(
        source="github",
        actor=request.sender,
        environment=earlier.environment,
        ref=earlier.ref,
        commit_sha=request.head_sha,
        reason="check_run.rerequested",
        delivery_id=context.delivery_id,
        answer=context.answer(
            request.repo.full_name, pr=previous.get("pr"), head_sha=request.head_sha
        ),
    )
    return DeliveryIntent(
        "queued",
        [Enqueue(service, earlier.environment, earlier.ref, request.head_sha, trigger)],
    )


async def on_installation(payload: Any, context: Context) -> DeliveryIntent:
    action = optional_text(payload, "action")
    installation = installation_id(payload)
    log.info("github installation", action=(action or "")[:100], installation=installation)
    if action in ("deleted", "suspend") and context.auth is not None and installation:
        context.auth.forget(installation)
    return DeliveryIntent(f"installation {action}")
