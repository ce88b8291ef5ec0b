"""Reporting a deployment to GitLab: a commit status `click-deploy/<service>` (pending,
running, success, failed, canceled) linking to the deployment's page, or, once the release
is healthy, to where the new version answers; and the merge request's one note (edited in
place). Rendered from the deployment's current state every
time, so a coalesced or late report is still right."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from bot.gitlab.api import GitLabApi, GitLabError
from bot.links import deployment_page_url
from bot.reporting.github_deployments import environment_url
from bot.reporting.loop import Later, Outcome, Retry, Sent
from bot.reporting.render import FINAL, check_name, pr_comment, summary_line
from pipeline.db.queries import q
from pipeline.errors import NotFound
from pipeline.models import Deployment, Service
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import Store

TARGET = "gitlab"

State = Literal["pending", "running", "success", "failed", "canceled"]


def gitlab_state(status: str) -> State:
    """A deployment's status as a GitLab commit status state."""
    if status == Status.QUEUED:
        return "pending"
    if status == Status.SUCCEEDED:
        return "success"
    if status == Status.FAILED:
        return "failed"
    if status in (Status.CANCELLED, Status.SUPERSEDED):
        return "canceled"
    return "running"


# A GitLab deployment's status for each of ours (GitLab's create/update API takes these).
GITLAB_DEPLOYMENT_STATUS: dict[Status, str] = {
    Status.CLONING: "running",
    Status.BUILDING: "running",
    Status.PUSHING: "running",
    Status.SUCCEEDED: "success",
    Status.FAILED: "failed",
    Status.CANCELLED: "canceled",
    Status.SUPERSEDED: "canceled",
}


# GitLab keeps at most 255 characters of a commit status's description.
DESCRIPTION_LIMIT = 255


def status_link(settings: Settings, deployment: Deployment) -> tuple[str, str]:
    """The commit status's `target_url` and `description`. A deployment whose release
    answers (succeeded with a live URL, set only once the new version is healthy and has
    the traffic) links there and says so first, so the cut at 255 characters never cuts
    the URL; every other one links its deployment page."""
    summary = summary_line(deployment)
    if deployment.status == Status.SUCCEEDED and deployment.live_url:
        live = f"Live at {deployment.live_url}"
        if len(live) > DESCRIPTION_LIMIT:
            live = "Live (the link opens it)"
        return deployment.live_url, f"{live}. {summary}"[:DESCRIPTION_LIMIT]
    return deployment_page_url(settings, deployment.id), summary[:DESCRIPTION_LIMIT]


