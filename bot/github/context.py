"""What GitHub handlers may use, passed in (never globals). Handlers return a
`DeliveryIntent` (bot/forge/intent.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.forge.context import HandlerContext
from bot.github.auth import AppAuth, GitHubAppError
from bot.github.client import GitHubClient
from bot.payload import PayloadError


@dataclass
class Context(HandlerContext):
    """What GitHub handlers may use: the App's client besides the shared collaborators."""

    session: aiohttp.ClientSession
    auth: AppAuth | None
    installation_id: int | None

    async def api(self) -> GitHubClient:
        if self.auth is None:
            raise GitHubAppError("the GitHub App is not configured (GITHUB_APP_ID)")
        if self.installation_id is None:
            raise PayloadError("the delivery names no installation (installation.id)")
        return await self.auth.client(self.session, self.installation_id)

    def answer(self, repo: str, **extra: Any) -> dict[str, dict[str, Any]]:
        where: dict[str, Any] = {"repo": repo}
        if self.installation_id is not None:
            where["installation_id"] = self.installation_id
        where.update({key: value for key, value in extra.items() if value is not None})
        return {"github": where}
