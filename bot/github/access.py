"""A GitHub user as the rules of bot/forge/access.py ask about them: write access to the
repository (admin, maintain or write), and teams as "@org/team" on an allowlist."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gidgethub

from bot.forge.access import named
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

    async def on_allowlist(self, entries: Sequence[str]) -> bool:
        if named(self.login, entries):
            return True
        for entry in entries:
            if not entry.startswith("@") or "/" not in entry:
                continue
            org, team = entry[1:].split("/", 1)
            try:
                membership = await self.gh.getitem(
                    "/orgs/{org}/teams/{team_slug}/memberships/{username}",
                    {"org": org, "team_slug": team, "username": self.login},
                )
            except gidgethub.BadRequest:
                continue
            if isinstance(membership, dict) and membership.get("state") == "active":
                return True
        return False
