"""`/deploy` comments on pull requests: parse, authorize, react, then run the command.

The shared work (ignore bots, parse, permission check, 👀 reaction) happens once here, and
the per-service rule (`may_deploy`) guards every command, status included;
each command has its own small runner. Replies and reactions go out after the delivery
is stored (`Plan.after`)."""

from __future__ import annotations

from typing import Any

import structlog

from bot.commands.parser import Command, Ignore, Response, parse
from bot.github.access import WRITE_OR_MORE, may_deploy, permission
from bot.github.client import GitHubClient
from bot.github.events import preview_environment
from bot.github.models import Comment, Repo
from bot.github.plan import After, Context, Enqueue, Plan
from bot.reporting.render import status_table
from pipeline.db.queries import q
from pipeline.models import Deployment, Service
from pipeline.rollback import NothingToRollBack, rollback_target
from pipeline.service_config import refused_for_config
from pipeline.trigger import Trigger

log = structlog.get_logger(__name__)


def reply(gh: GitHubClient, repo: Repo, number: int, body: str) -> After:
    async def run() -> None:
        await gh.post(
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            {"owner": repo.owner, "repo": repo.name, "issue_number": number},
            data={"body": body},
        )

    return run


def react(gh: GitHubClient, repo: Repo, comment_id: int, content: str) -> After:
    async def run() -> None:
        await gh.post(
            "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
            {"owner": repo.owner, "repo": repo.name, "comment_id": comment_id},
            data={"content": content},
        )

    return run


async def on_issue_comment(payload: Any, context: Context) -> Plan:
    comment = Comment.from_payload(payload)
    if comment.action != "created":
        return Plan(f"ignored: comment {comment.action}")
    bot_login = f"{context.settings.github_app_slug}[bot]"
    if comment.author.is_bot or comment.author.login == bot_login:
        return Plan("ignored: a bot's comment")
    if not comment.on_pull_request:
        return Plan("ignored: not a pull request")
    result = parse(comment.body)
    if isinstance(result, Ignore):
        return Plan("ignored: not a command")
    repo = comment.repo
    rows = await context.pool.fetch(q("forge_services_for_repository"), "github", repo.full_name)
    services = [Service.from_row(row) for row in rows]
    result = parse(comment.body, [service.name for service in services])
    if isinstance(result, Ignore):
        return Plan("ignored: not a command")
    gh = await context.api()
    if isinstance(result, Response):
        return Plan(
            f"replied: {result.kind}", after=[reply(gh, repo, comment.issue_number, result.text)]
        )

    level = await permission(gh, repo, comment.author.login)
    if level not in WRITE_OR_MORE:
        return refuse(
            gh,
            comment,
            f"Sorry @{comment.author.login}, `/deploy` needs write access to "
            f"{repo.full_name} (you have {level}). Nothing was queued.",
        )
    if result.service is not None:
        services = [service for service in services if service.name == result.service]
        if not services:
            return refuse(
                gh, comment, f"There is no service `{result.service}` for {repo.full_name}."
            )
    if not services:
        return refuse(gh, comment, f"No service deploys {repo.full_name}.")
    login = comment.author.login
    permitted = [service for service in services if await may_deploy(gh, service, login)]
    if result.name == "status":  # only what the commenter may deploy, with its links
        return await run_status(context, gh, comment, permitted, len(services) - len(permitted))
    forbidden = [service for service in services if service not in permitted]
    if forbidden:
        service = forbidden[0]
        if service.options.problem is not None:
            return refuse(gh, comment, refused_for_config(service.name))
        undone = "Nothing was cancelled." if result.name == "cancel" else "Nothing was queued."
        return refuse(
            gh,
            comment,
            f"Sorry @{login}, `{service.name}` is protected and you "
            f"are not on its allowlist. {undone}",
        )
    if result.name == "deploy":
        return await run_deploy(context, gh, comment, result, services)
    if result.name == "cancel":
        return await run_cancel(context, gh, comment, services)
    return await run_rollback(context, gh, comment, services)


def refuse(gh: GitHubClient, comment: Comment, text: str) -> Plan:
    return Plan(
        "refused",
        after=[
            react(gh, comment.repo, comment.id, "confused"),
            reply(gh, comment.repo, comment.issue_number, text),
        ],
    )


