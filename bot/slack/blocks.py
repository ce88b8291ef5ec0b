"""Pure Block Kit rendering: the live message of a deployment, its thread (steps, log
tail), the confirmation prompt of a protected service, and the replies of `status` and
`list`. Values in, JSON-ready dicts out."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from bot.reporting.render import FINAL, ICON
from pipeline.models import Deployment, LogLine, Service, ServiceImage, Step
from pipeline.states import Status

Block = dict[str, Any]

SECTION_MAX = 3000  # Slack's limit for a section's text
TAIL_LINES = 30

# action_ids of the buttons (bot/slack/actions.py handles them)
CANCEL = "deploy_cancel"
VIEW_LOGS = "deploy_view_logs"
REDEPLOY = "deploy_redeploy"
ROLLBACK = "deploy_rollback"
CONFIRM_DEPLOY = "deploy_confirm"
DISMISS = "deploy_dismiss"


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:150] or " ", "emoji": True}


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text[:SECTION_MAX] or " "}


def section(text: str) -> Block:
    return {"type": "section", "text": mrkdwn(text)}


def button(
    text: str,
    action_id: str,
    *,
    value: str | None = None,
    url: str | None = None,
    style: str | None = None,
    confirm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "text": plain(text[:75]), "action_id": action_id}
    if value is not None:
        element["value"] = value[:2000]
    if url is not None:
        element["url"] = url[:3000]
    if style is not None:
        element["style"] = style
    if confirm is not None:
        element["confirm"] = confirm
    return element


def confirm_dialog(title: str, text: str, yes: str, *, danger: bool = False) -> dict[str, Any]:
    dialog: dict[str, Any] = {
        "title": plain(title[:100]),
        "text": mrkdwn(text[:300]),
        "confirm": plain(yes[:30]),
        "deny": plain("Cancel"),
    }
    if danger:
        dialog["style"] = "danger"
    return dialog


def duration(deployment: Deployment) -> float | None:
    start = deployment.started_at or deployment.created_at
    end = deployment.finished_at
    if end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def headline(deployment: Deployment) -> str:
    """One line: where the deployment is (the `text` of the message, also its fallback)."""
    status = deployment.status
    name = f"`{deployment.service_name}` → `{deployment.environment}` (#{deployment.id})"
    took = duration(deployment)
    after = f" in {took:.1f} s" if took is not None else ""
    if status == Status.SUCCEEDED:
        return f"{ICON[status]} {name} succeeded{after}: `{deployment.image}`"
    if status == Status.FAILED:
        return f"{ICON[status]} {name} failed{after}: {deployment.error or 'no reason recorded'}"
    if status == Status.CANCELLED:
        return f"{ICON[status]} {name} was cancelled"
    if status == Status.SUPERSEDED:
        return f"{ICON[status]} {name} was superseded by #{deployment.superseded_by}"
    if status == Status.QUEUED:
        return f"{ICON[status]} {name} is queued"
    step = (
        f" (step {deployment.step} of {deployment.steps_total})"
        if deployment.step and deployment.steps_total
        else ""
    )
    return f"{ICON.get(status, '')} {name} is {status}{step}"


def deployment_message(deployment: Deployment, log_url: str, protected: bool) -> list[Block]:
    """The one channel message of a deployment, edited as it goes."""
    commit = (deployment.commit_sha or "")[:12] or "branch head"
    trigger = deployment.trigger
    who = trigger.get("actor")
    source = trigger.get("source", "?")
    asked = f"<@{who}>" if source == "slack" and who else (who or "someone")
    fields = [
        mrkdwn(f"*Ref*\n`{deployment.ref or '–'}`"),
        mrkdwn(f"*Commit*\n`{commit}`"),
    ]
    took = duration(deployment)
    if took is not None:
        fields.append(mrkdwn(f"*Duration*\n{took:.1f} s"))
    if deployment.image:
        fields.append(mrkdwn(f"*Image*\n`{deployment.image}`"))
    if deployment.live_url:
        fields.append(mrkdwn(f"*Live at*\n<{deployment.live_url}>"))
    buttons: list[dict[str, Any]] = []
    if deployment.status not in FINAL:
        buttons.append(
            button(
                "Cancel",
                CANCEL,
                value=str(deployment.id),
                style="danger",
                confirm=confirm_dialog(
                    "Cancel this deployment?",
                    f"Stop deployment #{deployment.id} of `{deployment.service_name}`.",
                    "Cancel it",
                    danger=True,
                ),
            )
        )
    buttons.append(button("View logs", VIEW_LOGS, url=log_url))
    redeploy_confirm = (
        confirm_dialog(
            "Redeploy a protected service?",
            f"`{deployment.service_name}` is protected. Deploy "
            f"`{deployment.ref or commit}` to `{deployment.environment}` again?",
            "Deploy",
        )
        if protected
        else None
    )
    buttons.append(button("Redeploy", REDEPLOY, value=str(deployment.id), confirm=redeploy_confirm))
    buttons.append(
        button(
            "Rollback",
            ROLLBACK,
            value=str(deployment.service_name),
            confirm=confirm_dialog(
                "Roll back?",
                f"Put the previous good image of `{deployment.service_name}` back in "
                "production (no rebuild).",
                "Roll back",
                danger=True,
            ),
        )
    )
    return [
        section(f"*{headline(deployment)}*"),
        {"type": "section", "fields": fields},
        {
            "type": "context",
            "elements": [mrkdwn(f"Requested by {asked} via {source}")],
        },
        {"type": "actions", "block_id": f"deployment-{deployment.id}", "elements": buttons},
    ]


def _seconds(step: Step) -> str:
    return f"{step.seconds:.1f} s" if step.seconds is not None else "…"


STEP_ICON = {"done": "✅", "failed": "❌", "running": "🔄", "cancelled": "⏹️"}


def steps_text(deployment: Deployment, steps: Sequence[Step]) -> str:
    pipeline_steps = [step for step in steps if step.kind == "pipeline"] or list(steps)
    latest = max((step.attempt for step in pipeline_steps), default=0)
    current = [step for step in pipeline_steps if step.attempt == latest]
    if not current:
        return f"Steps of #{deployment.id}: none yet ({deployment.status})."
    lines = [f"*Steps* (attempt {latest}):"]
    lines += [
        f"{STEP_ICON.get(step.status, '•')} {step.name}: {step.status}, {_seconds(step)}"
        for step in current
    ]
    return "\n".join(lines)


def steps_message(deployment: Deployment, steps: Sequence[Step]) -> list[Block]:
    return [section(steps_text(deployment, steps))]


def failing_step(deployment: Deployment, steps: Sequence[Step]) -> str:
    failed = [step for step in steps if step.status == "failed"]
    if failed:
        return failed[-1].name
    return deployment.phase or "unknown"


def log_tail_message(
    deployment: Deployment, steps: Sequence[Step], tail: Sequence[LogLine]
) -> tuple[str, list[Block]]:
    """The failing step and its last log lines, as much as fits one section."""
    lines = [line.line for line in tail[-TAIL_LINES:]]
    head = f"*Failed at step {failing_step(deployment, steps)}*: last {len(lines)} log lines"
    body = ""
    for line in reversed(lines):
        candidate = line[:500] + "\n" + body
        if len(head) + len(candidate) + 10 > SECTION_MAX:
            break
        body = candidate
    text = f"{head}\n```\n{body.rstrip() or '(no output)'}\n```"
    return head, [section(text)]


def confirm_prompt(
    service: Service, ref: str | None, channel: str, *, rollback: bool = False
) -> list[Block]:
    """The ephemeral question before deploying (or rolling back) a protected service."""
    target = f"`{ref}`" if ref else f"the head of `{service.branch}`"
    what = "Roll back" if rollback else "Deploy"
    question = (
        "roll production back to its previous good image"
        if rollback
        else f"deploy {target} to production"
    )
    value = json.dumps(
        {"service": service.name, "ref": ref, "channel": channel, "rollback": rollback}
    )
    return [
        section(f":lock: `{service.name}` is protected. {question.capitalize()}?"),
        {
            "type": "actions",
            "block_id": "confirm-deploy",
            "elements": [
                button(
                    what,
                    CONFIRM_DEPLOY,
                    value=value,
                    style="danger" if rollback else "primary",
                    confirm=confirm_dialog(
                        f"{what} {service.name}?",
                        f"`{service.name}` is protected: {question}.",
                        what,
                        danger=rollback,
                    ),
                ),
                button("Never mind", DISMISS, value=service.name),
            ],
        },
    ]


def deployment_line(deployment: Deployment, log_url: str) -> str:
    return f"• <{log_url}|#{deployment.id}> {headline(deployment)}"


def services_list(
    services: Sequence[tuple[Service, ServiceImage | None]], visible: Collection[int]
) -> str:
    """The services; the current image of those in `visible` (the asker may deploy them)."""
    if not services:
        return "No services yet (`click-deploy service add`)."
    lines = ["*Services*"]
    for service, image in services:
        current = f"`{image.image}`" if image else "never deployed"
        if service.id not in visible:
            current = "not yours to deploy from here"
        lock = " :lock:" if service.options.protected else ""
        lines.append(f"• `{service.name}`{lock} ({service.repository}@{service.branch}): {current}")
    return "\n".join(lines)
