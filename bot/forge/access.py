"""Who may act on a service, written once for every front end and every command (deploy,
rollback, cancel, status, a check run's or a Slack message's buttons). A refusal is a
sentence for the person asking, ending with what did not happen.

- Everyone: a stored config that is not valid refuses everyone (never allows everyone).
- On a forge: the forge's own role check first (write access on GitHub, Developer or more
  on GitLab: `Member.write_access`), then a service with `config.protected` needs the
  person on `config.allow` (names, or groups as "@group").
- In a chat (a `ChatMember`: Slack): `config.slack = {"users": [...], "usergroups": [...],
  "channels": [...]}` (Slack ids). Channels limit where, users and user groups limit who;
  an empty or missing list allows anyone in the workspace. A protected service is asked
  to be confirmed instead (bot/forge/commands.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pipeline.models import Service
from pipeline.service_config import refused_for_config

NOTHING_QUEUED = "Nothing was queued."
NOTHING_CANCELLED = "Nothing was cancelled."
NOT_SHOWN = "Its deployments are not shown."


class Member(Protocol):
    """A person on a forge or in a chat, as the rules ask about them."""

    @property
    def login(self) -> str: ...

    async def write_access(self) -> str | None:
        """None when they may deploy from this repository; else what they lack, as the
        end of "`/deploy` needs …" ("write access to o/r (you have read)")."""

    async def in_group(self, group: str) -> bool:
        """Whether they belong to `group` ("org/team" on GitHub, a group path on GitLab,
        a user group's id on Slack)."""


@runtime_checkable
class ChatMember(Member, Protocol):
    """Someone who asked in a chat channel: the chat's rules apply, not the forge's."""

    @property
    def channel(self) -> str: ...


def named(login: str, entries: Sequence[str]) -> bool:
    """`login` is one of the plain (not "@group") entries, in any case."""
    return login.lower() in {entry.lower() for entry in entries if not entry.startswith("@")}


async def on_allowlist(member: Member, entries: Sequence[str]) -> bool:
    """`config.allow`: names, or groups as "@group"."""
    if named(member.login, entries):
        return True
    for entry in entries:
        if entry.startswith("@") and len(entry) > 1 and await member.in_group(entry[1:]):
            return True
    return False


def config_refusal(service: Service) -> str | None:
    """The rule every front end checks first: a stored config that is not valid refuses
    everyone (never allows everyone)."""
    if service.options.problem is not None:
        return refused_for_config(service.name)
    return None


async def may_deploy(member: Member, service: Service) -> bool:
    """The per-service part (the role is checked once, before)."""
    return await why_not(member, service) is None


async def why_not(member: Member, service: Service, outcome: str = NOTHING_QUEUED) -> str | None:
    """None when `member` may act on `service` (or see its deployments); else why not."""
    refused = config_refusal(service)
    if refused is not None:
        return refused
    if isinstance(member, ChatMember):
        return await _chat_refusal(member, service, outcome)
    if service.options.protected and not await on_allowlist(member, service.options.allow):
        return refusal(member, service, outcome)
    return None


def refusal(member: Member, service: Service, outcome: str = NOTHING_QUEUED) -> str:
    """Why `member` may not act on `service` on a forge (after `may_deploy` said no)."""
    return config_refusal(service) or (
        f"Sorry @{member.login}, `{service.name}` is protected and you "
        f"are not on its allowlist. {outcome}"
    )


async def _chat_refusal(member: ChatMember, service: Service, outcome: str) -> str | None:
    rules = service.options.slack
    users, groups, channels = rules.users, rules.usergroups, rules.channels
    if channels and member.channel not in channels:
        where = ", ".join(f"<#{item}>" for item in channels)
        return f"`{service.name}` can only be deployed from {where}. {outcome}"
    if not users and not groups:
        return None
    if member.login in users:
        return None
    for group in groups:
        if await member.in_group(group):
            return None
    allowed = [f"<@{item}>" for item in users] + [f"<!subteam^{item}>" for item in groups]
    return (
        f"Sorry <@{member.login}>, you are not allowed to deploy `{service.name}` "
        f"(only {', '.join(allowed)} may). {outcome}"
    )
