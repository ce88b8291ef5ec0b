"""What GitLab handlers may use, passed in (never globals). Handlers return a
`DeliveryIntent` (bot/forge/intent.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from bot.forge.context import HandlerContext
from bot.forge.requests import RequestKind
from bot.gitlab.api import GitLabApi, GitLabError

SOURCE: Final = "gitlab"


# source, noun, environment prefix, reason, the query of an MR's deployments
MERGE_REQUESTS = RequestKind(
    SOURCE, "merge request", "mr", "/deploy note", "forge_gitlab_mr_deployments"
)


def preview_environment(iid: int) -> str:
    return MERGE_REQUESTS.environment(iid)


@dataclass
class GitLabContext(HandlerContext):
    """What GitLab handlers may use: the API client besides the shared collaborators."""

    gitlab: GitLabApi | None

    def api(self) -> GitLabApi:
        if self.gitlab is None:
            raise GitLabError("GitLab is not configured (GITLAB_TOKEN)")
        return self.gitlab

    def answer(self, project: str, project_id: int, **extra: Any) -> dict[str, dict[str, Any]]:
        return answer_at(project, project_id, **extra)


def answer_at(project: str, project_id: int, **extra: Any) -> dict[str, dict[str, Any]]:
    """Where GitLab's reporter answers (the trigger's `answer`)."""
    where: dict[str, Any] = {"project": project, "project_id": project_id}
    where.update({key: value for key, value in extra.items() if value is not None})
    return {SOURCE: where}
