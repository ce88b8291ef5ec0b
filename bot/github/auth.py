"""GitHub App authentication: a JWT (app id + private key, RS256) exchanged for
installation tokens, cached until shortly before they expire.

The same tokens are the clone credentials of `provider = "github"` services
(`clone_credentials`, registered with the build pipeline in `bot.github.credentials`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import cachetools
import gidgethub
from gidgethub import apps
from pydantic import SecretStr

from bot.github.client import GitHubClient
from pipeline.settings import Settings

# A token is used until this many seconds before GitHub's expiry (they last an hour).
REFRESH_MARGIN_SECONDS = 300.0


@dataclass(frozen=True)
class InstallationToken:
    token: SecretStr
    expires_at: float  # time.time() seconds


def _ttu(_key: object, value: InstallationToken, now: float) -> float:
    return value.expires_at - REFRESH_MARGIN_SECONDS


class GitHubAppError(Exception):
    """The App is not configured, or GitHub refused its credentials."""


class AppAuth:
    """Installation tokens of one GitHub App; one instance per process is enough."""

    def __init__(self, settings: Settings) -> None:
        if not settings.github_app_id or settings.github_private_key is None:
            raise GitHubAppError("GITHUB_APP_ID and GITHUB_PRIVATE_KEY are not set")
        self.app_id = settings.github_app_id
        self._private_key = settings.github_private_key
        self.api_url = settings.github_api_url
        self._tokens: cachetools.TLRUCache[int, InstallationToken] = cachetools.TLRUCache(
            maxsize=1024, ttu=_ttu, timer=time.time
        )
        self._repo_installations: cachetools.TTLCache[str, int] = cachetools.TTLCache(
            maxsize=4096, ttl=3600
        )
        self._locks: dict[int, asyncio.Lock] = {}

    def jwt(self) -> str:
        return apps.get_jwt(
            app_id=self.app_id, private_key=self._private_key.get_secret_value(), expiration=540
        )

    def forget(self, installation_id: int) -> None:
        self._tokens.pop(installation_id, None)

    async def token(self, session: aiohttp.ClientSession, installation_id: int) -> SecretStr:
        cached = self._tokens.get(installation_id)
        if cached is not None:
            return cached.token
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(installation_id)
            if cached is not None:
                return cached.token
            gh = GitHubClient(session, base_url=self.api_url)
            answer = await apps.get_installation_access_token(
                gh,
                installation_id=str(installation_id),
                app_id=self.app_id,
                private_key=self._private_key.get_secret_value(),
            )
            token = answer.get("token")
            expires = answer.get("expires_at")
            if not isinstance(token, str) or not isinstance(expires, str):
                raise GitHubAppError("GitHub answered the token request without a token")
            expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
            value = InstallationToken(SecretStr(token), expires_at)
            self._tokens[installation_id] = value
            return value.token

    async def installation_for(self, session: aiohttp.ClientSession, repository: str) -> int:
        """The installation of this App on `owner/name` (GET /repos/…/installation)."""
        cached = self._repo_installations.get(repository)
        if cached is not None:
            return cached
        gh = GitHubClient(session, base_url=self.api_url)
        try:
            answer = await gh.getitem(
                "/repos/{owner}/{repo}/installation",
                {"owner": repository.split("/", 1)[0], "repo": repository.split("/", 1)[-1]},
                jwt=self.jwt(),
            )
        except gidgethub.BadRequest as error:
            raise GitHubAppError(
                f"the GitHub App is not installed on {repository} ({error.status_code})"
            ) from None
        installation = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(installation, int):
            raise GitHubAppError(f"GitHub named no installation for {repository}")
        self._repo_installations[repository] = installation
        return installation

    async def client(self, session: aiohttp.ClientSession, installation_id: int) -> GitHubClient:
        """An API client acting as the installation."""
        token = await self.token(session, installation_id)
        return GitHubClient(session, base_url=self.api_url, token=token)
