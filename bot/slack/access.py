"""Who may deploy a service from Slack: `config.slack = {"users": [...], "usergroups":
[...], "channels": [...]}` (Slack ids). Channels limit where, users and user groups limit
who; an empty or missing list allows anyone in the workspace. A stored config that is not
valid refuses everyone (never allows everyone). A refusal is a sentence for the person
asking. The first rule is every front end's (bot/forge/access.py).

The same rule guards everything that acts on a service or shows its deployments (and so
their signed page links): deploy, rollback, cancel, redeploy, status, the images of list."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.forge.access import NOTHING_QUEUED, config_refusal
from pipeline.models import Service

log = structlog.get_logger(__name__)


async def in_usergroups(client: AsyncWebClient, groups: Sequence[str], user: str) -> bool:
    for group in groups:
        try:
            answer = await client.usergroups_users_list(usergroup=group)
        except SlackApiError as error:
            log.warning("cannot read a Slack user group", usergroup=group, error=str(error))
            continue
        members = answer.get("users")
        if isinstance(members, list) and user in members:
            return True
    return False


async def refusal(
    client: AsyncWebClient,
    service: Service,
    user: str,
    channel: str,
    outcome: str = NOTHING_QUEUED,
) -> str | None:
    """None when `user` may deploy `service` from `channel`; else why not, ending with
    `outcome` (what did not happen)."""
    refused = config_refusal(service)
    if refused is not None:
        return refused
    rules = service.options.slack
    users, groups, channels = rules.users, rules.usergroups, rules.channels
    if channels and channel not in channels:
        where = ", ".join(f"<#{item}>" for item in channels)
        return f"`{service.name}` can only be deployed from {where}. {outcome}"
    if not users and not groups:
        return None
    if user in users or await in_usergroups(client, groups, user):
        return None
    allowed = [f"<@{item}>" for item in users] + [f"<!subteam^{item}>" for item in groups]
    return (
        f"Sorry <@{user}>, you are not allowed to deploy `{service.name}` "
        f"(only {', '.join(allowed)} may). {outcome}"
    )