class GitLabReporter:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, api: GitLabApi) -> None:
        self.settings = settings
        self.pool = pool
        self.store = Store(pool)
        self.api = api
        self._note_locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def __call__(self, deployment_id: int) -> Outcome:
        try:
            return await self.send(deployment_id)
        except GitLabError as error:
            if error.transient:
                raise Retry(str(error)) from None
            raise
        except NotFound:
            return Sent()  # the deployment is gone: nothing to report

    async def send(self, deployment_id: int) -> Outcome:
        deployment = await self.store.get_deployment(deployment_id)
        where: dict[str, Any] = deployment.trigger.get("answer", {}).get(TARGET, {})
        project = where.get("project")
        project_id = where.get("project_id")
        if not isinstance(project, str) or not isinstance(project_id, int):
            return Sent()
        state = await self.pool.fetchrow(q("forge_report_get"), deployment_id, TARGET)
        final = deployment.status in FINAL
        if state is not None and state["sent_at"] is not None and not final:
            since = (datetime.now(UTC) - state["sent_at"]).total_seconds()
            if since < self.settings.report_throttle_seconds:
                return Later(self.settings.report_throttle_seconds - since, "throttled")
        sha = deployment.commit_sha or where.get("head_sha")
        new_state = gitlab_state(deployment.status)
        sent = state["sent_status"] if state is not None else None
        # GitLab refuses a transition to the state a status is already in: send changes only.
        if isinstance(sha, str) and sha and (sent is None or gitlab_state(sent) != new_state):
            ref = (
                deployment.ref
                if deployment.ref and not deployment.ref.startswith("refs/")
                else None
            )
            target_url, description = status_link(self.settings, deployment)
            await self.api.commit_status(
                project_id,
                sha,
                state=new_state,
                name=check_name(deployment),
                target_url=target_url,
                description=description,
                ref=ref,
            )
        remote_id = state["remote_id"] if state is not None else None
        if isinstance(sha, str) and sha and deployment.environment != "production":
            remote_id = await self._preview_deployment(project_id, sha, deployment, sent, remote_id)
        mr = where.get("mr")
        if isinstance(mr, int):
            await self._mr_note(project, project_id, mr)
        reacted = await self._react(where, deployment, state, final)
        await self.pool.execute(
            q("forge_report_save"),
            deployment_id,
            TARGET,
            remote_id,
            str(deployment.status),
            reacted,
        )
        return Sent()

    async def _preview_deployment(
        self,
        project_id: int,
        sha: str,
        deployment: Deployment,
        sent: str | None,
        remote_id: int | None,
    ) -> int | None:
        """A preview is a GitLab deployment to its environment (`mr-N`), with the preview's
        URL as the environment's external URL: the merge request's widget links it (the
        release's live URL once it answers). Its status follows the deployment's; a queued
        one has none yet. The GitLab deployment's id is kept as the report's remote id."""
        status = GITLAB_DEPLOYMENT_STATUS.get(deployment.status)
        if status is None:
            return remote_id
        if remote_id is None:
            if deployment.status in (Status.CANCELLED, Status.SUPERSEDED):
                return None  # never started: no deployment to show
            made, environment_id = await self.api.create_deployment(
                project_id,
                environment=deployment.environment,
                sha=sha,
                ref=deployment.ref or sha,
                status=status,
            )
            service = await self.store.get_service(deployment.service_id)
            url = environment_url(self.settings, deployment, service)
            await self.api.set_external_url(project_id, environment_id, url)
            return made
        if sent is None or GITLAB_DEPLOYMENT_STATUS.get(Status(sent)) != status:
            updated_in = await self.api.update_deployment(project_id, remote_id, status)
            if deployment.live_url and updated_in is not None:
                # Made while it built, with the configured URL: now where the release answers.
                await self.api.set_external_url(project_id, updated_in, deployment.live_url)
        return remote_id

    async def _react(
        self, where: dict[str, Any], deployment: Deployment, state: Any, final: bool
    ) -> bool:
        """🚀 or 😕 on the note that asked, once, when the deployment succeeded or failed
        (as on GitHub); whether the reaction is done (or not wanted: cancelled)."""
        note_id, mr, project_id = where.get("note_id"), where.get("mr"), where.get("project_id")
        if not final or (state is not None and state["reacted"]):
            return False
        if not (isinstance(note_id, int) and isinstance(mr, int) and isinstance(project_id, int)):
            return False
        if deployment.status in (Status.SUCCEEDED, Status.FAILED):
            name = "rocket" if deployment.status == Status.SUCCEEDED else "confused"
            try:
                await self.api.award_emoji(project_id, mr, note_id, name)
            except GitLabError as error:
                if error.status != 404:  # 404: given already (a retried send)
                    raise
        return True

    async def _mr_note(self, project: str, project_id: int, mr: int) -> None:
        # One writer per MR in this process (the others wait without holding a connection);
        # the row lock makes one note per MR across processes. Inside the transaction only
        # its own connection is used, so a full pool cannot deadlock it.
        lock = self._note_locks.setdefault((project, mr), asyncio.Lock())
        async with lock:
            await self._write_mr_note(project, project_id, mr)

    async def _write_mr_note(self, project: str, project_id: int, mr: int) -> None:
        await self.pool.execute(q("forge_pr_comment_ensure"), TARGET, project, mr)
        async with self.pool.acquire() as connection, connection.transaction():
            note_id = await connection.fetchval(q("forge_pr_comment_lock"), TARGET, project, mr)
            rows = await connection.fetch(q("forge_gitlab_mr_deployments"), project, str(mr))
            deployments = [Deployment.from_row(row) for row in rows]
            previews: dict[int, object] = {}
            for deployment in deployments:
                row = await connection.fetchrow(q("service_by_id"), deployment.service_id)
                if row is not None:
                    previews[deployment.service_id] = Service.from_row(row).options.preview_url
            body = pr_comment(self.settings, deployments, previews)
            if note_id is not None and await self.api.update_note(project_id, mr, note_id, body):
                return
            created = await self.api.create_note(project_id, mr, body)
            await connection.execute(q("forge_pr_comment_save"), TARGET, project, mr, created)
