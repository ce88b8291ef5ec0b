"""A GitHub user as the rules of bot/forge/access.py ask about them: write access to the
repository (admin, maintain or write), and teams as "@org/team" on an allowlist."""

from __future__ import annotations

from dataclasses import dataclass

import gidgethub

from bot.github.client import GitHubClient
from bot.github.models import Repo

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


@dataclass(frozen=True)
class GitHubMember:
    gh: GitHubClient
    repo: Repo
    login: str

    async def write_access(self) -> str | None:
        level = await permission(self.gh, self.repo, self.login)
        if level in WRITE_OR_MORE:
            return None
        return f"write access to {self.repo.full_name} (you have {level})"

    async def in_group(self, group: str) -> bool:
        """A team, as "org/team": an active membership."""
        if "/" not in group:
            return False
        org, team = group.split("/", 1)
        try:
            membership = await self.gh.getitem(
                "/orgs/{org}/teams/{team_slug}/memberships/{username}",
                {"org": org, "team_slug": team, "username": self.login},
            )
        except gidgethub.BadRequest:
            return False
        return isinstance(membership, dict) and membership.get("state") == "active"
