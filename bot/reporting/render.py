"""Pure rendering of a deployment for people: check run output, commit status, the PR
comment's table. Values in, text out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bot.links import deployment_page_url
from pipeline.models import Deployment, LogLine, Step
from pipeline.settings import Settings
from pipeline.states import Status

FINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SUPERSEDED})
LOG_TAIL_LINES = 50
_MAX_TEXT = 60_000  # GitHub caps check run output fields at 65535 characters

ICON = {
    Status.QUEUED: "⏳",
    Status.CLONING: "🔄",
    Status.BUILDING: "🔨",
    Status.PUSHING: "📦",
    Status.SUCCEEDED: "✅",
    Status.FAILED: "❌",
    Status.CANCELLED: "⏹️",
    Status.SUPERSEDED: "⏭️",
}

Conclusion = Literal["success", "failure", "cancelled", "skipped"]


def check_name(deployment: Deployment) -> str:
    name = f"click-deploy/{deployment.service_name}"
    return name if deployment.environment == "production" else f"{name} ({deployment.environment})"


def check_status(deployment: Deployment) -> Literal["queued", "in_progress", "completed"]:
    if deployment.status in FINAL:
        return "completed"
    return "queued" if deployment.status == Status.QUEUED else "in_progress"


def conclusion(deployment: Deployment) -> Conclusion | None:
    return {
        Status.SUCCEEDED: "success",
        Status.FAILED: "failure",
        Status.CANCELLED: "cancelled",
        Status.SUPERSEDED: "skipped",
    }.get(deployment.status)  # type: ignore[return-value]


def commit_state(deployment: Deployment) -> Literal["pending", "success", "failure", "error"]:
    if deployment.status == Status.SUCCEEDED:
        return "success"
    if deployment.status == Status.FAILED:
        return "failure"
    if deployment.status in (Status.CANCELLED, Status.SUPERSEDED):
        return "error"
    return "pending"


def summary_line(deployment: Deployment) -> str:
    status = deployment.status
    if status == Status.SUCCEEDED:
        return f"Deployed `{deployment.image}`"
    if status == Status.FAILED:
        return f"Failed: {deployment.error or 'no reason recorded'}"
    if status == Status.QUEUED:
        return "Queued"
    if status in FINAL:
        return str(deployment.progress_message or status).capitalize()
    step = (
        f" (step {deployment.step} of {deployment.steps_total})"
        if deployment.step and deployment.steps_total
        else ""
    )
    return f"{str(status).capitalize()}{step}"


def _seconds(step: Step) -> str:
    return f"{step.seconds:.1f} s" if step.seconds is not None else "…"


@dataclass(frozen=True)
class CheckOutput:
    title: str
    summary: str
    text: str


def check_output(
    deployment: Deployment, steps: Sequence[Step], tail: Sequence[LogLine], url: str
) -> CheckOutput:
    pipeline_steps = [step for step in steps if step.kind == "pipeline"]
    latest = max((step.attempt for step in pipeline_steps), default=0)
    current = [step for step in pipeline_steps if step.attempt == latest]
    lines = [
        f"**{summary_line(deployment)}**",
        "",
        f"Environment `{deployment.environment}`, commit `{(deployment.commit_sha or '?')[:12]}`. "
        f"[Live log]({url})",
    ]
    if deployment.live_url:
        lines += ["", f"Live at {deployment.live_url}"]
    if current:
        lines += ["", "| step | status | duration |", "| --- | --- | ---: |"]
        lines += [f"| {step.name} | {step.status} | {_seconds(step)} |" for step in current]
    text = ""
    if deployment.status == Status.FAILED:
        failing = next((step for step in current if step.status == "failed"), None)
        name = failing.name if failing else (deployment.phase or "unknown")
        lines += ["", f"Failing step: **{name}**"]
        body = "\n".join(line.line for line in tail[-LOG_TAIL_LINES:])
        text = f"Last {min(len(tail), LOG_TAIL_LINES)} log lines:\n\n```\n{body}\n```"
    return CheckOutput(
        title=summary_line(deployment)[:200],
        summary="\n".join(lines)[:_MAX_TEXT],
        text=text[-_MAX_TEXT:],
    )


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def preview_link(deployment: Deployment, template: object) -> str:
    """The PR comment's link: where the release answers (production too), else a
    preview's `preview_url`."""
    if deployment.live_url:
        return f"[open]({deployment.live_url})"
    if deployment.environment == "production" or not isinstance(template, str):
        return "–"
    try:
        url = template.format(environment=deployment.environment, service=deployment.service_name)
    except (KeyError, IndexError, ValueError):
        return "–"
    return f"[open]({url})"


COMMENT_MARKER = "<!-- click-deploy -->"


def status_table(
    settings: Settings,
    deployments: Sequence[Deployment],
    preview_urls: dict[int, object] | None = None,
) -> str:
    rows = [
        "| service | status | image | preview | log | updated |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for deployment in sorted(deployments, key=lambda d: (d.service_name or "", d.environment)):
        image = f"`{deployment.image}`" if deployment.image else "–"
        template = (preview_urls or {}).get(deployment.service_id)
        rows.append(
            f"| {deployment.service_name} | {ICON.get(deployment.status, '')} "
            f"{deployment.status} | {image} | {preview_link(deployment, template)} | "
            f"[#{deployment.id}]({deployment_page_url(settings, deployment.id)}) | "
            f"{_when(deployment.updated_at)} |"
        )
    return "\n".join(rows)


def pr_comment(
    settings: Settings, deployments: Sequence[Deployment], preview_urls: dict[int, object]
) -> str:
    return "\n".join(
        [
            COMMENT_MARKER,
            "### click-deploy",
            "",
            status_table(settings, deployments, preview_urls),
        ]
    )
