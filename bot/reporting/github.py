"""Reporting a deployment to GitHub: a check run (queued → in_progress → completed), a
commit status `click-deploy/<service>`, a GitHub Deployment with its statuses
(github_deployments), the pull request's one comment (edited in place),
and 🚀 / 😕 on the `/deploy` comment that asked. Rendered from the deployment's current
state every time, so a coalesced or late report is still right."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import gidgethub

from bot.github.auth import AppAuth
from bot.github.check_runs import check_run_actions
from bot.github.client import GitHubClient, is_rate_limited, retry_delay
from bot.links import deployment_page_url
from bot.reporting.github_deployments import report_deployment
from bot.reporting.loop import Later, Outcome, Retry, Sent
from bot.reporting.render import (
    FINAL,
    check_name,
    check_output,
    check_status,
    commit_state,
    conclusion,
    pr_comment,
    summary_line,
)
from pipeline.db.queries import q
from pipeline.errors import NotFound
from pipeline.models import Deployment, LogLine, Service
from pipeline.rollback import NothingToRollBack, rollback_target
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import Store

TARGET = "github"
# A rate limit that says neither Retry-After nor a reset: GitHub asks for at least a minute.
RATE_LIMIT_WAIT_SECONDS = 60.0


def _iso(at: datetime | None) -> str:
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GitHubReporter:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        auth: AppAuth,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.store = Store(pool)
        self.session = session
        self.auth = auth
        # One PR-comment writer per pull request in this process: the others would each hold
        # a pool connection while waiting on the row lock, and a burst could empty the pool.
        self._pr_locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def __call__(self, deployment_id: int) -> Outcome:
        try:
            return await self.send(deployment_id)
        except gidgethub.HTTPException as error:
            status = int(error.status_code)
            if is_rate_limited(error):
                # As GitHub asks: Retry-After, else the spent quota's reset, else a minute.
                raise Retry(
                    f"GitHub answered {status} (rate limited)",
                    retry_delay(error.headers, RATE_LIMIT_WAIT_SECONDS),
                ) from None
            if status >= 500:
                raise Retry(
                    f"GitHub answered {status}", retry_delay(error.headers, 0) or None
                ) from None
            raise
        except NotFound:
            return Sent()  # the deployment is gone: nothing to report

    async def send(self, deployment_id: int) -> Outcome:
        deployment = await self.store.get_deployment(deployment_id)
        where: dict[str, Any] = deployment.trigger.get("answer", {}).get(TARGET, {})
        installation = where.get("installation_id")
        repo = where.get("repo")
        if not isinstance(installation, int) or not isinstance(repo, str) or "/" not in repo:
            return Sent()
        state = await self.pool.fetchrow(q("forge_report_get"), deployment_id, TARGET)
        final = deployment.status in FINAL
        if state is not None and state["sent_at"] is not None and not final:
            since = (datetime.now(UTC) - state["sent_at"]).total_seconds()
            if since < self.settings.report_throttle_seconds:
                return Later(self.settings.report_throttle_seconds - since, "throttled")
        gh = await self.auth.client(self.session, installation)
        owner, name = repo.split("/", 1)
        sha = deployment.commit_sha or where.get("head_sha")
        check_run_id = state["remote_id"] if state is not None else None
        if isinstance(sha, str) and sha:
            check_run_id = await self._check_run(gh, owner, name, sha, deployment, check_run_id)
            await self._commit_status(gh, owner, name, sha, deployment)
        pr = where.get("pr")
        if isinstance(pr, int):
            await self._pr_comment(gh, repo, pr)
        if isinstance(sha, str) and sha:
            service = await self.store.get_service(deployment.service_id)
            await report_deployment(
                gh, self.settings, self.pool, owner, name, sha, deployment, service, state
            )
        reacted = False
        comment_id = where.get("comment_id")
        already = state is not None and state["reacted"]
        if final and isinstance(comment_id, int) and not already:
            if deployment.status in (Status.SUCCEEDED, Status.FAILED):
                content = "rocket" if deployment.status == Status.SUCCEEDED else "confused"
                await gh.post(
                    "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
                    {"owner": owner, "repo": name, "comment_id": comment_id},
                    data={"content": content},
                )
            reacted = True
        await self.pool.execute(
            q("forge_report_save"),
            deployment_id,
            TARGET,
            check_run_id,
            str(deployment.status),
            reacted,
        )
        return Sent()

    async def _check_run(
        self,
        gh: GitHubClient,
        owner: str,
        name: str,
        sha: str,
        deployment: Deployment,
        check_run_id: int | None,
    ) -> int:
        url = deployment_page_url(self.settings, deployment.id)
        status = check_status(deployment)
        tail: list[LogLine] = []
        if deployment.status == Status.FAILED:
            rows = await self.pool.fetch(q("forge_log_tail"), deployment.id, 50)
            tail = [LogLine.from_row(row) for row in rows]
        steps = await self.store.list_steps(deployment.id)
        output = check_output(deployment, steps, tail, url)
        body: dict[str, Any] = {
            "name": check_name(deployment),
            "details_url": url,
            "external_id": str(deployment.id),
            "status": status,
            "output": {"title": output.title, "summary": output.summary},
        }
        if output.text:
            body["output"]["text"] = output.text
        body["actions"] = check_run_actions(deployment, await self._can_roll_back(deployment))
        if deployment.started_at is not None:
            body["started_at"] = _iso(deployment.started_at)
        if status == "completed":
            body["conclusion"] = conclusion(deployment)
            body["completed_at"] = _iso(deployment.finished_at)
        if check_run_id is None:
            created = await gh.post(
                "/repos/{owner}/{repo}/check-runs",
                {"owner": owner, "repo": name},
                data={**body, "head_sha": sha},
            )
            return int(created["id"])
        await gh.patch(
            "/repos/{owner}/{repo}/check-runs/{check_run_id}",
            {"owner": owner, "repo": name, "check_run_id": check_run_id},
            data=body,
        )
        return check_run_id

    async def _can_roll_back(self, deployment: Deployment) -> bool:
        """Whether a Rollback button would find an image to go back to (asked only of a
        finished production deployment)."""
        if deployment.status not in FINAL or deployment.environment != "production":
            return False
        try:
            service = await self.store.get_service(deployment.service_id)
            await rollback_target(self.store, service, "production")
        except (NotFound, NothingToRollBack):
            return False
        return True

    async def _commit_status(
        self, gh: GitHubClient, owner: str, name: str, sha: str, deployment: Deployment
    ) -> None:
        context = f"click-deploy/{deployment.service_name}"
        if deployment.environment != "production":
            context += f" ({deployment.environment})"
        await gh.post(
            "/repos/{owner}/{repo}/statuses/{sha}",
            {"owner": owner, "repo": name, "sha": sha},
            data={
                "state": commit_state(deployment),
                "target_url": deployment_page_url(self.settings, deployment.id),
                "description": summary_line(deployment)[:140],
                "context": context,
            },
        )

    async def _pr_comment(self, gh: GitHubClient, repo: str, pr: int) -> None:
        owner, name = repo.split("/", 1)
        await self.pool.execute(q("forge_pr_comment_ensure"), TARGET, repo, pr)
        lock = self._pr_locks.setdefault((repo, pr), asyncio.Lock())
        # The row lock makes one comment per PR even when several processes report at once;
        # inside it only the transaction's own connection is used.
        async with lock, self.pool.acquire() as connection, connection.transaction():
            comment_id = await connection.fetchval(q("forge_pr_comment_lock"), TARGET, repo, pr)
            rows = await connection.fetch(q("forge_github_pr_deployments"), repo, str(pr))
            deployments = [Deployment.from_row(row) for row in rows]
            previews: dict[int, object] = {}
            for deployment in deployments:
                row = await connection.fetchrow(q("service_by_id"), deployment.service_id)
                if row is not None:
                    previews[deployment.service_id] = Service.from_row(row).options.preview_url
            body = pr_comment(self.settings, deployments, previews)
            if comment_id is not None:
                try:
                    await gh.patch(
                        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
                        {"owner": owner, "repo": name, "comment_id": comment_id},
                        data={"body": body},
                    )
                    return
                except gidgethub.BadRequest as error:
                    if int(error.status_code) != 404:
                        raise
                    # Someone deleted it: write a new one.
            created = await gh.post(
                "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                {"owner": owner, "repo": name, "issue_number": pr},
                data={"body": body},
            )
            await connection.execute(q("forge_pr_comment_save"), TARGET, repo, pr, created["id"])
