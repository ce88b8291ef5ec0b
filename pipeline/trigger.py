"""The one value every entry point (CLI, REST, GitHub, GitLab, Slack) turns a request into.

Nothing downstream knows where a deployment came from except through `answer`: where to
report back. It is stored as the deployment's `trigger` (JSON).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["cli", "api", "github", "gitlab", "slack"]


class Trigger(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Source
    actor: str | None = None  # who asked: a forge login, a Slack user, a token name
    environment: str = "production"  # or a preview such as "pr-12"
    ref: str | None = None
    commit_sha: str | None = None
    reason: str | None = None  # "push", "pull_request.synchronize", "/deploy comment", ...
    delivery_id: str | None = None  # the webhook delivery that caused it
    rollback_to: int | None = None  # a rollback: re-tag this earlier deployment's image
    # Where to answer, per reporter: {"github": {...}, "slack": {...}}. Each reporter reads
    # only its own key.
    answer: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
