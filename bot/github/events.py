"""Push, pull_request and check_run deliveries → a DeliveryIntent. No HTTP here: only the store."""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog

from bot.forge.intent import DeliveryIntent, Enqueue
from bot.forge.previews import delete_preview_images, preview_services
from bot.forge.pushes import push_intent
from bot.forge.requests import RequestKind
from bot.github.context import Context
from bot.github.models import PullRequestEvent, installation_id, push_from_payload
from bot.github.previews import retire_preview_deployments
from bot.payload import optional_text
from pipeline.trigger import Trigger

log = structlog.get_logger(__name__)

PREVIEW_ACTIONS = frozenset({"opened", "synchronize", "reopened"})


async def on_push(payload: Any, context: Context) -> DeliveryIntent:
    push = push_from_payload(payload)
    answer = partial(context.answer, push.repository)
    return await push_intent(context.store, push, context.delivery_id, answer)


# source, noun, environment prefix, reason, the query of a PR's deployments
PULL_REQUESTS = RequestKind(
    "github", "pull request", "pr", "/deploy comment", "forge_github_pr_deployments"
)


def preview_environment(number: int) -> str:
    return PULL_REQUESTS.environment(number)


async def on_pull_request(payload: Any, context: Context) -> DeliveryIntent:
    event = PullRequestEvent.from_payload(payload)
    pull = event.pull
    services = await preview_services(context.store, "github", pull.repo.full_name, pull.base_ref)
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


async def on_installation(payload: Any, context: Context) -> DeliveryIntent:
    action = optional_text(payload, "action")
    installation = installation_id(payload)
    log.info("github installation", action=(action or "")[:100], installation=installation)
    if action in ("deleted", "suspend") and context.auth is not None and installation:
        context.auth.forget(installation)
    return DeliveryIntent(f"installation {action}")
