"""What GitLab handlers may use, passed in (never globals). Handlers return a
`DeliveryIntent` (bot/forge/intent.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from bot.gitlab.api import GitLabApi, GitLabError
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.store import Store

SOURCE: Final = "gitlab"


def preview_environment(iid: int) -> str:
    return f"mr-{iid}"


@dataclass
class GitLabContext:
    settings: Settings
    pool: asyncpg.Pool
    store: Store
    queue: Queue
    gitlab: GitLabApi | None
    delivery_id: str

    def api(self) -> GitLabApi:
        if self.gitlab is None:
            raise GitLabError("GitLab is not configured (GITLAB_TOKEN)")
        return self.gitlab

    def answer(self, project: str, project_id: int, **extra: Any) -> dict[str, dict[str, Any]]:
        where: dict[str, Any] = {"project": project, "project_id": project_id}
        where.update({key: value for key, value in extra.items() if value is not None})
        return {SOURCE: where}
