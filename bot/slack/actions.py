"""The buttons (Block Kit `block_actions`): Cancel, Redeploy and Rollback on a deployment's
message, and Deploy on a protected service's confirmation prompt. Each authorizes the
person who clicked, as the slash command does."""

from __future__ import annotations

import json
from typing import Any

import structlog

from bot.commands.parser import Command, deployment_id
from bot.slack import blocks
from bot.slack.commands import (
    Asker,
    SlackContext,
    allowed,
    enqueue_deploy,
    find_service,
    run_cancel,
    run_rollback,
)
from pipeline.errors import ClickDeployError, NotFound
from pipeline.values import valid_ref

log = structlog.get_logger(__name__)


def _text(body: Any, *path: str) -> str | None:
    """The non-empty string at `path` in a payload, or None (a part missing or of another
    type: clicks come from Slack, but their payload is still read with care)."""
    value = body
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else None


def asker_of(body: dict[str, Any]) -> Asker | None:
    channel = _text(body, "channel", "id") or _text(body, "container", "channel_id")
    return Asker.of(_text(body, "user", "id"), channel)


def action_of(body: dict[str, Any]) -> dict[str, Any]:
    actions = body.get("actions")
    if isinstance(actions, list) and actions and isinstance(actions[0], dict):
        return actions[0]
    return {}


async def run_action(context: SlackContext, body: dict[str, Any]) -> None:
    """After the acknowledgement: one button click."""
    asker = asker_of(body)
    action = action_of(body)
    if asker is None:
        return
    action_id = action.get("action_id")
    value = action.get("value")
    value = value if isinstance(value, str) else ""
    number = deployment_id(value)
    try:
        if action_id == blocks.CANCEL and number is not None:
            await run_cancel(context, asker, number)
        elif action_id == blocks.REDEPLOY and number is not None:
            await redeploy(context, asker, number)
        elif action_id == blocks.ROLLBACK and value:
            # The Rollback button carries a confirm dialog: the click is the yes.
            await run_rollback(context, asker, value, confirmed=True)
        elif action_id == blocks.CONFIRM_DEPLOY:
            await confirmed_deploy(context, asker, value)
    except ClickDeployError as error:
        await context.say(asker, str(error))
    except Exception as error:
        log.warning("slack action failed", error=f"{type(error).__name__}: {error}"[:300])
        await context.say(asker, "Something went wrong on our side; nothing was changed.")


async def redeploy(context: SlackContext, asker: Asker, deployment_id: int) -> None:
    store = context.runtime.store
    try:
        earlier = await store.get_deployment(deployment_id)
    except NotFound:
        await context.say(asker, f"There is no deployment #{deployment_id}.")
        return
    service = await store.get_service(earlier.service_id)
    if not await allowed(context, asker, service):
        return
    # A protected service's Redeploy button carries a confirm dialog; the click is the yes.
    await enqueue_deploy(
        context,
        asker,
        service,
        earlier.ref,
        environment=earlier.environment,
        commit_sha=earlier.commit_sha,
        reason=f"redeploy of #{earlier.id} from Slack",
    )


async def confirmed_deploy(context: SlackContext, asker: Asker, value: str) -> None:
    try:
        asked = json.loads(value)
    except (ValueError, RecursionError):
        return
    if not isinstance(asked, dict) or not isinstance(asked.get("service"), str):
        return
    if asked.get("rollback") is True:
        await run_rollback(context, asker, asked["service"], confirmed=True)
        return
    ref = asked.get("ref")
    if ref is not None and not (isinstance(ref, str) and valid_ref(ref)):
        await context.say(asker, "That ref is not a branch, tag or commit. Nothing was queued.")
        return
    command = Command("deploy", asked["service"], ref)
    service = await find_service(context, asker, command.service or "")
    if service is None or not await allowed(context, asker, service):
        return
    await enqueue_deploy(context, asker, service, command.ref, reason="/deploy (confirmed)")
