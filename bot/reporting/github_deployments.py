"""GitHub Deployments: for each click-deploy deployment reported to GitHub, a GitHub
Deployment of its commit to its environment (`production`, `pr-<n>`), and a deployment
status whenever its state changes (queued → in_progress → success / failure; error when
cancelled, inactive when superseded), with `log_url` (the live log page) and
`environment_url`. Sent by the GitHub reporter beside the check run and commit status; the
GitHub deployment's id and the last state sent are kept in forge_reports (migration 0010).

A deployment cancelled or superseded before anything was sent gets no GitHub Deployment.
"""

from __future__ import annotations

from typing import Any, Literal

import asyncpg

from bot.github.client import GitHubClient
from bot.links import deployment_page_url, service_page_url
from bot.reporting.render import summary_line
from pipeline.db.queries import q
from pipeline.models import Deployment, Service
from pipeline.settings import Settings
from pipeline.states import Status

DeploymentState = Literal["queued", "in_progress", "success", "failure", "error", "inactive"]

STATES: dict[Status, DeploymentState] = {
    Status.QUEUED: "queued",
    Status.CLONING: "in_progress",
    Status.BUILDING: "in_progress",
    Status.PUSHING: "in_progress",
    Status.SUCCEEDED: "success",
    Status.FAILED: "failure",
    Status.CANCELLED: "error",
    Status.SUPERSEDED: "inactive",
}
NEVER_STARTED = frozenset({Status.CANCELLED, Status.SUPERSEDED})
PRODUCTION = "production"


def deployment_state(deployment: Deployment) -> DeploymentState:
    return STATES.get(deployment.status, "in_progress")


def environment_url(settings: Settings, deployment: Deployment, service: Service) -> str:
    """Where the environment can be seen: the live URL its release answers on (set only
    once the new version is healthy and has the traffic), else a preview's
    `config.preview_url` (with `{environment}` and `{service}` filled in), production's
    `config.url`, else the service's page (its current image per environment)."""
    if deployment.live_url:
        return deployment.live_url
    options = service.options
    template = options.url if deployment.environment == PRODUCTION else options.preview_url
    if template:
        try:
            return template.format(environment=deployment.environment, service=service.name)
        except (KeyError, IndexError, ValueError):
            pass
    return service_page_url(settings, service.id)


def deployment_body(deployment: Deployment, service: Service, sha: str) -> dict[str, Any]:
    """POST /repos/{owner}/{repo}/deployments: the commit as it is, no merge of the default
    branch, and no required contexts (click-deploy's own commit status is still pending)."""
    production = deployment.environment == PRODUCTION
    return {
        "ref": sha,
        "task": "deploy",
        "auto_merge": False,
        "required_contexts": [],
        "environment": deployment.environment,
        "description": f"click-deploy #{deployment.id}: {service.name}"[:140],
        "payload": {"click_deploy_id": deployment.id, "service": service.name},
        "transient_environment": not production,
        "production_environment": production,
    }


def status_body(settings: Settings, deployment: Deployment, service: Service) -> dict[str, Any]:
    return {
        "state": deployment_state(deployment),
        "log_url": deployment_page_url(settings, deployment.id),
        "environment_url": environment_url(settings, deployment, service),
        "description": summary_line(deployment)[:140],
        "auto_inactive": False,
    }


async def report_deployment(
    gh: GitHubClient,
    settings: Settings,
    pool: asyncpg.Pool,
    owner: str,
    repo: str,
    sha: str,
    deployment: Deployment,
    service: Service,
    known: asyncpg.Record | None,
) -> None:
    """Create the GitHub Deployment once (its id stored at once, so a retry does not make a
    second), then add a status when the state differs from the last one sent."""
    github_id = known["github_deployment_id"] if known is not None else None
    sent = known["github_deployment_state"] if known is not None else None
    if github_id is None:
        if deployment.status in NEVER_STARTED:
            return
        created = await gh.post(
            "/repos/{owner}/{repo}/deployments",
            {"owner": owner, "repo": repo},
            data=deployment_body(deployment, service, sha),
        )
        github_id = int(created["id"])
        await pool.execute(q("github_deployment_save"), deployment.id, github_id, None)
    state = deployment_state(deployment)
    if state == sent:
        return
    await gh.post(
        "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
        {"owner": owner, "repo": repo, "deployment_id": github_id},
        data=status_body(settings, deployment, service),
    )
    await pool.execute(q("github_deployment_save"), deployment.id, github_id, state)


async def retire_environment(
    gh: GitHubClient,
    settings: Settings,
    pool: asyncpg.Pool,
    owner: str,
    repo: str,
    service: Service,
    environment: str,
) -> int:
    """A preview whose pull request closed: its successful GitHub Deployments become
    `inactive`. Returns how many."""
    rows = await pool.fetch(q("github_deployments_live"), service.id, environment)
    for row in rows:
        await gh.post(
            "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
            {"owner": owner, "repo": repo, "deployment_id": row["github_deployment_id"]},
            data={
                "state": "inactive",
                "log_url": deployment_page_url(settings, row["deployment_id"]),
                "description": "The pull request was closed; the preview is gone.",
                "auto_inactive": False,
            },
        )
        await pool.execute(
            q("github_deployment_save"),
            row["deployment_id"],
            row["github_deployment_id"],
            "inactive",
        )
    return len(rows)
