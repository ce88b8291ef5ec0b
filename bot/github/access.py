"""Who may deploy a service from GitHub: write access to its repository (admin, maintain
or write), and for a service with `config.protected` a place in `config.allow` (logins,
or teams as "@org/team"). One rule for everything that acts on a service or shows its
deployments: `/deploy` comments of every kind, and a re-requested check run."""

from __future__ import annotations

import gidgethub

from bot.github.client import GitHubClient
from bot.github.models import Repo
from pipeline.models import Service

WRITE_OR_MORE = frozenset({"admin", "maintain", "write"})


async def permission(gh: GitHubClient, repo: Repo, login: str) -> str:
    try:
        answer = await gh.getitem(
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            {"owner": repo.owner, "repo": repo.name, "username": login},
        )
    except gidgethub.BadRequest as error:
        if int(error.status_code) in (403, 404):
            return "none"
        raise
    role = answer.get("role_name") if isinstance(answer, dict) else None
    level = answer.get("permission") if isinstance(answer, dict) else None
    return str(role if role in WRITE_OR_MORE else level or "none")


async def on_allowlist(gh: GitHubClient, service: Service, login: str) -> bool:
    """`config.allow`: logins, or teams as "@org/team"."""
    entries = service.options.allow
    if login.lower() in {entry.lower() for entry in entries if not entry.startswith("@")}:
        return True
    for entry in entries:
        if not entry.startswith("@") or "/" not in entry:
            continue
        org, team = entry[1:].split("/", 1)
        try:
            membership = await gh.getitem(
                "/orgs/{org}/teams/{team_slug}/memberships/{username}",
                {"org": org, "team_slug": team, "username": login},
            )
        except gidgethub.BadRequest:
            continue
        if isinstance(membership, dict) and membership.get("state") == "active":
            return True
    return False


async def may_deploy(gh: GitHubClient, service: Service, login: str) -> bool:
    """The per-service part of the rule (write access is checked once, before): a
    protected service needs `login` on its allowlist. A stored config that is not valid
    refuses everyone."""
    if service.options.problem is not None:
        return False
    return not service.options.protected or await on_allowlist(gh, service, login)
