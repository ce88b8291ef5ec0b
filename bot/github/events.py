"""Push, pull_request and check_run deliveries → a Plan. No HTTP here: only the store."""

from __future__ import annotations

import re
from typing import Any

import structlog

from bot.github.access import may_deploy
from bot.github.models import CheckRunRequest, PullRequestEvent, Push, installation_id
from bot.github.plan import Context, Enqueue, Plan
from bot.github.previews import delete_preview_images, retire_preview_deployments
from bot.payload import optional_text
from pipeline.errors import NotFound
from pipeline.models import Service
from pipeline.trigger import Trigger

log = structlog.get_logger(__name__)

SKIP_MARKERS = re.compile(r"\[(skip deploy|deploy skip|skip ci|ci skip)\]", re.IGNORECASE)
PREVIEW_ACTIONS = frozenset({"opened", "synchronize", "reopened"})


def _norm(path: str) -> str:
    path = path.strip().strip("/")
    return "" if path in ("", ".") else path + "/"


def watched(service: Service) -> list[str]:
    """Path prefixes whose change deploys the service: its root directory and
    `config.watch`. An empty prefix is the whole repository."""
    return [_norm(service.root_dir), *(_norm(item) for item in service.options.watch)]


def touches(service: Service, changed: frozenset[str] | None) -> bool:
    if changed is None:
        return True  # the payload cannot tell: deploy
    prefixes = watched(service)
    if "" in prefixes:
        return True
    return any(path.startswith(prefix) for path in changed for prefix in prefixes)


async def on_push(payload: Any, context: Context) -> Plan:
    push = Push.from_payload(payload)
    if push.deleted or set(push.after) == {"0"}:
        return Plan("ignored: branch deleted")
    if push.branch is None:
        return Plan("ignored: not a branch")
    if SKIP_MARKERS.search(push.head_message):
        return Plan("skipped: the head commit asks not to deploy")
    services = await context.store.services_for_repository(
        "github", push.repo.full_name, push.branch
    )
    if not services:
        return Plan("ignored: no service deploys this branch")
    plan = Plan("queued")
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
        plan.enqueue.append(Enqueue(service, "production", push.branch, push.after, trigger))
    if not plan.enqueue:
        return Plan("skipped: nothing under the services' directories changed")
    return plan


def preview_environment(number: int) -> str:
    return f"pr-{number}"


async def on_pull_request(payload: Any, context: Context) -> Plan:
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
        return Plan("ignored: no service has previews for this branch")
    environment = preview_environment(pull.number)
    if event.action == "closed":
        plan = Plan("preview closed")
        for service in services:
            plan.after.append(
                delete_preview_images(context.settings, context.pool, service, environment)
            )
            plan.after.append(retire_preview_deployments(context, service, environment, pull.repo))
        return plan
    if event.action not in PREVIEW_ACTIONS:
        return Plan(f"ignored: pull_request {event.action}")
    if pull.fork:
        return Plan("ignored: pull requests from forks are built only on a /deploy comment")
    plan = Plan("queued")
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
        plan.enqueue.append(Enqueue(service, environment, pull.head_ref, pull.head_sha, trigger))
    return plan


async def on_check_run(payload: Any, context: Context) -> Plan:
    request = CheckRunRequest.from_payload(payload)
    if request.action != "rerequested":
        return Plan(f"ignored: check_run {request.action}")
    if request.deployment_id is None:
        return Plan("ignored: not a click-deploy check run")
    try:
        earlier = await context.store.get_deployment(request.deployment_id)
        service = await context.store.get_service(earlier.service_id)
    except NotFound:
        return Plan("ignored: the check run's deployment is gone")
    if service.provider != "github" or service.repository != request.repo.full_name:
        return Plan("ignored: the check run belongs to another repository")
    # Re-running needs write access on GitHub; a protected service also its allowlist.
    if (service.options.protected or service.options.problem is not None) and not (
        request.sender and await may_deploy(await context.api(), service, request.sender)
    ):
        return Plan(f"refused: {service.name} is protected and the sender is not on its allowlist")
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
    return Plan(
        "queued",
        [Enqueue(service, earlier.environment, earlier.ref, request.head_sha, trigger)],
    )


async def on_installation(payload: Any, context: Context) -> Plan:
    action = optional_text(payload, "action")
    installation = installation_id(payload)
    log.info("github installation", action=(action or "")[:100], installation=installation)
    if action in ("deleted", "suspend") and context.auth is not None and installation:
        context.auth.forget(installation)
    return Plan(f"installation {action}")
