"""What a delivery asks for, as data: deployments to queue and things to do once they are
stored (replies, reactions, preview tags to delete). Handlers return one `Plan`; the
webhook stores the delivery and the deployments in one transaction, then acknowledges,
then runs `after` in the background."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from bot.github.auth import AppAuth, GitHubAppError
from bot.github.client import GitHubClient
from bot.payload import PayloadError
from pipeline.models import Service
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.store import Store
from pipeline.trigger import Trigger


@dataclass(frozen=True)
class Enqueue:
    service: Service
    environment: str
    ref: str | None
    commit_sha: str | None
    trigger: Trigger


After = Callable[[], Awaitable[None]]


OUTCOME_MAX = 300  # an outcome may quote the payload (an action, say): it stays short


@dataclass
class Plan:
    outcome: str
    enqueue: list[Enqueue] = field(default_factory=list)
    after: list[After] = field(default_factory=list)
    status: int = 200

    def __post_init__(self) -> None:
        if len(self.outcome) > OUTCOME_MAX:
            self.outcome = self.outcome[: OUTCOME_MAX - 3] + "..."


@dataclass
class Context:
    """What handlers may use, passed in (never globals)."""

    settings: Settings
    pool: asyncpg.Pool
    store: Store
    queue: Queue
    session: aiohttp.ClientSession
    auth: AppAuth | None
    delivery_id: str
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
