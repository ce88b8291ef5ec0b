"""The buttons (Block Kit `block_actions`): Cancel, Redeploy and Rollback on a deployment's
message, and Deploy on a protected service's confirmation prompt. Each is a command for
the one runner (bot/forge/commands.py), for the person who clicked, as a slash command
is; a button behind a confirm dialog comes confirmed."""

from __future__ import annotations

import json
from typing import Any

from bot.commands.parser import Command, Response, Result, deployment_id
from bot.slack import blocks
from bot.slack.commands import carry_out
from bot.slack.member import Asker, SlackContext
from pipeline.values import valid_ref


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


def command_of(action: dict[str, Any]) -> tuple[Result, bool] | None:
    """The command a click asks for, and whether it comes confirmed; None for a click that
    asks for nothing (an unknown button, a value of another shape)."""
    action_id = action.get("action_id")
    value = action.get("value")
    value = value if isinstance(value, str) else ""
    number = deployment_id(value)
    if action_id == blocks.CANCEL and number is not None:
        return Command("cancel", target=str(number)), False
    if action_id == blocks.REDEPLOY and number is not None:
        # A protected service's Redeploy button carries a confirm dialog: the click is the yes.
        return Command("deploy", target=str(number)), True
    if action_id == blocks.ROLLBACK and value:
        return Command("rollback", service=value), True  # behind a confirm dialog too
    if action_id == blocks.CONFIRM_DEPLOY:
        return confirmed_command(value)
    return None


def confirmed_command(value: str) -> tuple[Result, bool] | None:
    """The Deploy (or Roll back) button of a protected service's confirmation prompt."""
    try:
        asked = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(asked, dict) or not isinstance(asked.get("service"), str):
        return None
    if asked.get("rollback") is True:
        return Command("rollback", service=asked["service"]), True
    ref = asked.get("ref")
    if ref is not None and not (isinstance(ref, str) and valid_ref(ref)):
        return Response(
            "usage", "That ref is not a branch, tag or commit. Nothing was queued."
        ), True
    return Command("deploy", service=asked["service"], ref=ref), True


async def run_action(context: SlackContext, body: dict[str, Any]) -> None:
    """After the acknowledgement: one button click."""
    asker = asker_of(body)
    asked = command_of(action_of(body))
    if asker is not None and asked is not None:
        command, confirmed = asked
        await carry_out(context, asker, command, confirmed=confirmed)
