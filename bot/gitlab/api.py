"""The few GitLab API calls click-deploy makes, through python-gitlab, each run in a thread
(python-gitlab blocks). Answers are our own values; callers never see python-gitlab types
except `GitLabError`'s cause.

A short rate limit (429 with Retry-After / RateLimit-Reset) is waited out by python-gitlab
itself, at most twice; anything else raises `GitLabError` carrying the HTTP status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import gitlab
import gitlab.exceptions
import requests

from pipeline.settings import Settings

T = TypeVar("T")

DIFFS_MAX = 3000  # a merge request changing more files is not sorted into services
DEVELOPER = 30  # GitLab's access level of a Developer; Maintainer 40, Owner 50
_MAX_RETRIES = 2  # 429s waited out inside one call
_TIMEOUT_SECONDS = 30.0


class GitLabError(Exception):
    """A GitLab call failed: `status` is the HTTP status, None when GitLab was not reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def transient(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


def api_url(settings: Settings) -> str:
    return (settings.gitlab_api_url or settings.gitlab_url).rstrip("/")


class GitLabApi:
    """One python-gitlab client (GITLAB_TOKEN as PRIVATE-TOKEN: project, group and personal
    tokens alike). The token is only ever a header; it never reaches a message."""

    def __init__(self, settings: Settings) -> None:
        token = settings.gitlab_token.get_secret_value() if settings.gitlab_token else None
        self._gl = gitlab.Gitlab(
            api_url(settings),
            private_token=token,
            timeout=_TIMEOUT_SECONDS,
            user_agent="click-deploy",
        )
        self._bot_username = settings.gitlab_bot_username

    async def _call(self, what: str, function: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(function)
        except gitlab.exceptions.GitlabError as error:
            code = error.response_code
            raise GitLabError(
                f"GitLab {what}: {code or 'error'} {error.error_message}"[:300], code
            ) from None
        except requests.RequestException as error:
            raise GitLabError(f"GitLab {what}: unreachable ({type(error).__name__})") from None

    def _project(self, project: int | str) -> Any:
        return self._gl.projects.get(project, lazy=True)

    async def access_level(self, project: int | str, user_id: int) -> int:
        """The user's access level on the project, inherited ones included; 0 if none."""

        def run() -> int:
            try:
                member = self._project(project).members_all.get(user_id)
            except gitlab.exceptions.GitlabGetError as error:
                if error.response_code == 404:
                    return 0
                raise
            level = getattr(member, "access_level", 0)
            return level if isinstance(level, int) else 0

        return await self._call("member check", run)

    async def in_group(self, group: str, user_id: int) -> bool:
        """Whether the user is a member (direct or inherited) of the group `group` (path)."""

        def run() -> bool:
            try:
                self._gl.groups.get(group, lazy=True).members_all.get(user_id)
            except gitlab.exceptions.GitlabGetError as error:
                if error.response_code == 404:
                    return False
                raise
            return True

        return await self._call("group member check", run)

    async def bot_username(self) -> str | None:
        """Whose notes are ours: GITLAB_BOT_USERNAME, else the token's user (asked once)."""
        if self._bot_username is None:

            def run() -> str | None:
                answer = self._gl.http_get("/user")
                name = answer.get("username") if isinstance(answer, dict) else None
                return name if isinstance(name, str) else None

            self._bot_username = await self._call("current user", run)
        return self._bot_username

    async def create_note(self, project: int | str, mr_iid: int, body: str) -> int:
        def run() -> int:
            mr = self._project(project).mergerequests.get(mr_iid, lazy=True)
            note = mr.notes.create({"body": body}, max_retries=_MAX_RETRIES)
            return int(note.get_id())

        return await self._call("note", run)

    async def merge_request_paths(self, project: int | str, mr_iid: int) -> list[str] | None:
        """The paths a merge request changes (old and new of each diff), from
        GET /projects/:id/merge_requests/:iid/diffs; None past DIFFS_MAX diffs."""

        def run() -> list[str] | None:
            paths: list[str] = []
            diffs = self._gl.http_list(
                f"/projects/{project}/merge_requests/{mr_iid}/diffs", iterator=True, per_page=100
            )
            for count, diff in enumerate(diffs, 1):
                if count > DIFFS_MAX:
                    return None
                if isinstance(diff, dict):
                    paths += [str(diff.get("old_path") or ""), str(diff.get("new_path") or "")]
            return [path for path in paths if path]

        return await self._call("merge request diffs", run)

    async def award_emoji(self, project: int | str, mr_iid: int, note_id: int, name: str) -> None:
        """A reaction on an MR note (the award emoji API: `eyes`, `rocket`, `confused`)."""

        def run() -> None:
            mr = self._project(project).mergerequests.get(mr_iid, lazy=True)
            note = mr.notes.get(note_id, lazy=True)
            note.awardemojis.create({"name": name}, max_retries=_MAX_RETRIES)

        await self._call("award emoji", run)

    async def create_deployment(
        self, project: int | str, *, environment: str, sha: str, ref: str, status: str
    ) -> tuple[int, int]:
        """POST /projects/:id/deployments (GitLab makes the environment when it is new):
        the deployment's id and its environment's id."""

        def run() -> tuple[int, int]:
            made = self._project(project).deployments.create(
                {
                    "environment": environment,
                    "sha": sha,
                    "ref": ref,
                    "tag": False,
                    "status": status,
                },
                max_retries=_MAX_RETRIES,
            )
            return int(made.get_id()), int(made.environment["id"])

        return await self._call("deployment", run)

    async def update_deployment(
        self, project: int | str, deployment_id: int, status: str
    ) -> int | None:
        """PUT /projects/:id/deployments/:deployment_id: its environment's id (GitLab's
        answer carries the deployment's environment), None if the answer has none."""

        def run() -> int | None:
            updated = self._project(project).deployments.update(
                deployment_id, {"status": status}, max_retries=_MAX_RETRIES
            )
            environment = (updated or {}).get("environment")
            found = environment.get("id") if isinstance(environment, dict) else None
            return found if isinstance(found, int) else None

        return await self._call("deployment status", run)

    async def set_external_url(self, project: int | str, environment_id: int, url: str) -> None:
        """PUT /projects/:id/environments/:environment_id: where the environment is seen."""

        def run() -> None:
            self._project(project).environments.update(
                environment_id, {"external_url": url}, max_retries=_MAX_RETRIES
            )

        await self._call("environment", run)

    async def update_note(self, project: int | str, mr_iid: int, note_id: int, body: str) -> bool:
        """Edit a note in place; False when it is gone (someone deleted it)."""

        def run() -> bool:
            mr = self._project(project).mergerequests.get(mr_iid, lazy=True)
            try:
                mr.notes.update(note_id, {"body": body}, max_retries=_MAX_RETRIES)
            except gitlab.exceptions.GitlabUpdateError as error:
                if error.response_code == 404:
                    return False
                raise
            return True

        return await self._call("note edit", run)

    async def commit_status(
        self,
        project: int | str,
        sha: str,
        *,
        state: str,
        name: str,
        target_url: str,
        description: str,
        ref: str | None = None,
    ) -> bool:
        """POST /projects/:id/statuses/:sha. False when GitLab already has that state (it
        refuses a transition to the state a status is in)."""
        data: dict[str, Any] = {
            "state": state,
            "name": name,
            "target_url": target_url,
            "description": description[:255],
        }
        if ref:
            data["ref"] = ref

        def run() -> bool:
            commit = self._project(project).commits.get(sha, lazy=True)
            try:
                commit.statuses.create(data, max_retries=_MAX_RETRIES)
            except gitlab.exceptions.GitlabCreateError as error:
                if error.response_code == 400 and "transition" in str(error.error_message):
                    return False
                raise
            return True

        return await self._call("commit status", run)
