"""check_run deliveries of our own check runs: "Re-run" (`rerequested`) and the buttons
the reporter puts on them (`requested_action`: Redeploy, Rollback, Cancel, as the state
allows). The buttons obey the rules of `/deploy` comments (bot/forge/access.py): write
access, and a protected service's allowlist."""

from __future__ import annotations

from typing import Any, Final

from bot.forge.access import NOTHING_CANCELLED, may_deploy, refusal
from bot.forge.intent import DeliveryIntent, Enqueue
from bot.github.access import GitHubMember
from bot.github.context import Context
from bot.github.models import CheckRunRequest
from pipeline.errors import NotFound
from pipeline.models import Deployment, Service
from pipeline.rollback import NothingToRollBack, rollback_target
from pipeline.states import FINAL
from pipeline.trigger import Trigger

REDEPLOY: Final = "redeploy"
ROLLBACK: Final = "rollback"
CANCEL: Final = "cancel"


def check_run_actions(deployment: Deployment, can_roll_back: bool) -> list[dict[str, str]]:
    """The buttons of a deployment's check run (GitHub: at most 3; label and identifier
    at most 20 characters, description 40)."""
    if deployment.status not in FINAL:  # queued or running
        return [{"label": "Cancel", "description": "Stop this deployment", "identifier": CANCEL}]
    actions = [
        {
            "label": "Redeploy",
            "description": "Build and deploy this commit again",
            "identifier": REDEPLOY,
        }
    ]
    if can_roll_back and deployment.environment == "production":
        actions.append(
            {
                "label": "Rollback",
                "description": "Put the previous image back",
                "identifier": ROLLBACK,
            }
        )
    return actions


async def on_check_run(payload: Any, context: Context) -> DeliveryIntent:
    request = CheckRunRequest.from_payload(payload)
    if request.action not in ("rerequested", "requested_action"):
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
    if request.action == "rerequested":
        return await rerun(context, request, earlier, service)
    return await pressed(context, request, earlier, service)


async def rerun(
    context: Context, request: CheckRunRequest, earlier: Deployment, service: Service
) -> DeliveryIntent:
    # Re-running needs write access on GitHub itself; a protected service its allowlist.
    if (service.options.protected or service.options.problem is not None) and not (
        request.sender
        and await may_deploy(
            GitHubMember(await context.api(), request.repo, request.sender), service
        )
    ):
        return DeliveryIntent(
            f"refused: {service.name} is protected and the sender is not on its allowlist"
        )
    return redeploy(context, request, earlier, service, "check_run.rerequested")


def redeploy(
    context: Context,
    request: CheckRunRequest,
    earlier: Deployment,
    service: Service,
    reason: str,
) -> DeliveryIntent:
    previous = earlier.trigger.get("answer", {}).get("github", {})
    trigger = Trigger(
        source="github",
        actor=request.sender,
        environment=earlier.environment,
        ref=earlier.ref,
        commit_sha=request.head_sha,
        reason=reason,
        delivery_id=context.delivery_id,
        answer=context.answer(
            request.repo.full_name, pr=previous.get("pr"), head_sha=request.head_sha
        ),
    )
    return DeliveryIntent(
        "queued",
        [Enqueue(service, earlier.environment, earlier.ref, request.head_sha, trigger)],
    )


async def pressed(
    context: Context, request: CheckRunRequest, earlier: Deployment, service: Service
) -> DeliveryIntent:
    """A button: the same rules as a comment, then what it says."""
    if request.sender is None:
        return DeliveryIntent("refused: the delivery names no sender")
    member = GitHubMember(await context.api(), request.repo, request.sender)
    lacking = await member.write_access()
    if lacking is not None:
        return DeliveryIntent(f"refused: @{member.login} lacks {lacking}")
    if request.identifier == CANCEL:
        if not await may_deploy(member, service):
            return DeliveryIntent(f"refused: {refusal(member, service, NOTHING_CANCELLED)}")
        outcome = await context.queue.cancel(earlier.id)
        return DeliveryIntent(f"cancel: {outcome.outcome}")
    if not await may_deploy(member, service):
        return DeliveryIntent(f"refused: {refusal(member, service)}")
    if request.identifier == REDEPLOY:
        return redeploy(context, request, earlier, service, "check_run.redeploy")
    if request.identifier == ROLLBACK:
        return await roll_back(context, request, service)
    return DeliveryIntent(f"ignored: no button {str(request.identifier)[:40]!r}")


async def roll_back(context: Context, request: CheckRunRequest, service: Service) -> DeliveryIntent:
    try:
        target = await rollback_target(context.store, service, "production")
    except NothingToRollBack as error:
        return DeliveryIntent(f"refused: nothing to roll back: {error}")
    trigger = Trigger(
        source="github",
        actor=request.sender,
        environment="production",
        ref=target.ref,
        commit_sha=target.commit_sha,
        reason="check_run.rollback",
        delivery_id=context.delivery_id,
        rollback_to=target.id,
        answer=context.answer(request.repo.full_name, head_sha=target.commit_sha),
    )
    return DeliveryIntent(
        "queued", [Enqueue(service, "production", target.ref, target.commit_sha, trigger)]
    )
