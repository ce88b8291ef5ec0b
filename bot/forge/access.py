"""Who may act on a service from a forge, written once for every forge and every command
(deploy, rollback, cancel, status, and a check run's buttons): the forge's own role check
first (write access on GitHub, Developer or more on GitLab: `Member.write_access`), then
per service: a stored config that is not valid refuses everyone, and a service with
`config.protected` needs the person on `config.allow` (names, or groups as "@group")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pipeline.models import Service
from pipeline.service_config import refused_for_config

NOTHING_QUEUED = "Nothing was queued."
NOTHING_CANCELLED = "Nothing was cancelled."


class Member(Protocol):
    """A person on a forge, as the rules ask about them."""

    @property
    def login(self) -> str: ...

    async def write_access(self) -> str | None:
        """None when they may deploy from this repository; else what they lack, as the
        end of "`/deploy` needs …" ("write access to o/r (you have read)")."""

    async def in_group(self, group: str) -> bool:
        """Whether they belong to `group` ("org/team" on GitHub, a group path on GitLab)."""


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
    """The rule every front end (Slack too) checks first: a stored config that is not
    valid refuses everyone (never allows everyone)."""
    if service.options.problem is not None:
        return refused_for_config(service.name)
    return None


async def may_deploy(member: Member, service: Service) -> bool:
    """The per-service part (the role is checked once, before)."""
    if config_refusal(service) is not None:
        return False
    return not service.options.protected or await on_allowlist(member, service.options.allow)


def refusal(member: Member, service: Service, outcome: str = NOTHING_QUEUED) -> str:
    """Why `member` may not act on `service` (after `may_deploy` said no)."""
    return config_refusal(service) or (
        f"Sorry @{member.login}, `{service.name}` is protected and you "
        f"are not on its allowlist. {outcome}"
    )