async def run_deploy(
    context: Context,
    gh: GitHubClient,
    comment: Comment,
    command: Command,
    services: list[Service],
) -> Plan:
    repo = comment.repo
    pull = await gh.getitem(
        "/repos/{owner}/{repo}/pulls/{pull_number}",
        {"owner": repo.owner, "repo": repo.name, "pull_number": comment.issue_number},
    )
    head_sha = pull["head"]["sha"]
    head_repo = (pull["head"].get("repo") or {}).get("full_name")
    # A fork's commits are reachable from the base repository under refs/pull/N/head.
    ref = command.ref or (
        pull["head"]["ref"]
        if head_repo == repo.full_name
        else f"refs/pull/{comment.issue_number}/head"
    )
    commit = None if command.ref else head_sha
    environment = preview_environment(comment.issue_number)
    plan = Plan("queued", after=[react(gh, repo, comment.id, "eyes")])
    for service in services:
        trigger = Trigger(
            source="github",
            actor=comment.author.login,
            environment=environment,
            ref=ref,
            commit_sha=commit,
            reason="/deploy comment",
            delivery_id=context.delivery_id,
            answer=context.answer(
                repo.full_name,
                pr=comment.issue_number,
                head_sha=commit,
                comment_id=comment.id,
            ),
        )
        plan.enqueue.append(Enqueue(service, environment, ref, commit, trigger))
    return plan


async def run_rollback(
    context: Context, gh: GitHubClient, comment: Comment, services: list[Service]
) -> Plan:
    """Production goes back to each service's previous image: re-tagged, not rebuilt."""
    repo = comment.repo
    plan = Plan("queued", after=[react(gh, repo, comment.id, "eyes")])
    for service in services:
        try:
            target = await rollback_target(context.store, service, "production")
        except NothingToRollBack as error:
            return refuse(gh, comment, f"Nothing was queued: {error}.")
        trigger = Trigger(
            source="github",
            actor=comment.author.login,
            environment="production",
            ref=target.ref,
            commit_sha=target.commit_sha,
            reason="/deploy rollback comment",
            delivery_id=context.delivery_id,
            rollback_to=target.id,
            answer=context.answer(
                repo.full_name,
                pr=comment.issue_number,
                head_sha=target.commit_sha,
                comment_id=comment.id,
            ),
        )
        plan.enqueue.append(Enqueue(service, "production", target.ref, target.commit_sha, trigger))
    return plan


async def _active(context: Context, services: list[Service], environment: str) -> list[Deployment]:
    rows = await context.pool.fetch(
        q("forge_active_deployments"), [service.id for service in services], environment
    )
    return [Deployment.from_row(row) for row in rows]


async def run_cancel(
    context: Context, gh: GitHubClient, comment: Comment, services: list[Service]
) -> Plan:
    environment = preview_environment(comment.issue_number)
    active = await _active(context, services, environment)
    if not active:
        text = f"Nothing to cancel: no deployment of `{environment}` is queued or running."
        return Plan(
            "nothing to cancel", after=[reply(gh, comment.repo, comment.issue_number, text)]
        )
    lines = []
    for deployment in active:
        outcome = await context.queue.cancel(deployment.id)
        lines.append(f"- `{deployment.service_name}` deployment {deployment.id}: {outcome.outcome}")
    return Plan(
        "cancelled",
        after=[
            react(gh, comment.repo, comment.id, "eyes"),
            reply(gh, comment.repo, comment.issue_number, "\n".join(lines)),
        ],
    )


async def run_status(
    context: Context, gh: GitHubClient, comment: Comment, services: list[Service], hidden: int
) -> Plan:
    """The pull request's deployments of `services` (those the commenter may deploy)."""
    rows = await context.pool.fetch(
        q("forge_github_pr_deployments"), comment.repo.full_name, str(comment.issue_number)
    )
    shown = {service.id for service in services}
    deployments = [Deployment.from_row(row) for row in rows]
    deployments = [deployment for deployment in deployments if deployment.service_id in shown]
    text = (
        status_table(context.settings, deployments)
        if deployments
        else ("No deployments for this pull request yet.")
    )
    if hidden:
        text += f"\n\n{hidden} protected service(s) you are not on the allowlist of: not shown."
    return Plan("status", after=[reply(gh, comment.repo, comment.issue_number, text)])
